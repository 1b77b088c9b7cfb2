"""Idle servers and their temporary users are removed by jupyterhub-idle-culler."""

from __future__ import annotations

import asyncio
import json

import pytest
from tornado.httpclient import AsyncHTTPClient

from tests.support import container_names, eventually, read_stream, session_prefix

pytestmark = [pytest.mark.docker, pytest.mark.hub, pytest.mark.slow]
PREFIX = session_prefix("panbinder-cull")


@pytest.fixture(scope="module")
def culling_portal(portal_factory):
    config = """
        c.GitProvider.allow_local = True
        c.HubProcess.cull_timeout = 4
        c.HubProcess.cull_every = 2
        c.ServerPool.size = 0
        """
    with portal_factory("cull", config, prefix=PREFIX) as p:
        yield p


async def test_idle_server_and_user_are_removed(culling_portal, git_server, analysis_repo):
    s = await read_stream(culling_portal.build_url(git_server.url(analysis_repo), "main"))
    assert s.last["phase"] == "ready", s.log()
    user = s.last["url"].rstrip("/").rsplit("/", 1)[1]
    token = culling_portal.service_token
    client = AsyncHTTPClient()
    hub = f"http://127.0.0.1:{culling_portal.hub_port}/hub/api/users/{user}"
    first = await client.fetch(hub, headers={"Authorization": f"token {token}"})
    assert json.loads(first.body)["name"] == user
    for _ in range(60):
        await asyncio.sleep(1)
        resp = await client.fetch(hub, headers={"Authorization": f"token {token}"}, raise_error=False)
        if resp.code == 404:
            break
    else:
        raise AssertionError("the idle user was not removed within 60 s")
    # servers run with auto-remove: docker removes a stopped container on its own time (the
    # spawner's remove call then answers "already in progress"), seconds on a loaded machine
    await eventually(
        lambda: not [n for n in container_names(PREFIX) if user.removeprefix("pb-") in n],
        30,
        "the idle server's container removed",
    )
