"""Many launches at once and launches that go wrong, with a real portal, Hub and docker: all
reach ready, nothing leaks, an abandoned start is removed, the reaper sweeps orphans, and the
BinderHub-compatible corners of the event stream (build_only refused by default, retry:)."""

from __future__ import annotations

import asyncio
import json

import docker
import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from panbinder.launcher.hub_process import docker_bridge_gateway
from tests.support import (
    Portal,
    container_names,
    read_stream,
    remove_containers,
    session_prefix,
    wait_status,
)

from .conftest import ANALYSIS_FILES

pytestmark = [pytest.mark.docker, pytest.mark.hub, pytest.mark.slow]
PREFIX = session_prefix("panbinder-load")
CONCURRENT = 15
# the readers' side: tornado's default client holds 10 connections and times the rest out in
# its queue, which would measure the test's client rather than the portal
AsyncHTTPClient.configure(None, max_clients=64)


@pytest.fixture(scope="module")
def load_portal(portal_factory):
    config = """
        c.GitProvider.allow_local = True
        c.ServerPool.size = 0
        c.HubProcess.mem_limit = "512M"
        c.HubLauncher.max_concurrent_launches = 8
        c.Reaper.interval = 2
        c.Reaper.grace_period = 15
        c.ServeApp.enable_build_only = False
        """
    with portal_factory("load", config, prefix=PREFIX) as p:
        yield p


class Hub:
    """The portal's Hub, called with the portal's own service token (as an operator would)."""

    def __init__(self, portal: Portal) -> None:
        self.api = f"http://127.0.0.1:{portal.hub_port}/hub/api"
        token = portal.service_token
        self.headers = {"Authorization": f"token {token}", "Accept": "application/jupyterhub-pagination+json"}

    async def call(self, method: str, path: str, body: str | None = None):
        req = HTTPRequest(self.api + path, method=method, headers=self.headers, body=body)
        resp = await AsyncHTTPClient().fetch(req, raise_error=False)
        return resp.code, json.loads(resp.body) if resp.body else None

    async def temporary_users(self) -> list[dict]:
        code, page = await self.call("GET", "/users?limit=200")
        assert code == 200, page
        return [u for u in page["items"] if u["name"].startswith("pb-")]

    async def wait_gone(self, user: str, timeout: float = 90) -> None:
        for _ in range(int(timeout)):
            code, _ = await self.call("GET", f"/users/{user}")
            if code == 404:
                return
            await asyncio.sleep(1)
        raise AssertionError(f"user {user} still exists after {timeout} s")


@pytest.fixture(scope="module")
def cached(load_portal, git_server):
    """The analysis repository's image, built by a first launch that is then removed."""
    git_server.commit("load-analysis", ANALYSIS_FILES, "initial")
    url = load_portal.build_url(git_server.url("load-analysis"), "main")
    s = asyncio.run(read_stream(url, timeout=900))
    assert s.last["phase"] == "ready", s.log()
    hub = Hub(load_portal)
    user = s.last["url"].rstrip("/").rsplit("/", 1)[1]
    asyncio.run(hub.call("DELETE", f"/users/{user}"))
    return url, s.last["image"]


async def test_concurrent_launches_all_ready_and_nothing_leaks(load_portal, cached):
    url, _ = cached
    hub = Hub(load_portal)
    streams = await asyncio.gather(*(read_stream(url, timeout=600) for _ in range(CONCURRENT)))
    assert [s.last["phase"] for s in streams] == ["ready"] * CONCURRENT, [s.log() for s in streams]
    waited = [e for s in streams for e in s.events if e["phase"] == "waiting" and "position" in e]
    assert waited, "15 launches with 8 slots: some waited in line"
    assert all(e["position"] <= e["queue_length"] <= CONCURRENT - 8 for e in waited)
    assert all("retry: " in s.raw.rsplit("data: ", 1)[0][-40:] for s in streams)  # set with 'ready'
    await asyncio.gather(*(wait_status(s.last["url"] + "api/status", s.last["token"]) for s in streams))
    users = {s.last["url"].rstrip("/").rsplit("/", 1)[1] for s in streams}
    assert len(users) == CONCURRENT and {u["name"] for u in await hub.temporary_users()} == users
    # the servers are given the Hub API URL the reaper uses to tell this Hub's containers apart
    client = docker.from_env()
    env = client.containers.list(filters={"name": PREFIX})[0].attrs["Config"]["Env"]
    client.close()
    api_url = f"http://{docker_bridge_gateway()}:{load_portal.hub_api_port}/hub/api"
    assert f"JUPYTERHUB_API_URL={api_url}" in env
    for user in users:  # what the idle culler does when they are left
        await hub.call("DELETE", f"/users/{user}")
    await asyncio.gather(*(hub.wait_gone(u) for u in users))
    assert await hub.temporary_users() == []
    for _ in range(30):
        if not container_names(PREFIX):
            break
        await asyncio.sleep(1)
    assert container_names(PREFIX) == []


