"""ServerPool logic with a stand-in launcher (no Hub): take, refill, expiry, eviction, drain.

The stand-in's servers answer a real HTTP check (a tornado app on a free loopback port plays the
proxy: 200 for a live server, 503 for one that vanished), as the pool checks before a hand-out.
"""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from tornado.httpserver import HTTPServer
from tornado.web import Application, HTTPError, RequestHandler

from panbinder.launcher import LaunchRequest
from panbinder.launcher.demand import DemandLog, key_id
from panbinder.launcher.pool import PoolEntry, ServerPool, pool_key
from panbinder.launcher.slots import LaunchSlots
from panbinder.registry_cache import ImageRef

ALIVE: set[str] = set()  # users whose server runs
PAUSED: set[str] = set()  # users whose server is frozen (it runs, but does not answer)
MIB = 1024 * 1024


def answers(user: str) -> bool:
    return user in ALIVE and user not in PAUSED


DELAY = [0.0]  # seconds the stand-in proxy takes to answer


SHOWN: dict[str, str] = {}  # user: the token its server was shown (and checked) last


class ServerStatus(RequestHandler):
    async def get(self, user: str, status: str | None = None) -> None:
        await asyncio.sleep(DELAY[0])
        if not answers(user):
            self.set_status(503)
        elif status:  # /api/status: only with the server's own token
            given = self.request.headers.get("Authorization", "")
            if given != f"token tok-{user}":
                raise HTTPError(403)
            SHOWN[user] = given.split()[1]
        self.finish({"version": "test"} if answers(user) else {})


@pytest.fixture(autouse=True)
async def proxy():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = HTTPServer(Application([(r"/user/([^/]+)/api(/status)?", ServerStatus)]))
    server.listen(port, "127.0.0.1")
    FakeLauncher.hub_url = f"http://127.0.0.1:{port}"
    yield
    server.stop()
    ALIVE.clear()
    PAUSED.clear()
    SHOWN.clear()
    DELAY[0] = 0.0


class FakeLauncher:
    user_prefix = "pb-"
    hub_url = ""
    token_expires_in = 3600

    def __init__(self, fail: bool = False, pausable: bool = False, memory: int = 100 * MIB) -> None:
        self.spawned: list[str] = []
        self.deleted: list[str] = []
        self.tokens: list[tuple[str, int | None]] = []
        self.fail = fail
        self.pausable = pausable
        self.memory = memory
        self.deleted_paused: list[str] = []  # removed while frozen (would miss its stop signal)
        self.slots = LaunchSlots(2)  # readers' launches (pre-starts wait while they need them)

    async def pause_server(self, user, paused=True):
        if not self.pausable or user not in ALIVE:
            return False
        (PAUSED.add if paused else PAUSED.discard)(user)
        return True

    async def server_state(self, user):
        return "gone" if user not in ALIVE else "paused" if user in PAUSED else "running"

    async def server_memory(self, user):
        return self.memory if user in ALIVE else None

    async def spawn(self, user, request):
        await asyncio.sleep(0)
        if self.fail:
            raise RuntimeError("no room")
        self.spawned.append(user)
        ALIVE.add(user)
        yield "started"

    async def create_token(self, user, note, expires_in=None):
        self.tokens.append((user, expires_in))
        return f"tok-{user}"

    async def delete_user(self, user):
        self.deleted.append(user)
        if user in PAUSED:
            self.deleted_paused.append(user)
        ALIVE.discard(user)
        PAUSED.discard(user)


def req(tag: str) -> LaunchRequest:
    return LaunchRequest(launch_id="x", image=ImageRef("127.0.0.1:5000", "panbinder/v1-git-a", tag))


async def take(pool: ServerPool, request: LaunchRequest) -> str | None:
    """The user of the server the pool hands out for ``request`` (None: a miss)."""
    entry = await pool.take_entry(request)
    return entry.user if entry is not None else None


def make_pool(launcher, **kw) -> ServerPool:
    return ServerPool(launcher=launcher, **{"refill_delay": 0, "sweep_interval": 0.01, **kw})


async def settle(pool: ServerPool) -> None:
    while pool.tasks:
        await asyncio.gather(*list(pool.tasks), return_exceptions=True)


async def test_refill_then_take_hands_out_each_server_once():
    launcher = FakeLauncher()
    pool = make_pool(launcher, size=1, sweep_interval=3600)  # no refill by the sweep meanwhile
    assert await take(pool, req("a")) is None
    pool.refill_soon(req("a"))
    await settle(pool)
    assert pool.count == 1 and pool.summary() == {"127.0.0.1:5000/panbinder/v1-git-a:a": 1}
    user = await take(pool, req("a"))
    assert user == launcher.spawned[0]
    assert await take(pool, req("a")) is None
    assert (pool.hits, pool.misses) == (1, 2)
    await pool.drain()


