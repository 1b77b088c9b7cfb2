"""Shared builds (builder/manager.py): one build per image, every follower sees all of it."""

from __future__ import annotations

import asyncio

import pytest

from panbinder.builder.base import Builder, BuildRequest
from panbinder.builder.manager import BuildManager
from panbinder.events import Event
from panbinder.registry_cache import ImageRef

STEPS = 3


def make_request(build_id: str = "b1", tag: str = "a" * 40) -> BuildRequest:
    return BuildRequest(
        build_id=build_id,
        provider="git",
        repo_url="https://example.org/repo.git",
        resolved_ref=tag,
        unresolved_ref="main",
        image=ImageRef(
            registry="127.0.0.1:5000", name="panbinder/v1-git-example-org-repo-0123456789", tag=tag
        ),
    )


class FakeBuilder(Builder):
    """Yields a few building events, then built (or raises / stops early when told to)."""

    def __init__(
        self,
        *,
        crash: bool = False,
        no_result: bool = False,
        delay: float = 0.01,
        gate: asyncio.Event | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.gate = gate
        self.crash = crash
        self.no_result = no_result
        self.delay = delay
        self.calls: list[str] = []

    async def build(self, request: BuildRequest):
        self.calls.append(request.build_id)
        for i in range(STEPS):
            await asyncio.sleep(self.delay)
            yield Event("building", f"step {i}\n")
        if self.gate is not None:
            await self.gate.wait()
        if self.crash:
            raise RuntimeError("the engine went away")
        if self.no_result:
            return
        yield Event("built", "done\n", {"image": request.image.full})


async def collect(manager: BuildManager, job) -> list[Event]:
    return [event async for event in manager.follow(job)]


def phases(events: list[Event]) -> list[str]:
    return [e.phase for e in events]


EXPECTED = ["building"] * STEPS + ["built"]


async def wait_for_history(manager: BuildManager, job, count: int) -> None:
    """Return once the job has published ``count`` events."""
    stream = manager.follow(job)
    async with asyncio.timeout(5):
        for _ in range(count):
            await anext(stream)
    await stream.aclose()
    assert len(job.history) >= count


async def test_two_requests_for_one_image_share_one_build():
    gate = asyncio.Event()
    builder = FakeBuilder(gate=gate)
    manager = BuildManager(builder=builder)
    job1, joined1 = manager.attach(make_request("b1"))
    await wait_for_history(manager, job1, 1)  # the second request arrives while the build runs
    job2, joined2 = manager.attach(make_request("b2"))
    gate.set()
    assert (joined1, joined2) == (False, True)
    assert job2 is job1
    assert manager.running == 1

    first, second = await asyncio.gather(collect(manager, job1), collect(manager, job2))

    assert phases(first) == EXPECTED
    assert first == second  # the late follower got the history too
    assert [e.message for e in first[:STEPS]] == ["step 0\n", "step 1\n", "step 2\n"]
    assert builder.calls == ["b1"]
    await job1.task


async def test_follower_after_a_few_events_still_gets_complete_history():
    gate = asyncio.Event()
    manager = BuildManager(builder=FakeBuilder(gate=gate))
    job, _ = manager.attach(make_request())
    await wait_for_history(manager, job, 2)
    follower = asyncio.create_task(collect(manager, job))
    await asyncio.sleep(0)
    gate.set()
    assert phases(await follower) == EXPECTED
    await job.task


async def test_follow_after_the_build_finished_replays_history():
    manager = BuildManager(builder=FakeBuilder(delay=0))
    job, _ = manager.attach(make_request())
    await job.task
    assert job.result is not None and job.result.phase == "built"
    assert phases(await collect(manager, job)) == EXPECTED
    assert job.listeners == set()


async def test_finished_job_is_removed_and_on_finish_called():
    manager = BuildManager(builder=FakeBuilder())
    finished = []
    manager.on_finish.append(lambda job, outcome, seconds: finished.append((job, outcome, seconds)))
    request = make_request()
    job, _ = manager.attach(request)
    assert manager.jobs == {request.image.full: job}

    await job.task

    assert manager.jobs == {}
    assert manager.running == 0
    assert len(finished) == 1
    done_job, outcome, seconds = finished[0]
    assert done_job is job
    assert outcome == "built"
    assert 0 < seconds < 5


async def test_a_new_request_after_the_build_finished_starts_a_new_build():
    builder = FakeBuilder(delay=0)
    manager = BuildManager(builder=builder)
    job1, _ = manager.attach(make_request("b1"))
    await job1.task
    job2, joined = manager.attach(make_request("b2"))
    await job2.task
    assert joined is False
    assert job2 is not job1
    assert builder.calls == ["b1", "b2"]


async def test_different_images_build_separately():
    builder = FakeBuilder()
    manager = BuildManager(builder=builder)
    job1, joined1 = manager.attach(make_request("b1", tag="1" * 40))
    job2, joined2 = manager.attach(make_request("b2", tag="2" * 40))
    assert (joined1, joined2) == (False, False)
    assert manager.running == 2
    await asyncio.gather(job1.task, job2.task)
    assert sorted(builder.calls) == ["b1", "b2"]


async def test_crashing_builder_ends_the_stream_with_failed():
    manager = BuildManager(builder=FakeBuilder(crash=True))
    outcomes = []
    manager.on_finish.append(lambda job, outcome, seconds: outcomes.append(outcome))
    job, _ = manager.attach(make_request())

    events = await asyncio.wait_for(collect(manager, job), timeout=5)

    assert phases(events) == ["building"] * STEPS + ["failed"]
    assert "RuntimeError" in events[-1].message
    assert job.result is events[-1]
    await job.task  # the crash is reported as an event, not raised from the task
    assert outcomes == ["failed"]
    assert manager.jobs == {}


async def test_builder_ending_without_result_is_failed():
    manager = BuildManager(builder=FakeBuilder(no_result=True))
    job, _ = manager.attach(make_request())
    events = await asyncio.wait_for(collect(manager, job), timeout=5)
    assert phases(events) == ["building"] * STEPS + ["failed"]
    assert "without a result" in events[-1].message
    await job.task


async def test_follower_that_stops_early_is_unsubscribed():
    gate = asyncio.Event()
    manager = BuildManager(builder=FakeBuilder(gate=gate))
    job, _ = manager.attach(make_request())
    stream = manager.follow(job)
    first = await anext(stream)
    assert first.phase == "building"
    assert len(job.listeners) == 1
    await stream.aclose()
    assert job.listeners == set()
    gate.set()
    await job.task


@pytest.mark.parametrize("delay", [0, 0.002])
async def test_many_followers_all_end_with_built(delay):
    builder = FakeBuilder(delay=delay)
    manager = BuildManager(builder=builder)
    jobs = [manager.attach(make_request(f"b{i}"))[0] for i in range(5)]
    assert all(j is jobs[0] for j in jobs)
    results = await asyncio.gather(*(collect(manager, j) for j in jobs))
    assert all(phases(r) == EXPECTED for r in results)
    assert len(builder.calls) == 1