async def test_an_abandoned_start_is_stopped_and_its_user_deleted(load_portal, git_server, cached):
    """The reader leaves while the server is still starting (the Hub would refuse to delete the
    user then): its server is stopped, then the user deleted, and the container goes."""
    files = {**ANALYSIS_FILES, "start": '#!/bin/bash\nsleep 120\nexec "$@"\n'}
    git_server.commit("load-slow-start", files, "slow start")
    url = load_portal.build_url(git_server.url("load-slow-start"), "main")
    hub = Hub(load_portal)
    before = {u["name"] for u in await hub.temporary_users()}
    path = url.split(str(load_portal.port), 1)[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", load_portal.port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode())
    seen = b""
    while b'"phase": "launching"' not in seen:  # built (or found), and the Hub is starting it
        chunk = await asyncio.wait_for(reader.read(65536), 900)
        assert chunk, seen.decode(errors="replace")
        seen += chunk
    started = await pending_user(hub, before)
    writer.close()  # the reader leaves
    await hub.wait_gone(started, timeout=90)
    for _ in range(30):
        if not container_names(PREFIX):
            break
        await asyncio.sleep(1)
    assert container_names(PREFIX) == []


async def pending_user(hub: Hub, before: set[str]) -> str:
    """The new temporary user, once its server is pending (the Hub is starting it)."""
    for _ in range(120):
        for u in await hub.temporary_users():
            if u["name"] not in before and (u.get("servers") or {}).get("", {}).get("pending") == "spawn":
                return u["name"]
        await asyncio.sleep(0.5)
    raise AssertionError("no server started")


def idle_container(image: str, name: str, api_url: str) -> None:
    """A container named like a server of a temporary user, that no Hub knows of."""
    client = docker.from_env()
    try:
        client.containers.run(
            image,
            ["600"],
            entrypoint="sleep",
            name=name,
            environment={"JUPYTERHUB_API_URL": api_url},
            detach=True,
        )
    finally:
        client.close()


async def test_reaper_removes_orphaned_users_and_this_hubs_containers(load_portal, cached):
    _, image = cached
    hub = Hub(load_portal)
    code, _ = await hub.call("POST", "/users/pb-orphan0001", "{}")
    assert code == 201
    gateway = docker_bridge_gateway()
    ours = f"{PREFIX}-pb-2dorphan0002"
    theirs = f"{PREFIX}-pb-2dorphan0003"
    for name, port in ((ours, load_portal.hub_api_port), (theirs, 1)):
        idle_container(image, name, f"http://{gateway}:{port}/hub/api")
    try:
        await hub.wait_gone("pb-orphan0001", timeout=60)
        for _ in range(60):
            if ours not in container_names(PREFIX):
                break
            await asyncio.sleep(1)
        assert ours not in container_names(PREFIX) and theirs in container_names(PREFIX)
    finally:
        remove_containers(theirs)


async def test_build_only_is_refused_unless_enabled(load_portal, git_server, cached):
    url = load_portal.build_url(git_server.url("load-analysis"), "main", "build_only=true")
    resp = await AsyncHTTPClient().fetch(url, raise_error=False, headers={"Accept": "application/json"})
    assert resp.code == 403
    assert b"build_only" in resp.body and b"Traceback" not in resp.body


async def test_failed_events_carry_a_status_code_and_a_long_retry(load_portal, git_server, cached):
    s = await read_stream(load_portal.build_url(git_server.url("load-analysis"), "no-such-branch"))
    assert s.last["phase"] == "failed" and s.last["status_code"] == 404, s.log()
    assert "retry: 86400000\ndata: " in s.raw  # an auto-reconnecting EventSource does not ask again soon