async def test_pre_starts_wait_while_readers_launches_need_the_slots():
    launcher = FakeLauncher()
    pool = make_pool(launcher, size=1, sweep_interval=3600)
    readers = [launcher.slots.enter() for _ in range(3)]  # 2 starting, 1 waiting in line
    pool.refill_soon(req("a"))
    await asyncio.sleep(0.1)
    assert launcher.spawned == []
    launcher.slots.leave(readers[0])  # the waiting one gets the slot: both still taken
    await asyncio.sleep(0.1)
    assert launcher.spawned == []
    launcher.slots.leave(readers[1])  # a slot free, nobody waiting: the pre-start goes
    await settle(pool)
    assert len(launcher.spawned) == 1 and pool.count == 1
    launcher.slots.leave(readers[2])
    await pool.drain()


async def test_a_burst_gets_every_ready_server_even_when_checks_are_slow():
    """20 clicks at once on a pool of 20: each server is checked before it is handed out, all at
    once (with 8 connections, the third round of checks timed out in the client's queue and
    good servers were dropped for cold starts)."""
    launcher = FakeLauncher()
    pool = make_pool(launcher, size=20, sweep_interval=3600, check_timeout=1.5)
    pool.refill_soon(req("a"))
    await settle(pool)
    assert pool.count == 20
    DELAY[0] = 1.0
    taken = await asyncio.gather(*(take(pool, req("a")) for _ in range(20)))
    assert sorted(taken) == sorted(launcher.spawned) and pool.hits == 20
    await pool.drain()


async def test_a_check_that_times_out_is_a_miss_not_a_failed_launch():
    launcher = FakeLauncher()
    pool = make_pool(launcher, size=1, sweep_interval=3600, check_timeout=0.2)
    pool.refill_soon(req("a"))
    await settle(pool)
    DELAY[0] = 1.0  # the server does not answer in time
    assert await take(pool, req("a")) is None
    assert (pool.hits, pool.misses, pool.dead) == (0, 1, 1)
    await settle(pool)
    assert launcher.deleted == launcher.spawned
    await pool.drain()


async def test_servers_are_not_shared_between_images():
    pool = make_pool(FakeLauncher(), size=1)
    pool.refill_soon(req("a"))
    await settle(pool)
    assert await take(pool, req("b")) is None
    await pool.drain()


async def test_size_zero_disables_the_pool():
    launcher = FakeLauncher()
    pool = make_pool(launcher, size=0)
    pool.refill_soon(req("a"))
    assert not pool.tasks and await take(pool, req("a")) is None and launcher.spawned == []


async def test_expired_entries_are_removed_not_handed_out():
    launcher = FakeLauncher()
    pool = make_pool(launcher, size=1, max_age=0.05, sweep_interval=3600)
    pool.refill_soon(req("a"))
    await settle(pool)
    await asyncio.sleep(0.1)
    assert await take(pool, req("a")) is None
    await settle(pool)
    assert launcher.deleted == launcher.spawned
    await pool.drain()


async def test_max_servers_evicts_the_oldest_other_image():
    launcher = FakeLauncher()
    pool = make_pool(launcher, size=1, max_servers=1)
    pool.refill_soon(req("a"))
    await settle(pool)
    pool.refill_soon(req("b"))
    await settle(pool)
    assert pool.count == 1
    assert launcher.deleted == [launcher.spawned[0]]
    assert await take(pool, req("b")) == launcher.spawned[1]
    await pool.drain()


async def test_failed_prestart_cleans_up_and_leaves_pool_empty():
    launcher = FakeLauncher(fail=True)
    pool = make_pool(launcher, size=1)
    pool.refill_soon(req("a"))
    await settle(pool)
    assert pool.count == 0 and len(launcher.deleted) == 1


@pytest.mark.parametrize("size", [2, 3])
async def test_fills_up_to_size_and_drain_removes_all(size):
    launcher = FakeLauncher()
    pool = make_pool(launcher, size=size)
    pool.refill_soon(req("a"))
    pool.refill_soon(req("a"))  # a second call while filling does not double the pool
    await settle(pool)
    assert pool.count == size
    await pool.drain()
    assert sorted(launcher.deleted) == sorted(launcher.spawned) and pool.count == 0


async def test_a_vanished_server_is_never_handed_out_and_a_sweep_replaces_it():
    """The run engine restarted: pre-started containers are gone, the Hub still lists them."""
    launcher = FakeLauncher()
    pool = make_pool(launcher, size=1, sweep_interval=3600, burst_window=0)  # one server wanted
    pool.refill_soon(req("a"))
    await settle(pool)
    ALIVE.discard(launcher.spawned[0])
    assert await take(pool, req("a")) is None  # handing it out would give a reader a dead link
    await settle(pool)
    assert launcher.deleted == launcher.spawned[:1] and pool.dead == 1
    pool.refill_soon(req("a"))
    await settle(pool)
    ALIVE.discard(launcher.spawned[1])
    await pool.sweep()
    await settle(pool)
    assert pool.count == 1 and launcher.deleted == launcher.spawned[:2]
    assert await take(pool, req("a")) == launcher.spawned[2]
    await pool.drain()


