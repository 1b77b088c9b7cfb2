"""Two portals, one catalogue, one Hub: 20 launches of one new commit split over both portals
make exactly one build, and all 20 reach ready.

Portal A runs the Hub; portal B uses it with its own temporary-user prefix (``tests/portals.py``).
Both keep their catalogue in one throwaway PostgreSQL server (``tests/postgres.py``), where the
build lease of the image decides which portal builds.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import urllib.request

import pytest
from tornado.httpclient import AsyncHTTPClient

from panbinder.builder.shared import WAITING_MESSAGE
from tests.portals import builds_of, portal_config, shared_hub_config
from tests.postgres import fresh_database, temporary_cluster
from tests.support import Portal, read_stream

pytestmark = [pytest.mark.docker, pytest.mark.hub, pytest.mark.slow]
LAUNCHES = 20
AsyncHTTPClient.configure(None, max_clients=64)  # the readers' side must not queue requests
LIMITS = """
    c.ServerPool.size = 0
    c.HubProcess.mem_limit = "512M"
    c.HubLauncher.max_concurrent_launches = 10
    # 20 servers starting at once on 2 shared cores: each may take minutes when others run tests
    c.HubProcess.start_timeout = 480
    c.HubLauncher.launch_timeout = 480
    c.ServeApp.enable_build_only = False
    """


@pytest.fixture(scope="module")
def portals(portal_factory):
    with temporary_cluster() as server, fresh_database(server) as url:
        with portal_factory("portals", portal_config(url, "pb-a-", LIMITS)) as a:
            config = portal_config(url, "pb-b-", LIMITS) + shared_hub_config(a)
            with portal_factory("portals-b", config, prefix=a.container_prefix, hub_port=a.hub_port) as b:
                yield a, b


def hub_users(portal: Portal) -> list[str]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{portal.hub_port}/hub/api/users?limit=200",
        headers={
            "Authorization": f"token {portal.service_token}",
            "Accept": "application/jupyterhub-pagination+json",
        },
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        return [u["name"] for u in json.load(resp)["items"]]


async def test_one_build_for_twenty_launches_over_two_portals(portals, git_server):
    a, b = portals
    name = f"portals-{secrets.token_hex(4)}"  # a commit no portal has built
    git_server.commit(name, {"README.md": f"two portals {name}\n", "data/values.txt": "21\n"}, "new")
    urls = [p.build_url(git_server.url(name), "main") for p in (a, b)]
    started = time.monotonic()
    streams = await asyncio.gather(*(read_stream(urls[i % 2], timeout=900) for i in range(LAUNCHES)))
    seconds = time.monotonic() - started
    assert [s.last.get("phase") for s in streams] == ["ready"] * LAUNCHES, [s.log() for s in streams]
    assert builds_of([a.state, b.state], name) == 1, a.logs() + b.logs()
    waited = [i % 2 for i, s in enumerate(streams) if WAITING_MESSAGE in s.log()]
    assert len(waited) == LAUNCHES // 2 and len(set(waited)) == 1  # every request of the other portal
    users = {s.last["url"].rstrip("/").rsplit("/", 1)[1] for s in streams}
    assert len(users) == LAUNCHES and users <= set(hub_users(a))  # one Hub holds both portals' users
    assert {u[:5] for u in users} == {"pb-a-", "pb-b-"}
    print(f"\n{LAUNCHES} launches of a new commit over two portals: 1 build, all ready in {seconds:.1f} s")
