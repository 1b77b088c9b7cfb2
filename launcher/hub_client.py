"""The Hub's REST API, as the launcher uses it: short calls, progress streams, clean removal.

Two HTTP clients of the launcher's own (never tornado's shared default instance, which other
parts of the portal use): one for progress streams, sized for every launch that may run at
once, and one for short calls, so that a long stream never makes a short call wait behind it.
A stream that breaks (connection reset, timeout) is not a failed launch: the server's state is
read from its model and the stream reopened while it is still starting.

Removal is ordered as the Hub requires: it refuses to delete a user whose server is starting
or stopping, so such a server is stopped first, its state polled until it is gone, then the user
is deleted, all within a time bound. A ready server goes with its user in one call (the Hub
stops it first; a stop slower than its ``slow_stop_timeout`` is answered 400 and polled as
above), which spares a check or an abandoned launch a poll and three calls, about 0.25 s. A Hub started again after a crash answers 500 to that
removal for a server whose start the old Hub never finished, until it gives up on it (its
spawner's ``http_timeout``, 30 s): removal retries quietly, with one log line when the 500s
begin and one when they end.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

PAGINATION = "application/jupyterhub-pagination+json"


class HubClient:
    """Calls to ``{hub_url}/hub/api`` with ``token``; ``stream_slots`` progress streams at once
    and ``call_slots`` short calls at once, each on its own connection pool."""

    def __init__(
        self,
        hub_url: str,
        token: str,
        *,
        stream_slots: int,
        call_slots: int,
        retries: int = 3,
        call_timeout: float = 30.0,
        log: logging.Logger | None = None,
    ) -> None:
        self.api = f"{hub_url.rstrip('/')}/hub/api"
        self.log = log or logging.getLogger(__name__)
        self.token = token
        self.retries = max(1, retries)
        self.call_timeout = call_timeout
        # tornado's queue times out a request after its connect timeout: the limits are ours
        self.streams = AsyncHTTPClient(force_instance=True, max_clients=max(1, stream_slots))
        self.calls = AsyncHTTPClient(force_instance=True, max_clients=max(1, call_slots))

    def close(self) -> None:
        self.streams.close()
        self.calls.close()

    def _headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"token {self.token}", "Content-Type": "application/json", **extra}

    async def call(
        self, method: str, path: str, body: Any = None, *, timeout: float | None = None, accept: str = ""
    ) -> Any:
        """One short call; retried on connection errors (HTTP 599), raised on other errors."""
        req = HTTPRequest(
            self.api + path,
            method=method,
            headers=self._headers(**({"Accept": accept} if accept else {})),
            body=None if body is None else json.dumps(body),
            request_timeout=timeout or self.call_timeout,
            connect_timeout=timeout or self.call_timeout,
            allow_nonstandard_methods=True,
        )
        for attempt in range(self.retries):
            try:
                resp = await self.calls.fetch(req)
                return json.loads(resp.body) if resp.body else None
            except HTTPClientError as e:
                if e.code != 599 or attempt == self.retries - 1:
                    raise
            except OSError:
                if attempt == self.retries - 1:
                    raise
            await asyncio.sleep(0.2 * (attempt + 1))

    async def start_server(self, user: str, body: dict, *, timeout: float) -> tuple[int, str]:
        """POST the server once (a retry could start it twice): (status code, body text).
        201: running already; 202: starting, follow its progress."""
        req = HTTPRequest(
            f"{self.api}/users/{quote(user)}/server",
            method="POST",
            headers=self._headers(),
            body=json.dumps(body),
            request_timeout=timeout,
            connect_timeout=min(timeout, self.call_timeout),
        )
        resp = await self.calls.fetch(req, raise_error=False)
        return resp.code, (resp.body or b"").decode(errors="replace")

    async def user(self, name: str) -> dict | None:
        """The user's model, or None if the Hub has no such user."""
        try:
            return await self.call("GET", f"/users/{quote(name)}")
        except HTTPClientError as e:
            if e.code == 404:
                return None
            raise

    async def users(self, prefix: str) -> list[dict]:
        """Every user whose name starts with ``prefix`` (all pages)."""
        out: list[dict] = []
        offset = 0
        while True:
            page = await self.call("GET", f"/users?offset={offset}&limit=200", accept=PAGINATION)
            items = page["items"] if isinstance(page, dict) else page
            out += [u for u in items if u.get("name", "").startswith(prefix)]
            following = page.get("_pagination", {}).get("next") if isinstance(page, dict) else None
            if not following or not items:
                return out
            offset = following["offset"]

    async def progress(self, user: str, deadline: float) -> AsyncIterator[dict]:
        """The Hub's progress events for ``user``'s starting server, ending with one that has
        ``ready`` or ``failed``. A broken stream is reopened while the server is still starting;
        raises TimeoutError at ``deadline`` (a ``time.monotonic()`` value)."""
        pause = 0.2
        while True:
            async for event in self._stream(user, deadline):
                yield event
                if event.get("ready") or event.get("failed"):
                    return
            state = await self.server_state(user)
            if state == "ready":
                yield {"ready": True, "message": "Server ready"}
                return
            if state != "starting":
                yield {"failed": True, "message": "The server stopped while it was starting"}
                return
            if time.monotonic() + pause >= deadline:
                raise TimeoutError(f"server of {user} not ready in time")
            await asyncio.sleep(pause)
            pause = min(pause * 2, 2.0)

    async def server_state(self, user: str) -> str:
        """'ready', 'starting', 'stopping' or 'none' (no server, or no user)."""
        model = await self.user(user)
        server = (model or {}).get("servers", {}).get("")
        if not server:
            return "none"
        if server.get("ready"):
            return "ready"
        return {"spawn": "starting", "stop": "stopping"}.get(server.get("pending") or "", "none")

    async def _stream(self, user: str, deadline: float) -> AsyncIterator[dict]:
        """One attempt at the progress stream; ends quietly when the connection does."""
        queue: asyncio.Queue = asyncio.Queue()
        buf = b""

        def on_chunk(chunk: bytes) -> None:
            nonlocal buf
            buf += chunk
            while b"\n\n" in buf:
                block, buf = buf.split(b"\n\n", 1)
                for line in block.splitlines():
                    if line.startswith(b"data:"):
                        try:
                            queue.put_nowait(json.loads(line[5:]))
                        except ValueError:
                            continue

        req = HTTPRequest(
            f"{self.api}/users/{quote(user)}/server/progress",
            headers=self._headers(Accept="text/event-stream"),
            streaming_callback=on_chunk,
            request_timeout=max(0.1, deadline - time.monotonic()),
            connect_timeout=self.call_timeout,
        )
        fetch = asyncio.ensure_future(self.streams.fetch(req, raise_error=False))
        try:
            while True:
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getter, fetch}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    while not queue.empty():
                        yield queue.get_nowait()
                    return
                yield getter.result()
        finally:
            if not fetch.done():
                fetch.cancel()

    async def remove(self, user: str, timeout: float) -> bool:
        """Stop ``user``'s server, wait until it is stopped, delete the user; True when the user
        is gone within ``timeout`` seconds. A 404 at any step means that part is already gone."""
        deadline = time.monotonic() + timeout
        pause = 0.2
        errors = 0  # 500s so far: logged once when they begin and once when they end
        try:
            while time.monotonic() < deadline:
                try:
                    if await self._remove_step(user, deadline):
                        return True
                except HTTPClientError as e:
                    if e.code == 404:
                        return True
                    if e.code == 500:  # a restarted Hub still waiting for a server the old one started
                        if not errors:
                            self.log.info("the Hub answers 500 to removing %s; retrying quietly", user)
                        errors += 1
                    elif e.code != 400:  # 400: pending start or stop; the Hub needs a moment
                        raise
                await asyncio.sleep(min(pause, _left(deadline)))
                pause = min(pause * 2, 2.0)
            return False
        finally:
            if errors:
                self.log.info("removal of %s ended after %d answers with 500 from the Hub", user, errors)

    async def _remove_step(self, user: str, deadline: float) -> bool:
        """One step of ``remove``: stop a running or starting server, or delete a user without
        one; True when the user is gone."""
        state = await self.server_state(user)
        if state == "ready":  # the Hub stops a running server itself before deleting its user
            await self.call("DELETE", f"/users/{quote(user)}", timeout=_left(deadline))
            return True
        if state == "starting":
            await self.call("DELETE", f"/users/{quote(user)}/server", timeout=_left(deadline))
        elif state == "none":
            if await self.user(user) is None:
                return True
            await self.call("DELETE", f"/users/{quote(user)}", timeout=_left(deadline))
            return True
        return False


def _left(deadline: float) -> float:
    return max(0.1, deadline - time.monotonic())
