"""HubLauncher: temporary user + server per launch via the JupyterHub REST API."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from traitlets import Float, Int, Unicode

from panbinder.events import Event

from .base import Launcher, LaunchRequest


class HubLauncher(Launcher):
    hub_url = Unicode(
        "http://127.0.0.1:8000", help="Public URL of JupyterHub (the proxy), as users reach it."
    ).tag(config=True)
    api_token = Unicode("", help="Token of the panbinder service in the Hub (generated when empty).").tag(
        config=True
    )
    user_prefix = Unicode("pb-", help="Prefix of temporary user names.").tag(config=True)
    token_expires_in = Int(24 * 3600, help="Seconds a launched server's access token stays valid.").tag(
        config=True
    )
    launch_timeout = Float(120.0, help="Seconds a server may take to start.").tag(config=True)
    retries = Int(3, help="Attempts for each Hub API call that fails on connection errors.").tag(config=True)

    def _api(self, path: str) -> str:
        return f"{self.hub_url.rstrip('/')}/hub/api{path}"

    async def _call(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        req = HTTPRequest(
            self._api(path),
            method=method,
            headers={"Authorization": f"token {self.api_token}", "Content-Type": "application/json"},
            body=None if body is None else json.dumps(body),
            request_timeout=kw.pop("timeout", 30),
            allow_nonstandard_methods=True,
            **kw,
        )
        for attempt in range(self.retries):
            try:
                resp = await AsyncHTTPClient().fetch(req)
                return json.loads(resp.body) if resp.body else None
            except HTTPClientError as e:
                if e.code != 599 or attempt == self.retries - 1:
                    raise
            except OSError:
                if attempt == self.retries - 1:
                    raise
            await asyncio.sleep(0.2 * (attempt + 1))

    async def ping(self) -> bool:
        try:
            await self._call("GET", "/", timeout=3)
        except Exception:
            return False
        return True

    async def _progress(self, user: str) -> AsyncIterator[dict]:
        """Follow /users/NAME/server/progress (SSE) until ready or failed."""
        queue: asyncio.Queue = asyncio.Queue()
        buf = b""

        def on_chunk(chunk: bytes) -> None:
            nonlocal buf
            buf += chunk
            while b"\n\n" in buf:
                block, buf = buf.split(b"\n\n", 1)
                for line in block.splitlines():
                    if line.startswith(b"data:"):
                        queue.put_nowait(json.loads(line[5:]))

        req = HTTPRequest(
            self._api(f"/users/{quote(user)}/server/progress"),
            headers={"Authorization": f"token {self.api_token}", "Accept": "text/event-stream"},
            streaming_callback=on_chunk,
            request_timeout=self.launch_timeout,
        )
        fetch = asyncio.ensure_future(AsyncHTTPClient().fetch(req, raise_error=False))
        try:
            while True:
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getter, fetch}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    event = getter.result()
                    yield event
                    if event.get("ready") or event.get("failed"):
                        return
                else:
                    getter.cancel()
                    while not queue.empty():
                        yield queue.get_nowait()
                    return
        finally:
            if not fetch.done():
                fetch.cancel()

    async def launch(self, request: LaunchRequest) -> AsyncIterator[Event]:
        user = f"{self.user_prefix}{secrets.token_hex(6)}"
        extra = {"launch_id": request.launch_id, "image": request.image.full}
        self.log.info("launching %s as %s", request.image.full, user, extra=extra)
        yield Event("launching", "Launching server...\n")
        try:
            await self._call("POST", f"/users/{quote(user)}")
            token_call = asyncio.ensure_future(
                self._call(
                    "POST",
                    f"/users/{quote(user)}/tokens",
                    {"expires_in": self.token_expires_in, "note": f"panbinder launch {request.launch_id}"},
                )
            )
            options = {"image": request.image.full}
            req = HTTPRequest(
                self._api(f"/users/{quote(user)}/server"),
                method="POST",
                headers={"Authorization": f"token {self.api_token}"},
                body=json.dumps({"user_options": options}),
                request_timeout=self.launch_timeout,
            )
            resp = await AsyncHTTPClient().fetch(req, raise_error=False)
            if resp.code not in (201, 202):
                raise RuntimeError(f"Hub refused to start the server: {resp.code} {resp.body[:300]!r}")
            if resp.code == 202:
                async for ev in self._progress(user):
                    if ev.get("failed"):
                        raise RuntimeError(ev.get("message", "spawn failed"))
                    if ev.get("ready"):
                        break
                    if ev.get("message"):
                        yield Event("launching", ev["message"].rstrip("\n") + "\n")
                else:
                    raise RuntimeError("the Hub's progress stream ended before the server was ready")
            token = (await token_call)["token"]
        except Exception as e:
            self.log.warning("launch failed: %s", e, extra=extra)
            await self._delete_user(user)
            yield Event(
                "failed",
                "The server could not be started; try again, or tell the operators if it keeps failing.",
                {"detail": str(e)[:500]},
            )
            return
        url = f"{self.hub_url.rstrip('/')}/user/{quote(user)}/"
        yield Event(
            "ready", f"server running at {url}\n", {"url": url, "token": token, "image": request.image.full}
        )

    async def _delete_user(self, user: str) -> None:
        try:
            await self._call("DELETE", f"/users/{quote(user)}")
        except Exception as e:  # the culler will catch what remains
            self.log.warning("could not remove user %s: %s", user, e)