async def test_a_pre_started_server_s_token_is_made_and_shown_to_it_before_it_waits():
    """The hand-out asks the Hub nothing: the reader's token was made at the pre-start (valid for
    the launcher's lifetime plus the pool's max_age) and the server checked it then."""
    launcher = FakeLauncher(pausable=True)
    pool = make_pool(launcher, size=1, sweep_interval=3600, max_age=300)
    pool.refill_soon(req("a"))
    await settle(pool)
    user = launcher.spawned[0]
    assert launcher.tokens == [(user, 3600 + 300)] and SHOWN == {user: f"tok-{user}"}
    assert user in PAUSED  # shown before it was paused
    entry = await pool.take_entry(req("a"))
    assert (entry.user, entry.token) == (user, f"tok-{user}") and len(launcher.tokens) == 1
    await pool.drain()


async def test_a_server_that_refuses_its_token_is_not_kept():
    launcher = FakeLauncher(pausable=True)
    original = launcher.create_token

    async def wrong_token(user, note, expires_in=None):
        await original(user, note, expires_in)
        return "not-its-token"

    launcher.create_token = wrong_token
    pool = make_pool(launcher, size=1, sweep_interval=3600)
    pool.refill_soon(req("a"))
    await settle(pool)
    assert pool.count == 0 and launcher.deleted == launcher.spawned[:1]
    await pool.drain()


async def test_pre_started_servers_wait_paused_and_are_thawed_when_taken():
    launcher = FakeLauncher(pausable=True)
    pool = make_pool(launcher, size=1)
    pool.refill_soon(req("a"))
    await settle(pool)
    user = launcher.spawned[0]
    assert user in PAUSED and pool.status()["paused"] == 1
    await pool.sweep()  # a paused server does not answer, yet it is alive
    assert pool.count == 1 and pool.dead == 0
    assert await take(pool, req("a")) == user and user not in PAUSED
    await pool.drain()


async def test_paused_servers_are_thawed_before_removal():
    launcher = FakeLauncher(pausable=True)
    pool = make_pool(launcher, size=2)
    pool.refill_soon(req("a"))
    pool.refill_soon(req("a"))
    await settle(pool)
    assert pool.count == 2 and all(u in PAUSED for u in launcher.spawned)
    await pool.drain()
    assert sorted(launcher.deleted) == sorted(launcher.spawned) and launcher.deleted_paused == []


async def test_the_memory_budget_bounds_the_pool_with_measured_usage():
    launcher = FakeLauncher(pausable=True, memory=300 * MIB)
    pool = make_pool(launcher, size=1, memory_budget="1G", server_memory="100M", max_per_kind=10)
    assert pool.capacity == 10  # assumed 100 MiB each until measured
    for _ in range(5):  # a burst of five launches: five servers wanted
        pool.refill_soon(req("a"))
    await settle(pool)
    assert pool.per_server == 300 * MIB and pool.capacity == 3
    await pool.sweep()
    await settle(pool)
    assert pool.count <= 3 + 1  # the one started before the first measurement may stay
    assert pool.status()["memory_bytes"] == pool.count * 300 * MIB
    await pool.drain()


async def test_a_more_expected_kind_evicts_a_less_expected_one():
    launcher = FakeLauncher(pausable=True)
    pool = make_pool(launcher, size=1, max_servers=1)
    pool.refill_soon(req("a"))
    await settle(pool)
    before = metrics_value("panbinder_pool_evictions_total")
    for _ in range(3):
        pool.refill_soon(req("b"))
    await settle(pool)
    assert pool.summary() == {req("b").image.full: 1} and pool.evictions == 1
    assert launcher.deleted == [launcher.spawned[0]] and launcher.deleted_paused == []
    assert metrics_value("panbinder_pool_evictions_total") == before + 1
    pool.refill_soon(req("a"))  # one launch of a: b (three this minute) is still more expected
    await settle(pool)
    assert pool.summary() == {req("b").image.full: 1}
    await pool.drain()


