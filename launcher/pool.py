"""Pre-started servers, kept for the launches most likely to come (``demand.py``).

From the moment the service starts (``warm``), the pool holds servers for the registered
publications and images readers are expected to click: recently launched, recently registered,
most launched this week. After every launch it learns (the demand log in the state folder) and
tops up. A server waits paused (``docker pause``: it answers 15-45 ms after it is thawed), so it
costs memory but no CPU; how many fit is ``memory_budget`` ÷ the memory one paused server really
uses (measured with docker's stats once each is paused; ``server_memory`` until then), at most
``max_servers``. When demand shifts, the servers of the least expected kinds go first.

A pooled server is an ordinary temporary user's server, started the same way as any launch
(same image, limits and hardening), for exactly one kind of launch (``pool_key``: image,
mounts, environment and profile), and never handed out twice: ``take_entry`` removes it from the pool
before anything else awaits. Its launch options are signed for its own temporary user when it is
started, so they are checked then and cannot start another user's server, or this one again once
they expire. Its reader's token is made as it is pre-started, valid for
``HubLauncher.token_expires_in`` plus ``max_age`` (so at least the former from its hand-out), and
shown to the server once before it is paused (the server asks the Hub about it then and keeps
the answer for five minutes): a hand-out asks the Hub nothing, and a burst of readers no longer
waits for the Hub to make their tokens one after the other (about 50 ms each). Only the portal
knows the token until the hand-out; a server not handed out within ``max_age`` is removed with
its user, and so its token. Entries older than ``max_age`` are replaced before the idle culler
(which sees no activity from a paused server) would take them.

A pre-started server can vanish while it waits (the run engine restarted, its container was
removed): each is checked before it is handed out (thawed, then through the proxy) and at every
sweep (paused: its container is still paused; else through the proxy), and one that fails is
removed and replaced.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from traitlets import Any as AnyTrait
from traitlets import Float, Int, Unicode
from traitlets.config import LoggingConfigurable

from panbinder import metrics
from panbinder.executor import log_task_exception

from .base import LaunchRequest
from .demand import DemandLog, allocate, key_id, peak, score, select_evictions
from .profiles import memory_bytes


@dataclass
class PoolEntry:
    user: str
    started: float
    paused: bool = False
    memory: int | None = None  # bytes, measured once paused
    token: str = ""  # the reader's, made when the server was pre-started


def pool_key(request: LaunchRequest) -> tuple:
    """Servers are interchangeable only for the same image, mounts, environment and profile."""
    return (request.image.full, request.mounts, request.environment, request.profile)


class ServerPool(LoggingConfigurable):
    size = Int(1, help="Pre-started servers kept at least per kind of launch in the plan (0: no pool).").tag(
        config=True
    )
    max_per_kind = Int(
        20, help="Most pre-started servers for one kind of launch (an image with its datasets)."
    ).tag(config=True)
    max_servers = Int(40, help="Most pre-started servers in all, whatever the memory budget.").tag(
        config=True
    )
    memory_budget = Unicode(
        "4G", help="Memory the paused pre-started servers may use in all, e.g. '4G'."
    ).tag(config=True)
    server_memory = Unicode(
        "160M", help="Memory of one paused server assumed until one has been measured."
    ).tag(config=True)
    decay = Float(3 * 24 * 3600.0, help="Seconds after which a launch counts 1/e as much for demand.").tag(
        config=True
    )
    registration_weight = Float(
        1.0, help="Demand of a publication at the moment it is registered, in launches."
    ).tag(config=True)
    burst_window = Float(
        60.0, help="Seconds within which launches of one kind count as one burst (servers wanted)."
    ).tag(config=True)
    max_age = Float(
        300.0, help="Seconds a pre-started server waits before it is replaced (keep below the cull timeout)."
    ).tag(config=True)
    # A replacement started right after a launch would start while the user's browser loads
    # JupyterLab from the server just handed out: it takes a core from that page load and kernel
    # start, and a browser on the node itself (tests, kiosks) sees the new container's network
    # interface as a network change, on which Chromium aborts the requests in flight
    # (ERR_NETWORK_CHANGED: lost settings, e.g. the notebook's toolbar or keyboard shortcuts).
    refill_delay = Float(
        20.0,
        help="Seconds to wait after a launch before pre-starting its replacement (lets the launched "
        "server load JupyterLab and start its kernel undisturbed).",
    ).tag(config=True)
    fill_concurrency = Int(2, help="Pre-started servers starting at once (each start takes a core).").tag(
        config=True
    )
    warm_timeout = Float(
        15.0,
        help="Seconds panbinder serve waits at start, before it listens, for the first pre-started "
        "servers of the most expected launches (0: it listens at once and they follow).",
    ).tag(config=True)
    sweep_interval = Float(30.0, help="Seconds between checks and replacements of pre-started servers.").tag(
        config=True
    )
    check_timeout = Float(
        2.0, help="Seconds a pre-started server may take to answer the check before it is handed out."
    ).tag(config=True)
    launcher = AnyTrait(
        help="The HubLauncher that starts and removes servers; pre-starts wait while its launch "
        "slots (``slots``) are full or readers wait for one."
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.entries: dict[tuple, list[PoolEntry]] = {}
        self.requests: dict[tuple, LaunchRequest] = {}
        self.plan: dict[tuple, int] = {}
        self.filling: set[tuple] = set()
        self.tasks: set[asyncio.Task] = set()
        self.sweeper: asyncio.Task | None = None
        self.demand = DemandLog(None)
        self.hits = self.misses = self.evictions = 0
        self.dead = 0  # pre-started servers found not answering
        self._starting: asyncio.Semaphore | None = None
        self._inflight = 0  # pre-starts under way
        self._client: AsyncHTTPClient | None = None
        self._measured: list[int] = []

    # --- state --------------------------------------------------------------------------------

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.entries.values())

    @property
    def per_server(self) -> int:
        """Bytes one paused server uses: the mean of the last measured, else ``server_memory``."""
        recent = self._measured[-20:]
        return int(sum(recent) / len(recent)) if recent else memory_bytes(self.server_memory)

    @property
    def capacity(self) -> int:
        return max(0, min(self.max_servers, memory_bytes(self.memory_budget) // max(1, self.per_server)))

    def summary(self) -> dict[str, int]:
        """Ready servers per image, for operators in /health."""
        out: dict[str, int] = {}
        for key, entries in self.entries.items():
            if entries:
                out[key[0]] = out.get(key[0], 0) + len(entries)
        return out

    def status(self) -> dict[str, int]:
        """Counts anyone may see in /health (no image names)."""
        all_entries = [e for v in self.entries.values() for e in v]
        return {
            "servers": len(all_entries),
            "paused": sum(e.paused for e in all_entries),
            "capacity": self.capacity,
            "memory_bytes": sum(e.memory or self.per_server for e in all_entries),
            "memory_budget_bytes": memory_bytes(self.memory_budget),
            "server_memory_bytes": self.per_server,
            "hits": self.hits,
            "misses": self.misses,
            "evictions": self.evictions,
        }

    def _scores(self, now: float) -> dict[tuple, float]:
        return {
            k: score(
                self.demand.get(key_id(k)),
                now,
                decay=self.decay,
                registration_weight=self.registration_weight,
            )
            for k in self.requests
        }

    def replan(self) -> dict[tuple, float]:
        """Recompute the servers wanted per kind; returns the scores it used."""
        now = time.time()
        scores = self._scores(now)
        wanted = {
            k: min(
                self.max_per_kind, max(self.size, peak(self.demand.get(key_id(k)), now, self.burst_window))
            )
            for k in scores
        }
        self.plan = allocate(scores, wanted, self.capacity) if self.size > 0 else {}
        return scores

    def _spawn_task(self, coro, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        task.add_done_callback(lambda t: log_task_exception(t, self.log))

    # --- hand-out -----------------------------------------------------------------------------

    async def take_entry(self, request: LaunchRequest) -> PoolEntry | None:
        """A ready server for this request (its user and token), removed from the pool, or None."""
        if self.size <= 0:
            return None
        entries = self.entries.get(pool_key(request), [])
        while entries:
            entry = entries.pop(0)  # out of the pool before any await: never handed out twice
            fresh = time.monotonic() - entry.started < self.max_age
            try:
                if fresh and entry.paused:
                    await self.launcher.pause_server(entry.user, False)
                answers = fresh and await self._answers(entry.user)
            except BaseException:  # the launch was abandoned: the server is nobody's, it goes
                self._spawn_task(self._remove(entry, paused=entry.paused), f"pool-drop-{entry.user}")
                raise
            if answers:
                self.hits += 1
                metrics.POOL_HITS.inc()
                return entry
            frozen = entry.paused and not fresh  # an expired one was not thawed above
            self._spawn_task(self._remove(entry, paused=frozen), f"pool-expire-{entry.user}")
        self.misses += 1
        metrics.POOL_MISSES.inc()
        return None

    async def _answers(self, user: str, token: str = "") -> bool:
        """Whether ``user``'s server answers through the proxy (only the server itself says 200);
        with ``token``, an authenticated request, which the server checks with the Hub."""
        if self._client is None:  # a burst checks as many servers at once as the pool may hold:
            # beyond the client's connections a check waited in tornado's queue, which timed it
            # out (HTTPTimeoutError, not an OSError) and failed the launch taking that server
            self._client = AsyncHTTPClient(force_instance=True, max_clients=max(8, self.max_servers))
        url = f"{self.launcher.hub_url.rstrip('/')}/user/{quote(user)}/api" + ("/status" if token else "")
        headers = {"Authorization": f"token {token}"} if token else None
        try:
            resp = await self._client.fetch(
                url,
                headers=headers,
                request_timeout=self.check_timeout,
                follow_redirects=False,
                raise_error=False,
            )
        except (OSError, HTTPClientError) as e:  # refused, or timed out (tornado's 599)
            resp = None
            self.log.debug("checking pre-started %s: %s", user, e)
        if resp is not None and resp.code == 200:
            return True
        self.dead += 1
        self.log.warning(
            "pre-started server of %s does not answer (%s); removing it", user, resp and resp.code
        )
        return False

    async def _remove(self, entry: PoolEntry, *, paused: bool) -> None:
        if paused:  # a frozen server would not see its stop signal
            try:
                await self.launcher.pause_server(entry.user, False)
            except Exception as e:  # the engine away: the user still goes (and the reaper sweeps)
                self.log.warning("pre-started server of %s not unpaused before removal: %s", entry.user, e)
        await self.launcher.delete_user(entry.user)

    # --- filling ------------------------------------------------------------------------------

    def refill_soon(self, request: LaunchRequest) -> None:
        """A launch of ``request`` happened: record it, and top up the pool in the background."""
        if self.size <= 0:
            return
        key = pool_key(request)
        self.requests[key] = request
        plain = not (request.mounts or request.environment)
        profile = request.profile.name if request.profile is not None else ""
        self.demand.record(key_id(key), time.time(), request.image.full if plain else "", profile)
        self.replan()
        self._fill_soon(key, self.refill_delay)

    def _fill_soon(self, key: tuple, delay: float) -> None:
        if key in self.filling:
            return
        self.filling.add(key)
        self._spawn_task(self._fill(key, delay), f"pool-fill-{key[0]}")
        if self.sweeper is None or self.sweeper.done():
            self.sweeper = asyncio.get_running_loop().create_task(self._sweep(), name="pool-sweep")

    async def warm(
        self,
        candidates: list[tuple[LaunchRequest, float | None]],
        demand: DemandLog,
        available: Callable[[LaunchRequest], Awaitable[bool]] | None = None,
    ) -> None:
        """At start: the kinds of launch worth servers (registered publications with their
        registration time, images launched this week from ``demand``), planned and filled;
        ``available`` says whether a request's image can start (checked for planned ones only)."""
        self.demand = demand
        if self.size <= 0:
            return
        for request, registered in candidates:
            key = pool_key(request)
            self.requests[key] = request
            if registered is not None:
                demand.get(key_id(key)).registered = registered
        checked: set[tuple] = set()
        while True:
            scores = self.replan()
            unchecked = [k for k in self.plan if k not in checked]
            if available is None or not unchecked:
                break
            for key in unchecked:
                checked.add(key)
                if not await available(self.requests[key]):
                    del self.requests[key]
        for key in sorted(self.plan, key=lambda k: -scores.get(k, 0.0)):
            self._fill_soon(key, 0.0)
        self.log.info(
            "pool plan at start: %d servers for %d kinds of launch", sum(self.plan.values()), len(self.plan)
        )

    async def first_round(self) -> None:
        """Wait (at most ``warm_timeout`` seconds) until the most expected kinds, as many as start
        at once, have a server each: the first clicks after a start find them ready."""
        scores = self._scores(time.time())
        top = sorted(self.plan, key=lambda k: -scores.get(k, 0.0))[: max(1, self.fill_concurrency)]
        deadline = time.monotonic() + self.warm_timeout
        while time.monotonic() < deadline:
            if all(self.entries.get(k) or k not in self.filling for k in top):
                return
            await asyncio.sleep(0.05)

    async def _fill(self, key: tuple, delay: float) -> None:
        if self._starting is None:
            self._starting = asyncio.Semaphore(max(1, self.fill_concurrency))
        try:
            await asyncio.sleep(delay)
            while len(self.entries.get(key, [])) < self.plan.get(key, 0):
                await self._readers_first()
                async with self._starting:  # servers starting count against the budget too
                    if self.count + self._inflight >= self.capacity and not await self._evict_for(key):
                        return
                    self._inflight += 1
                    try:
                        if not await self._start_one(key):
                            return
                    finally:
                        self._inflight -= 1
        finally:
            self.filling.discard(key)

    async def _readers_first(self) -> None:
        """Wait while readers' launches fill the launcher's slots or wait for one: a server someone
        clicked for starts before one that may be clicked (each start takes about a core)."""
        await self.launcher.slots.until_free()

    async def _start_one(self, key: tuple) -> bool:
        user = f"{self.launcher.user_prefix}{secrets.token_hex(6)}"
        try:
            async for _ in self.launcher.spawn(user, self.requests[key]):
                pass
            lasts = self.launcher.token_expires_in  # 0: never expires
            lifetime = lasts + int(self.max_age) if lasts > 0 else 0
            token = await self.launcher.create_token(user, "panbinder pre-started server", lifetime)
            if not await self._answers(user, token):  # the server knows the token from now on
                raise RuntimeError("the new server did not accept its token")
        except BaseException as e:  # failed, or cancelled by drain: its user goes too
            self.log.warning("could not pre-start a server for %s: %r", key[0], e)
            await asyncio.shield(self.launcher.delete_user(user))
            if not isinstance(e, Exception):
                raise
            return False
        entry = PoolEntry(user, time.monotonic(), token=token)
        # paused and measured before it joins the pool: a launch never takes one being frozen
        entry.paused = await self.launcher.pause_server(user)
        if entry.paused:
            entry.memory = await self.launcher.server_memory(user)
            if entry.memory:
                self._measured.append(entry.memory)
        self.entries.setdefault(key, []).append(entry)
        self.log.info("pre-started %s for %s%s", user, key[0], " (paused)" if entry.paused else "")
        return True

    async def _evict_for(self, key: tuple) -> bool:
        """Make room for ``key`` by removing a server held beyond the plan (lowest demand first)."""
        scores = self.replan()
        held = {key_id(k): len(v) for k, v in self.entries.items() if v}
        by_id = {key_id(k): k for k in self.entries}
        doomed = select_evictions(
            held, {key_id(k): n for k, n in self.plan.items()}, {key_id(k): s for k, s in scores.items()}
        )
        for kid in doomed:
            victim = by_id[kid]
            if victim != key and self.entries[victim]:
                entry = self.entries[victim].pop(0)
                self.evictions += 1
                metrics.POOL_EVICTIONS.inc()
                self.log.info("evicted pre-started %s of %s for %s", entry.user, victim[0], key[0])
                await self._remove(entry, paused=entry.paused)
                return True
        return False

    # --- upkeep -------------------------------------------------------------------------------

    async def _sweep(self) -> None:
        while self.count or self.filling:
            await asyncio.sleep(self.sweep_interval)
            try:
                await self.sweep()
            except Exception as e:  # the Hub or the engine away: the next sweep tries again
                self.log.warning("pre-started server sweep failed: %s", e)

    async def _alive(self, entry: PoolEntry) -> bool:
        if entry.paused:
            if await self.launcher.server_state(entry.user) == "paused":
                return True
            self.dead += 1
            self.log.warning("pre-started server of %s is no longer paused; removing it", entry.user)
            return False
        return await self._answers(entry.user)

    async def sweep(self) -> None:
        """Replace expired and vanished pre-started servers (if still in the plan)."""
        for entries in list(self.entries.values()):
            for entry in list(entries):
                expired = time.monotonic() - entry.started >= self.max_age
                if not expired and await self._alive(entry):
                    continue
                if entry not in entries:  # handed out meanwhile
                    continue
                entries.remove(entry)
                await self._remove(entry, paused=entry.paused)
        self.replan()
        for key in self.plan:
            if len(self.entries.get(key, [])) < self.plan[key]:
                self._fill_soon(key, 0.0)

    async def drain(self) -> None:
        """Remove every pre-started server (on shutdown)."""
        for task in list(self.tasks):
            task.cancel()
        if self.sweeper:
            self.sweeper.cancel()
        doomed = [e for v in self.entries.values() for e in v]
        self.entries.clear()
        await asyncio.gather(*(self._remove(e, paused=e.paused) for e in doomed), return_exceptions=True)
        if self._client is not None:
            self._client.close()
            self._client = None
