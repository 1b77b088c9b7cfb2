"""Two build managers (two portals) on one catalogue's build leases: one build, every follower
ends with its outcome; a build stopped on one portal is taken over by the other."""

from __future__ import annotations

import asyncio

import pytest

from panbinder.builder.manager import BuildManager
from panbinder.builder.shared import WAITING_MESSAGE
from panbinder.data_mounts.build_leases import BuildLeases
from panbinder.data_mounts.catalogue import Catalogue
from tests.test_build_manager import FakeBuilder, make_request


@pytest.fixture
def leases(tmp_path):
    cat = Catalogue(db_url=f"sqlite:///{tmp_path}/c.sqlite")
    cat.start()
    yield BuildLeases(cat)
    cat.close()


def portal(leases, builder: FakeBuilder) -> BuildManager:
    return BuildManager(builder=builder, leases=leases, lease_poll_interval=0.05, build_memory_limit=0)


async def follow_all(manager: BuildManager, build_id: str) -> list:
    job, _ = manager.attach(make_request(build_id))
    return [e async for e in manager.follow(job)]


@pytest.mark.parametrize("crash", [False, True])  # a crashed build is a failure, not a hand-over
async def test_twenty_requests_over_two_portals_build_once(leases, crash):
    builders = [FakeBuilder(delay=0.1, crash=crash), FakeBuilder(delay=0.1, crash=crash)]
    managers = [portal(leases, b) for b in builders]
    runs = await asyncio.gather(*(follow_all(managers[i % 2], f"r{i}") for i in range(20)))
    assert sum(len(b.calls) for b in builders) == 1
    final = {run[-1].phase for run in runs}
    assert final == ({"failed"} if crash else {"built"})
    waited = [i % 2 for i, run in enumerate(runs) if any(e.message == WAITING_MESSAGE for e in run)]
    assert len(waited) == 10 and len(set(waited)) == 1


async def test_a_stopped_build_is_taken_over_by_the_other_portal(leases):
    gate = asyncio.Event()
    first, second = FakeBuilder(gate=gate), FakeBuilder()
    a, b = portal(leases, first), portal(leases, second)
    a.attach(make_request("a"))
    await asyncio.sleep(0.2)  # the first portal holds the lease and builds
    assert first.calls == ["a"]
    waiting = asyncio.create_task(follow_all(b, "b"))
    await asyncio.sleep(0.2)
    await a.stop_all("shutdown")  # the first portal restarts mid-build
    events = await asyncio.wait_for(waiting, 10)
    assert events[-1].phase == "built" and second.calls == ["b"]
