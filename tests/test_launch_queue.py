"""HubLauncher under load and faults, against a stand-in Hub on 127.0.0.1: launch slots and
their waiting positions, short calls that never queue behind progress streams, a broken
progress stream retried, failed and abandoned launches removed in the Hub's order, the reaper."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from datetime import UTC, datetime

import pytest

from panbinder.launcher import LaunchRequest
from panbinder.launcher.hub_api import HubLauncher
from panbinder.launcher.reaper import Candidate, age_of, escape_name, select_orphans
from panbinder.launcher.slots import LaunchSlots
from panbinder.pipeline import until_set
from panbinder.registry_cache import ImageRef

from .fake_hub import HubState, start_fake_hub

IMAGE = ImageRef("127.0.0.1:5000", "panbinder/v1-git-a", "abc")


@pytest.fixture
async def hub():
    state = HubState()
    server, url = await start_fake_hub(state)
    state.url = url
    yield state
    server.stop()
    for task in state.tasks.values():
        task.cancel()


def launcher_for(hub: HubState, **kw) -> HubLauncher:
    return HubLauncher(hub_url=hub.url, api_token="t", pool_class=None, **kw)


async def launch(launcher: HubLauncher, n: int = 0) -> list[dict]:
    return [e.to_dict() async for e in launcher.launch(LaunchRequest(launch_id=f"l{n}", image=IMAGE))]


async def until(condition, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise TimeoutError("condition not reached")


async def settle(launcher: HubLauncher) -> None:
    while launcher.tasks:
        await asyncio.gather(*list(launcher.tasks), return_exceptions=True)


# --- slots ---------------------------------------------------------------------------------


async def test_slots_grant_in_order_and_report_moving_positions():
    slots = LaunchSlots(1)
    first, second, third = slots.enter(), slots.enter(), slots.enter()
    assert first.granted and (slots.position(second), slots.position(third)) == (1, 2)
    seen = []

    async def follow():
        async for place in slots.wait(third):
            seen.append(place)

    task = asyncio.ensure_future(follow())
    await asyncio.sleep(0)
    slots.leave(second)  # a waiting launch that leaves moves the others up
    await asyncio.sleep(0)
    slots.leave(first)
    await asyncio.wait_for(task, 1)
    assert seen == [(2, 2), (1, 1)] and third.granted and slots.running == 1


async def test_until_free_waits_for_a_free_slot_and_an_empty_line():
    slots = LaunchSlots(1)
    first = slots.enter()
    second = slots.enter()
    free = asyncio.ensure_future(slots.until_free())
    await asyncio.sleep(0.01)
    slots.leave(first)  # the waiting launch takes it: still not free
    await asyncio.sleep(0.01)
    assert not free.done()
    slots.leave(second)
    await asyncio.wait_for(free, 1)


def test_launch_slots_default_to_twice_the_cores():
    launcher = HubLauncher(hub_url="http://127.0.0.1:1", api_token="t", pool_class=None)
    assert launcher.max_concurrent_launches == max(4, 2 * (os.cpu_count() or 1))
    assert launcher.slots.size == launcher.max_concurrent_launches


# --- concurrency ---------------------------------------------------------------------------


async def test_launches_beyond_the_limit_wait_in_line_with_positions(hub):
    hub.spawn_delay = 0.3
    launcher = launcher_for(hub, max_concurrent_launches=2)
    results = await asyncio.gather(*(launch(launcher, i) for i in range(5)))
    assert all(r[-1]["phase"] == "ready" for r in results), results
    assert hub.streams_max <= 2  # never more Hub spawns followed at once than the setting
    waits = [[e for e in r if e["phase"] == "waiting"] for r in results]
    assert sum(1 for w in waits if w) == 3
    last = max(waits, key=len)
    assert [e["position"] for e in last] == sorted((e["position"] for e in last), reverse=True)
    assert last[0]["queue_length"] == 3 and "position 3 of 3" in last[0]["message"]
    assert not launcher.live and not launcher.slots.running


async def test_short_calls_do_not_queue_behind_progress_streams(hub):
    """15 launches at once (more than tornado's default 10 connections): every one is ready in
    about one start time, not two; the shared default client is left alone."""
    hub.spawn_delay = 2.0
    launcher = launcher_for(hub, max_concurrent_launches=32)
    start = time.monotonic()
    results = await asyncio.gather(*(launch(launcher, i) for i in range(15)))
    elapsed = time.monotonic() - start
    assert all(r[-1]["phase"] == "ready" for r in results)
    assert hub.streams_max == 15
    assert elapsed < 3.5, f"{elapsed:.2f} s: launches waited for each other's streams"
    assert launcher.hub.streams is not launcher.hub.calls


async def test_a_broken_progress_stream_is_reopened_not_a_failed_launch(hub):
    hub.spawn_delay = 0.3
    hub.reset_streams = 1
    launcher = launcher_for(hub)
    events = await launch(launcher)
    assert events[-1]["phase"] == "ready", events
    assert hub.streams_total == 2 and len(hub.users) == 1


# --- clean-up ------------------------------------------------------------------------------


async def test_a_launch_that_times_out_is_stopped_then_its_user_deleted(hub):
    """The Hub refuses to delete a user whose server is starting: stop, wait, then delete."""
    hub.spawn_delay = 30
    launcher = launcher_for(hub, launch_timeout=0.5, cleanup_timeout=5)
    events = await launch(launcher)
    assert events[-1]["phase"] == "failed" and events[-1]["status_code"] == 500
    await settle(launcher)
    assert hub.users == {} and not launcher.leftover and not launcher.live
    order = [line for line in hub.log if line.startswith("DELETE")]
    assert order[0].endswith("/server") and not order[-1].endswith("/server")


async def test_a_failed_start_removes_its_user(hub):
    hub.spawn_fails = True
    launcher = launcher_for(hub)
    events = await launch(launcher)
    assert events[-1]["phase"] == "failed" and "no room" in events[-1]["detail"]
    await settle(launcher)
    assert hub.users == {}


async def test_an_abandoned_launch_removes_what_it_started(hub):
    hub.spawn_delay = 30
    launcher = launcher_for(hub, cleanup_timeout=5)
    left = asyncio.Event()
    seen = []
    request = LaunchRequest(launch_id="gone", image=IMAGE)

    async def follow():
        async for event in until_set(launcher.launch(request), left):
            seen.append(event.phase)

    task = asyncio.ensure_future(follow())
    await until(lambda: any(u["server"] for u in hub.users.values()))
    left.set()  # the reader closed the page while the server was starting
    await asyncio.wait_for(task, 2)
    await settle(launcher)
    assert set(seen) == {"launching"} and hub.users == {}  # neither ready nor failed: it just ends
    assert launcher.slots.running == 0


async def test_a_waiting_launch_that_is_abandoned_leaves_the_line(hub):
    hub.spawn_delay = 30
    launcher = launcher_for(hub, max_concurrent_launches=1, cleanup_timeout=5)
    left = asyncio.Event()
    first = asyncio.ensure_future(launch(launcher, 1))
    await until(lambda: bool(hub.users))
    second = [e.phase async for e in until_set(_one_then(launcher, left), left)]
    assert second == ["waiting"] and launcher.slots.waiting == []
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    await settle(launcher)
    assert hub.users == {}


async def _one_then(launcher: HubLauncher, left: asyncio.Event):
    async for event in launcher.launch(LaunchRequest(launch_id="w", image=IMAGE)):
        yield event
        left.set()


# --- reaper --------------------------------------------------------------------------------


def test_select_orphans_keeps_owned_busy_and_young():
    found = [
        Candidate("pb-old", 1000),
        Candidate("pb-young", 10),
        Candidate("pb-live", 1000),
        Candidate("pb-reading", 1000, busy=True),
    ]
    assert select_orphans(found, {"pb-live"}, 600) == ["pb-old"]


def test_age_of_reads_hub_and_docker_times():
    moment = datetime(2027, 1, 15, 8, 0, 0, tzinfo=UTC).timestamp()
    assert age_of("2027-01-15T08:00:00.250000Z", moment + 10) == pytest.approx(9.75)
    assert age_of("2027-01-15T08:00:00.250000123Z", moment + 10) == pytest.approx(9.75)  # docker: ns
    assert age_of("2027-01-15T09:00:00+01:00", moment + 10) == pytest.approx(10)
    assert age_of(None, moment) == 0 and age_of("yesterday", moment) == 0


def test_escape_name_matches_dockerspawner():
    from dockerspawner import DockerSpawner

    assert escape_name("pb-3f2a") == DockerSpawner._escape("pb-3f2a") == "pb-2d3f2a"


async def test_reaper_removes_only_unowned_old_users_without_a_ready_server(hub):
    hub.add_user("pb-orphan", age=2000)
    hub.add_user("pb-stuck", age=2000, server={"ready": False, "pending": "spawn"})
    hub.add_user("pb-young", age=5)
    hub.add_user("pb-reading", age=2000, server={"ready": True, "pending": None})
    hub.add_user("pb-live", age=2000)
    hub.add_user("alice", age=2000)
    launcher = launcher_for(hub, cleanup_timeout=5)
    launcher.live.add("pb-live")
    launcher.reaper.grace_period = 600
    removed, containers = await launcher.reaper.sweep()
    assert sorted(removed) == ["pb-orphan", "pb-stuck"] and containers == []
    assert sorted(hub.users) == ["alice", "pb-live", "pb-reading", "pb-young"]


async def test_reaper_start_removes_what_an_earlier_run_left_without_grace(hub):
    hub.add_user("pb-left-by-a-killed-portal", age=5)
    hub.add_user("pb-reading", age=5, server={"ready": True, "pending": None})
    launcher = launcher_for(hub)
    launcher.reaper.grace_period = 600
    launcher.reaper.started_at = time.time()  # the portal started after those users were made
    removed, _ = await launcher.reaper.sweep()
    assert removed == ["pb-left-by-a-killed-portal"] and sorted(hub.users) == ["pb-reading"]


async def test_reaper_retries_a_removal_that_failed(hub):
    hub.add_user("pb-left", age=1)
    launcher = launcher_for(hub)
    launcher.leftover.add("pb-left")
    removed, _ = await launcher.reaper.sweep()
    assert removed == ["pb-left"] and hub.users == {} and not launcher.leftover


async def test_removal_retries_a_hub_answering_500_quietly(hub, caplog):
    """A Hub started again after a crash answers 500 for a while: the removal retries within its
    bound and logs twice, not once per answer."""
    hub.add_user("pb-half-started", age=1)
    hub.failing_deletes = 4
    launcher = launcher_for(hub, cleanup_timeout=10, log=logging.getLogger("panbinder-removal-test"))
    with caplog.at_level("DEBUG"):
        assert await launcher.remove_user("pb-half-started")
    assert hub.users == {} and hub.failing_deletes == 0
    ours = [r for r in caplog.records if not r.name.startswith("tornado")]
    lines = [r for r in ours if "pb-half-started" in r.getMessage() and "500" in r.getMessage()]
    assert len(lines) == 2 and all(r.levelname == "INFO" for r in lines)


async def test_a_ready_server_goes_with_its_user_in_one_call(hub):
    """The Hub stops a running server before it deletes its user: no stop, poll and delete."""
    hub.add_user("pb-checked", server={"ready": True, "pending": None})
    launcher = launcher_for(hub)
    assert await launcher.remove_user("pb-checked")
    assert hub.users == {}
    assert [line for line in hub.log if line.startswith("DELETE")] == ["DELETE /hub/api/users/pb-checked"]


async def test_reaper_runs_periodically_and_stops(hub):
    hub.add_user("pb-orphan", age=2000)
    launcher = launcher_for(hub)
    launcher.reaper.interval = 0.05
    await launcher.start()
    for _ in range(100):
        if not hub.users:
            break
        await asyncio.sleep(0.02)
    await launcher.stop()
    assert hub.users == {} and launcher.reaper.task.done()