async def test_warm_start_fills_registered_publications_before_any_launch():
    launcher = FakeLauncher(pausable=True)
    pool = make_pool(launcher, size=1, max_servers=2)
    now = time.time()
    demand = DemandLog(None)
    demand.record(key_id(pool_key(req("launched"))), now - 60, image=req("launched").image.full)
    candidates = [(req("new"), now - 3600), (req("old"), now - 90 * 86400), (req("launched"), None)]
    missing = req("unbuilt")
    candidates.append((missing, now))

    async def available(request):
        return request != missing

    await pool.warm(candidates, demand, available=available)
    await pool.first_round()
    await settle(pool)
    assert set(pool.summary()) == {req("launched").image.full, req("new").image.full}
    hits = metrics_value("panbinder_pool_hits_total")
    assert await take(pool, req("new")) is not None
    assert metrics_value("panbinder_pool_hits_total") == hits + 1
    await pool.drain()


def metrics_value(name: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name) or 0.0


async def test_an_expired_paused_server_is_thawed_before_removal_not_handed_out():
    launcher = FakeLauncher(pausable=True)
    pool = make_pool(launcher, size=1, max_age=0.05, sweep_interval=3600)
    pool.refill_soon(req("a"))
    await settle(pool)
    await asyncio.sleep(0.1)
    assert await take(pool, req("a")) is None
    await settle(pool)
    assert launcher.deleted == launcher.spawned[:1] and launcher.deleted_paused == []
    await pool.drain()


class SlowThawLauncher(FakeLauncher):
    """Thawing waits for ``thawed`` once it is set to an unset event (a busy engine)."""

    thawed: asyncio.Event | None = None

    async def pause_server(self, user, paused=True):
        if not paused and self.thawed is not None:
            await self.thawed.wait()
        return await super().pause_server(user, paused)


async def test_a_launch_abandoned_while_its_server_thaws_removes_that_server():
    launcher = SlowThawLauncher(pausable=True)
    pool = make_pool(launcher, size=1, sweep_interval=3600)
    pool.refill_soon(req("a"))
    await settle(pool)
    user = launcher.spawned[0]
    launcher.thawed = asyncio.Event()
    taking = asyncio.ensure_future(take(pool, req("a")))
    await asyncio.sleep(0.05)
    taking.cancel()
    with pytest.raises(asyncio.CancelledError):
        await taking
    assert pool.count == 0 and pool.tasks  # neither pooled nor handed out: its removal is under way
    launcher.thawed.set()
    await settle(pool)
    assert launcher.deleted == [user] and launcher.deleted_paused == []
    await pool.drain()


async def test_a_launch_abandoned_while_its_pooled_server_gets_a_token_removes_that_server():
    from panbinder.launcher.hub_api import HubLauncher

    launcher = HubLauncher(signing_key="k", hub_url="http://127.0.0.1:1", pool_class=None)
    removed: list[str] = []

    class OnePool:
        entries: dict = {}

        async def take_entry(self, request):
            return PoolEntry("pb-pooled", 0.0)  # no token yet: the launch makes one

    async def token(user, request):
        await asyncio.Event().wait()  # the Hub is slow: the reader leaves meanwhile

    async def remove_user(user):
        removed.append(user)
        return True

    launcher.pool, launcher._token, launcher.remove_user = OnePool(), token, remove_user
    events = launcher.launch(req("a"))
    first = asyncio.ensure_future(events.__anext__())
    await asyncio.sleep(0.05)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.gather(*launcher.tasks)
    assert removed == ["pb-pooled"]


class EngineAwayLauncher(FakeLauncher):
    """The run engine stops answering: pausing or thawing raises, as the docker client does."""

    away = False

    async def pause_server(self, user, paused=True):
        if self.away:
            raise ConnectionError("Connection aborted.")
        return await super().pause_server(user, paused)

    async def server_state(self, user):
        if self.away:
            raise ConnectionError("Connection aborted.")
        return await super().server_state(user)


async def test_an_engine_away_while_removing_a_paused_server_still_removes_its_user():
    launcher = EngineAwayLauncher(pausable=True)
    pool = make_pool(launcher, size=1, max_age=0.05, sweep_interval=3600)
    pool.refill_soon(req("a"))
    await settle(pool)
    await asyncio.sleep(0.1)
    launcher.away = True
    await pool.sweep()  # expired: thawing fails, the user is removed all the same
    assert launcher.deleted == launcher.spawned[:1]
    await pool.drain()


async def test_the_pool_keeps_sweeping_after_a_sweep_that_failed():
    launcher = EngineAwayLauncher(pausable=True)
    pool = make_pool(launcher, size=1, sweep_interval=0.01)
    pool.refill_soon(req("a"))
    await settle(pool)
    launcher.away = True  # a paused server's state cannot be read: that sweep fails
    await asyncio.sleep(0.05)
    launcher.away = False
    ALIVE.clear()  # the engine came back without the server: the next sweep replaces it
    await asyncio.sleep(0.2)
    assert len(launcher.spawned) >= 2 and launcher.deleted[:1] == launcher.spawned[:1]
    await pool.drain()
