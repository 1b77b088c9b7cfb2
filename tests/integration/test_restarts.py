"""Restarts under running servers: the engine that runs them, and the Hub alone.

The run-engine test starts a dockerd of its own (``own_run_engine``: own socket, data root and
bridge) and points a portal at it with ``Docker.host``, so restarting it never touches the
machine's dockerd, which other tests and the shared registry's users rely on. Servers have no
restart policy: a restarted engine removes them, and the portal must then report them gone
rather than hand out dead links, with its catalogue intact, its pool refilled and no orphaned
Hub user or container.
"""

from __future__ import annotations

import asyncio
import secrets

import pytest
from tornado.httpclient import AsyncHTTPClient

from panbinder.data_mounts.catalogue import Catalogue
from tests.support import (
    Portal,
    container_names,
    eventually,
    hub_pid,
    hub_users,
    kill_hub,
    own_run_engine,
    portal_health,
    quick_recovery_config,
    read_stream,
    remove_containers,
    restart_engine,
    server_running,
    wait_status,
)

from .conftest import ANALYSIS_FILES

pytestmark = [pytest.mark.docker, pytest.mark.hub, pytest.mark.slow]


@pytest.fixture(scope="module")
def run_engine(tmp_path_factory):
    with own_run_engine(tmp_path_factory.mktemp("run-engine")) as engine:
        yield engine


@pytest.fixture
def engine_portal(portal_factory, run_engine):
    config = f"c.Docker.host = {run_engine.host!r}\n{quick_recovery_config(cull_timeout=900)}"
    with portal_factory("restart", config) as p:
        yield p
        p.stop()
        remove_containers(p.container_prefix, host=run_engine.host)


def user_of(ready: dict) -> str:
    return ready["url"].rstrip("/").rsplit("/", 1)[1]


async def answers(url: str, token: str) -> bool:
    resp = await AsyncHTTPClient().fetch(
        url + "api/status", headers={"Authorization": f"token {token}"}, raise_error=False, request_timeout=5
    )
    return resp.code == 200


async def prestarted(portal: Portal) -> int:
    return (await portal_health(portal))[1].get("prestarted_servers", 0)


async def pool_full(portal: Portal) -> bool:
    # ServerPool.size is the floor: a burst of launches of one kind plans more (demand.py)
    return await prestarted(portal) >= 1


def lock_of(portal: Portal, image: str) -> dict | None:
    cat = Catalogue(db_url=f"sqlite:///{portal.state / 'catalogue.sqlite'}")
    cat.start()
    try:
        return cat.get_lock(image)
    finally:
        cat.close()


def orphans(portal: Portal, host: str) -> list[str]:
    """Temporary users without a running server, and containers of users without one."""
    users = hub_users(portal)
    running = {name for name, model in users.items() if server_running(model)}
    idle = sorted(set(users) - running)
    stray = [
        c for c in container_names(portal.container_prefix, host) if not any(u[3:] in c for u in running)
    ]
    return idle + stray


async def test_run_engine_restart_reports_servers_gone_and_recovers(engine_portal, run_engine, git_server):
    portal = engine_portal
    name = f"restart-{secrets.token_hex(4)}"
    git_server.commit(name, {**ANALYSIS_FILES, "README.md": f"{name}\n"}, "for the run engine restart")
    url = portal.build_url(git_server.url(name), "main")
    first = await read_stream(url)
    assert first.last["phase"] == "ready", first.log()
    image = first.last["image"]
    server, token = first.last["url"], first.last["token"]
    await wait_status(server + "api/status", token)
    lock = lock_of(portal, image)
    assert lock is not None
    await eventually(lambda: pool_full(portal), 90, "a pre-started server")
    before = set(hub_users(portal))
    assert len(before) == 2 and len(container_names(portal.container_prefix, run_engine.host)) == 2

    away = await asyncio.to_thread(restart_engine, run_engine)

    # the launched server came back and answers with its token, or is reported gone
    async def settled() -> bool:
        return await answers(server, token) or not server_running(hub_users(portal).get(user_of(first.last)))

    await eventually(settled, 60, "the server answering or reported gone")
    if not await answers(server, token):
        gone = hub_users(portal).get(user_of(first.last))
        assert not server_running(gone), gone
    # the catalogue and the cached image are intact: the same link launches without a build
    again = await read_stream(url)
    assert again.last["phase"] == "ready", again.log()
    assert "build" not in " ".join(again.phases), again.phases
    await wait_status(again.last["url"] + "api/status", again.last["token"])
    assert lock_of(portal, image) == lock
    # the pool is full again with a live server, and nothing is left that no launch owns
    await eventually(lambda: pool_full(portal), 90, "the pool refilled")
    await eventually(lambda: not orphans(portal, run_engine.host), 60, "no orphaned user or container")

    async def accounted() -> bool:  # the new launch's user, the first one's if it came back, the pool's
        return len(hub_users(portal)) == 1 + (await answers(server, token)) + await prestarted(portal)

    await eventually(accounted, 90, "every temporary user a launch's or the pool's")
    status, body = await portal_health(portal)
    assert status == 200 and body["ok"], body
    print(f"run engine away {away:.1f} s")


@pytest.fixture
def hub_portal(portal_factory):
    config = """
        c.GitProvider.allow_local = True
        c.ServerPool.size = 0
        c.HubProcess.cull_timeout = 60
        c.HubProcess.cull_every = 5
        """
    with portal_factory("hubrestart", config) as p:
        yield p


async def test_a_hub_killed_alone_is_started_again_and_keeps_its_servers(
    hub_portal, git_server, analysis_repo
):
    portal = hub_portal
    url = portal.build_url(git_server.url(analysis_repo), "main")
    first = await read_stream(url)
    assert first.last["phase"] == "ready", first.log()
    server, token = first.last["url"], first.last["token"]
    await wait_status(server + "api/status", token)

    old = kill_hub(portal)
    status, body = await portal_health(portal)  # no /health call in the last 10 s: not cached
    hub = next(c for c in body["checks"] if c["service"] == "hub")
    assert status == 503 and not hub["ok"] and "starts it again" in hub["message"], body

    async def healthy() -> bool:
        return (await portal_health(portal))[0] == 200

    await eventually(healthy, 90, "the Hub back in /health")
    assert hub_pid(portal) not in (0, old)
    assert "exited with status -9; starting it again" in portal.logs()
    # the server is still reachable with its token, through the new Hub's proxy
    await wait_status(server + "api/status", token, timeout=30)
    second = await read_stream(url)
    assert second.last["phase"] == "ready", second.log()
    await wait_status(second.last["url"] + "api/status", second.last["token"])
    # and the new Hub's culler still culls the server that the old Hub started
    user = user_of(first.last)
    await eventually(lambda: user not in hub_users(portal), 150, "the idle server culled", 2)
    await eventually(
        lambda: not [c for c in container_names(portal.container_prefix) if user[3:] in c],
        30,
        "the culled server's container removed (docker removes it after the stop, on its own time)",
    )
