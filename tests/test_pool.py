"""ServerPool logic with a stand-in launcher (no Hub): take, refill, expiry, eviction, drain.

The stand-in's servers answer a real HTTP check (a tornado app on a free loopback port plays the
proxy: 200 for a live server, 503 for one that vanished), as the pool checks before a hand-out.
"""

from __future__ import annotations

import asyncio
import socket

import pytest
from tornado.httpserver import HTTPServer
from tornado.web import Application, RequestHandler

from panbinder.launcher import LaunchRequest
from panbinder.launcher.pool import ServerPool
from panbinder.registry_cache import ImageRef

ALIVE: set[str] = set()  # users whose server answers


class ServerStatus(RequestHandler):
    def get(self, user: str) -> None:
        if user not in ALIVE:
            self.set_status(503)
        self.finish({"version": "test"} if user in ALIVE else {})


@pytest.fixture(autouse=True)
async def proxy():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = HTTPServer(Application([(r"/user/([^/]+)/api", ServerStatus)]))
    server.listen(port, "127.0.0.1")
    FakeLauncher.hub_url = f"http://127.0.0.1:{port}"
    yield
    server.stop()
    ALIVE.clear()


class FakeLauncher:
    user_prefix = "pb-"
    hub_url = ""

    def __init__(self, fail: bool = False) -> None:
        self.spawned: list[str] = []
        self.deleted: list[str] = []
        self.fail = fail

    async def spawn(self, user, request):
        await asyncio.sleep(0)
        if self.fail:
            raise RuntimeError("no room")
        self.spawned.append(user)
        ALIVE.add(user)
        yield "started"

    async def delete_user(self, user):
        self.deleted.append(user)
        ALIVE.discard(user)


def req(tag: str) -> LaunchRequest:
    return LaunchRequest(launch_id="x", image=ImageRef("127.0.0.1:5000", "panbinder/v1-git-a", tag))


def make_pool(launcher, **kw) -> ServerPool:
    return ServerPool(launcher=launcher, **{"refill_delay": 0, "sweep_interval": 0.01, **kw})


async def settle(pool: ServerPool) -> None:
    while pool.tasks:
        await asyncio.gather(*list(pool.tasks), return_exceptions=True)


async def test_refill_then_take_hands_out_each_server_once():
    launcher = FakeLauncher()
    pool = make_pool(launcher, size=1)
    assert await pool.take(req("a")) is None
    pool.refill_soon(req("a"))
    await settle(pool)
    assert pool.count == 1 and pool.summary() == {"127.0.0.1:5000/panbinder/v1-git-a:a": 1}
    user = await pool.take(req("a"))
    assert user == launcher.spawned[0]
    assert await pool.take(req("a")) is None
    assert (pool.hits, pool.misses) == (1, 2)
    await pool.drain()


async def test_servers_are_not_shared_between_images():
    pool = make_pool(FakeLauncher(), size=1)
    pool.refill_soon(req("a"))
    await settle(pool)
    assert await pool.take(req("b")) is None
    await pool.drain()


async def test_size_zero_disables_the_pool():
    launcher = FakeLauncher()
    pool = make_pool(launcher, size=0)
    pool.refill_soon(req("a"))
    assert not pool.tasks and await pool.take(req("a")) is None and launcher.spawned == []


async def test_expired_entries_are_removed_not_handed_out():
    launcher = FakeLauncher()
    pool = make_pool(launcher, size=1, max_age=0.05)
    pool.refill_soon(req("a"))
    await settle(pool)
    await asyncio.sleep(0.1)
    assert await pool.take(req("a")) is None
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
    assert await pool.take(req("b")) == launcher.spawned[1]
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
    pool = make_pool(launcher, size=1, sweep_interval=3600)
    pool.refill_soon(req("a"))
    await settle(pool)
    ALIVE.discard(launcher.spawned[0])
    assert await pool.take(req("a")) is None  # handing it out would give a reader a dead link
    await settle(pool)
    assert launcher.deleted == launcher.spawned[:1] and pool.dead == 1
    pool.refill_soon(req("a"))
    await settle(pool)
    ALIVE.discard(launcher.spawned[1])
    await pool.sweep()
    await settle(pool)
    assert pool.count == 1 and launcher.deleted == launcher.spawned[:2]
    assert await pool.take(req("a")) == launcher.spawned[2]
    await pool.drain()
