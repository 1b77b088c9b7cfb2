"""HubLauncher: temporary user + server per launch via the JupyterHub REST API."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from traitlets import Float, Int, Type, Unicode

from panbinder.data_mounts import signing
from panbinder.events import Event

from .base import Launcher, LaunchRequest


class HubLauncher(Launcher):
    hub_url = Unicode(
        "http://127.0.0.1:8000", help="Public URL of JupyterHub (the proxy), as users reach it."
    ).tag(config=True)
    api_token = Unicode("", help="Token of the panbinder service in the Hub (generated when empty).").tag(
        config=True
    )
    public_url = Unicode(
        "",
        help="URL users reach the Hub at, e.g. behind a TLS reverse proxy (empty: hub_url). "
        "Server URLs in ready events start with it.",
    ).tag(config=True)
    signing_key = Unicode(
        "", help="Key for signing launch options (generated in the state directory when empty)."
    ).tag(config=True)
    signature_lifetime = Int(
        300,
        help="Seconds signed launch options stay valid: the Hub must start the server within this "
        "time; afterwards they cannot be replayed.",
    ).tag(config=True)
    user_prefix = Unicode("pb-", help="Prefix of temporary user names.").tag(config=True)
    token_expires_in = Int(24 * 3600, help="Seconds a launched server's access token stays valid.").tag(
        config=True
    )
    launch_timeout = Float(120.0, help="Seconds a server may take to start.").tag(config=True)
    retries = Int(3, help="Attempts for each Hub API call that fails on connection errors.").tag(config=True)
    pool_class = Type(
        "panbinder.launcher.pool.ServerPool",
        klass="panbinder.launcher.pool.ServerPool",
        allow_none=True,
        help="Pre-started server pool (None: every launch starts a new server).",
    ).tag(config=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pool = self.pool_class(parent=self, launcher=self, log=self.log) if self.pool_class else None

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

    async def create_token(self, user: str, note: str) -> str:
        body = {"expires_in": self.token_expires_in, "note": note}
        return (await self._call("POST", f"/users/{quote(user)}/tokens", body))["token"]

    async def spawn(self, user: str, request: LaunchRequest) -> AsyncIterator[str]:
        """Create ``user`` and start its server with the image; yields the Hub's progress
        messages and returns when the server is ready. Raises SpawnFailed."""
        await self._call("POST", f"/users/{quote(user)}")
        req = HTTPRequest(
            self._api(f"/users/{quote(user)}/server"),
            method="POST",
            headers={"Authorization": f"token {self.api_token}"},
            body=json.dumps({"user_options": self.user_options(request, user)}),
            request_timeout=self.launch_timeout,
        )
        resp = await AsyncHTTPClient().fetch(req, raise_error=False)
        if resp.code not in (201, 202):
            raise SpawnFailed(f"the Hub refused to start the server ({resp.code})", resp.body[:300])
        if resp.code == 201:
            return
        async for ev in self._progress(user):
            if ev.get("failed"):
                raise SpawnFailed(ev.get("message", "the server failed to start"))
            if ev.get("ready"):
                return
            if ev.get("message"):
                yield ev["message"].rstrip("\n") + "\n"
        raise SpawnFailed("the Hub's progress stream ended before the server was ready")

    def user_options(self, request: LaunchRequest, user: str) -> dict:
        """What the spawner gets: the image, and mounts and environment (if any) signed for
        ``user`` until ``signature_lifetime`` seconds from now."""
        if not (request.mounts or request.environment):
            return {"image": request.image.full}
        fields = signing.SignedFields(
            image=request.image.full,
            mounts=tuple(request.mounts),
            environment=dict(request.environment),
            user=user,
            expires=int(time.time()) + self.signature_lifetime,
        )
        return signing.signed_options(self.signing_key, fields)

    def server_url(self, user: str) -> str:
        return f"{(self.public_url or self.hub_url).rstrip('/')}/user/{quote(user)}/"

    async def launch(self, request: LaunchRequest) -> AsyncIterator[Event]:
        extra = {"launch_id": request.launch_id, "image": request.image.full}
        note = f"panbinder launch {request.launch_id}"
        pooled = await self.pool.take(request) if self.pool is not None else None
        if pooled is not None:
            try:
                token = await self.create_token(pooled, note)
            except Exception as e:
                self.log.warning("pooled server %s unusable: %s", pooled, e, extra=extra)
                await self.delete_user(pooled)
            else:
                self.log.info("launched %s from the pool as %s", request.image.full, pooled, extra=extra)
                yield self._ready(request, pooled, token, prestarted=True)
                return
        user = f"{self.user_prefix}{secrets.token_hex(6)}"
        self.log.info("launching %s as %s", request.image.full, user, extra=extra)
        yield Event("launching", "Launching server...\n")
        token_task: asyncio.Future | None = None
        try:
            async for message in self.spawn(user, request):
                if token_task is None:  # the server is starting: the Hub has time for this now
                    token_task = asyncio.ensure_future(self.create_token(user, note))
                yield Event("launching", message)
            token = await (token_task or self.create_token(user, note))
        except Exception as e:
            if token_task is not None and not token_task.done():
                token_task.cancel()
            self.log.warning("launch failed: %s", getattr(e, "log_message", e), extra=extra)
            await self.delete_user(user)
            detail = {"detail": e.user_detail} if isinstance(e, SpawnFailed) else {}
            yield Event(
                "failed",
                "The server could not be started; try again, or tell the operators if it keeps failing.",
                detail,
            )
            return
        yield self._ready(request, user, token, prestarted=False)

    def _ready(self, request: LaunchRequest, user: str, token: str, *, prestarted: bool) -> Event:
        """The ready event; the pool replaces what this launch used (or learns the image)."""
        if self.pool is not None:
            self.pool.refill_soon(request)
        url = self.server_url(user)
        extra = {"url": url, "token": token, "image": request.image.full, "prestarted": prestarted}
        return Event("ready", f"server running at {url}\n", extra)

    async def delete_user(self, user: str) -> None:
        try:
            await self._call("DELETE", f"/users/{quote(user)}")
        except Exception as e:  # the culler will catch what remains
            self.log.warning("could not remove user %s: %s", user, e)


class SpawnFailed(Exception):
    def __init__(self, user_detail: str, log_detail: object = "") -> None:
        super().__init__(user_detail)
        self.user_detail = user_detail[:500]
        self.log_message = f"{user_detail} {log_detail!r}" if log_detail else user_detail
