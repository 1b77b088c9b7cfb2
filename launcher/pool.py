"""Pre-started servers: after an image is launched, keep ``size`` fresh servers of it ready,
so the next click on the same link is answered in the time it takes to make a token.

A pooled server is an ordinary temporary user's server, started the same way as any launch
(same image, limits and hardening) and never handed out twice. Entries older than ``max_age``
are removed before the idle culler would take them; the pool is refilled only by demand (a
launch of the same image), so an image nobody uses stops costing memory after ``max_age``.
Its launch options are signed for its own temporary user when it is started, so they are
checked then and cannot start another user's server, or this one again once they expire.

A pre-started server can vanish while it waits (the run engine restarted, its container was
removed): each is checked through the proxy before it is handed out and at every sweep, and
one that does not answer is removed and, at a sweep, replaced.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient
from traitlets import Any as AnyTrait
from traitlets import Float, Int
from traitlets.config import LoggingConfigurable

from panbinder.executor import log_task_exception

from .base import LaunchRequest


@dataclass
class PoolEntry:
    user: str
    started: float


def pool_key(request: LaunchRequest) -> tuple:
    """Servers are interchangeable only for the same image, mounts and environment."""
    return (request.image.full, request.mounts, request.environment)


class ServerPool(LoggingConfigurable):
    size = Int(1, help="Pre-started servers kept per recently launched image (0: no pool).").tag(config=True)
    max_servers = Int(4, help="Pre-started servers kept in all, across images.").tag(config=True)
    max_age = Float(
        300.0, help="Seconds a pre-started server waits before it is removed (keep below the cull timeout)."
    ).tag(config=True)
    refill_delay = Float(
        2.0,
        help="Seconds to wait after a launch before pre-starting its replacement (lets the launch settle).",
    ).tag(config=True)
    sweep_interval = Float(30.0, help="Seconds between removals of expired pre-started servers.").tag(
        config=True
    )
    check_timeout = Float(
        2.0, help="Seconds a pre-started server may take to answer the check before it is handed out."
    ).tag(config=True)
    launcher = AnyTrait(help="The HubLauncher that starts and removes servers.")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.entries: dict[tuple, list[PoolEntry]] = {}
        self.requests: dict[tuple, LaunchRequest] = {}
        self.filling: set[tuple] = set()
        self.tasks: set[asyncio.Task] = set()
        self.sweeper: asyncio.Task | None = None
        self.hits = 0
        self.misses = 0
        self.dead = 0  # pre-started servers found not answering
        self._client: AsyncHTTPClient | None = None

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.entries.values())

    def summary(self) -> dict[str, int]:
        """Ready servers per image, for /health."""
        out: dict[str, int] = {}
        for key, entries in self.entries.items():
            if entries:
                out[key[0]] = out.get(key[0], 0) + len(entries)
        return out

    def _spawn_task(self, coro, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        task.add_done_callback(lambda t: log_task_exception(t, self.log))

    async def take(self, request: LaunchRequest) -> str | None:
        """A ready server's user for this request, removed from the pool, or None."""
        if self.size <= 0:
            return None
        entries = self.entries.get(pool_key(request), [])
        while entries:
            entry = entries.pop(0)
            if time.monotonic() - entry.started < self.max_age and await self._answers(entry.user):
                self.hits += 1
                return entry.user
            self._spawn_task(self.launcher.delete_user(entry.user), f"pool-expire-{entry.user}")
        self.misses += 1
        return None

    async def _answers(self, user: str) -> bool:
        """Whether ``user``'s server answers through the proxy (only the server itself says 200)."""
        if self._client is None:
            self._client = AsyncHTTPClient(force_instance=True, max_clients=4)
        url = f"{self.launcher.hub_url.rstrip('/')}/user/{quote(user)}/api"
        try:
            resp = await self._client.fetch(
                url, request_timeout=self.check_timeout, follow_redirects=False, raise_error=False
            )
        except OSError as e:
            resp = None
            self.log.debug("checking pre-started %s: %s", user, e)
        if resp is not None and resp.code == 200:
            return True
        self.dead += 1
        self.log.warning(
            "pre-started server of %s does not answer (%s); removing it", user, resp and resp.code
        )
        return False

    def refill_soon(self, request: LaunchRequest) -> None:
        """Top up the pool for this request's image in the background."""
        if self.size <= 0:
            return
        key = pool_key(request)
        self.requests[key] = request
        if key in self.filling:
            return
        self.filling.add(key)
        self._spawn_task(self._fill(key), f"pool-fill-{request.image.name}")
        if self.sweeper is None or self.sweeper.done():
            self.sweeper = asyncio.get_running_loop().create_task(self._sweep(), name="pool-sweep")

    async def _fill(self, key: tuple) -> None:
        try:
            await asyncio.sleep(self.refill_delay)
            while len(self.entries.get(key, [])) < self.size:
                if self.count >= self.max_servers and not await self._evict_other(key):
                    return
                user = f"{self.launcher.user_prefix}{secrets.token_hex(6)}"
                try:
                    async for _ in self.launcher.spawn(user, self.requests[key]):
                        pass
                except BaseException as e:  # failed, or cancelled by drain: its user goes too
                    self.log.warning("could not pre-start a server for %s: %r", key[0], e)
                    await asyncio.shield(self.launcher.delete_user(user))
                    if not isinstance(e, Exception):
                        raise
                    return
                self.entries.setdefault(key, []).append(PoolEntry(user, time.monotonic()))
                self.log.info("pre-started %s for %s", user, key[0])
        finally:
            self.filling.discard(key)

    async def _evict_other(self, key: tuple) -> bool:
        """Make room by removing the oldest entry of another image."""
        oldest = min(
            ((k, e) for k, v in self.entries.items() if k != key for e in v),
            key=lambda ke: ke[1].started,
            default=None,
        )
        if oldest is None:
            return False
        self.entries[oldest[0]].remove(oldest[1])
        await self.launcher.delete_user(oldest[1].user)
        return True

    async def _sweep(self) -> None:
        while self.count:
            await asyncio.sleep(self.sweep_interval)
            await self.sweep()

    async def sweep(self) -> None:
        """Remove expired and vanished pre-started servers; replace the vanished ones."""
        for key, entries in list(self.entries.items()):
            for entry in list(entries):
                expired = time.monotonic() - entry.started >= self.max_age
                if not expired and await self._answers(entry.user):
                    continue
                if entry not in entries:  # handed out meanwhile
                    continue
                entries.remove(entry)
                await self.launcher.delete_user(entry.user)
                if not expired and key in self.requests:
                    self.refill_soon(self.requests[key])

    async def drain(self) -> None:
        """Remove every pre-started server (on shutdown)."""
        for task in list(self.tasks):
            task.cancel()
        if self.sweeper:
            self.sweeper.cancel()
        users = [e.user for v in self.entries.values() for e in v]
        self.entries.clear()
        await asyncio.gather(*(self.launcher.delete_user(u) for u in users), return_exceptions=True)
        if self._client is not None:
            self._client.close()
            self._client = None
