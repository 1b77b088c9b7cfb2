"""The build queue (builder/manager.py, builder/queue.py): slots, positions, quota, stops."""

from __future__ import annotations

import asyncio

import pytest

from panbinder.builder.base import Builder, BuildRequest
from panbinder.builder.build_logs import render, write_log
from panbinder.builder.manager import BuildManager
from panbinder.builder.queue import SlotQueue
from panbinder.errors import PanbinderError
from panbinder.events import Event
from panbinder.registry_cache import ImageRef


def request(n: int, repo: str = "https://example.org/repo.git") -> BuildRequest:
    tag = f"{n:040x}"
    return BuildRequest(
        build_id=f"b{n}",
        provider="git",
        repo_url=repo,
        resolved_ref=tag,
        unresolved_ref="main",
        image=ImageRef(registry="127.0.0.1:5000", name=f"panbinder/v1-git-repo-{n}", tag=tag),
    )


class GatedBuilder(Builder):
    """Each build yields one line, then waits for its gate (or forever) before built."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.gates: dict[str, asyncio.Event] = {}
        self.started: list[str] = []
        self.cancelled: list[str] = []
        self.ended: list[str] = []

    def gate(self, build_id: str) -> asyncio.Event:
        return self.gates.setdefault(build_id, asyncio.Event())

    def cancel(self, request: BuildRequest) -> None:
        self.cancelled.append(request.build_id)

    async def build(self, request: BuildRequest):
        self.started.append(request.build_id)
        try:
            yield Event("building", f"{request.build_id} running\n")
            await self.gate(request.build_id).wait()
            yield Event("built", "done\n")
        finally:
            self.ended.append(request.build_id)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def waiting(events: list[Event]) -> list[str]:
    return [e.message for e in events if e.phase == "waiting"]


async def test_slot_queue_is_fifo_and_bounded():
    q = SlotQueue(2)
    futures = [q.enter(k) for k in "abcd"]
    assert [f.done() for f in futures] == [True, True, False, False]
    assert (q.position("c"), q.position("d"), q.position("a")) == (1, 2, None)
    q.leave("d")  # a waiting key leaves its place
    assert futures[3].cancelled()
    q.leave("a")
    assert futures[2].done() and q.running == {"b", "c"} and q.waiting == []


async def test_background_keys_wait_behind_every_other_key():
    q = SlotQueue(1)
    first = q.enter("reader-1")
    check = q.enter("check", background=True)
    later = q.enter("reader-2")  # arrives after the check's build, goes ahead of it
    assert first.done() and not check.done() and not later.done()
    assert q.waiting == ["reader-2", "check"] and q.foreground() == 2
    q.leave("reader-1")
    assert later.done() and not check.done()
    q.leave("reader-2")
    assert check.done() and q.foreground() == 0  # only the background key holds a slot
    q.leave("check")
    assert q.background == set()


async def test_a_background_build_yields_to_readers_builds():
    """A check's rebuild (background) waits for its slot behind readers' builds queued after it,
    and is not counted as a reader's build."""
    builder = GatedBuilder()
    manager = BuildManager(builder=builder, concurrent_builds=1)
    reader = manager.attach(request(0, repo="https://example.org/r0.git"))[0]
    check = manager.attach(request(1, repo="https://example.org/r1.git"), background=True)[0]
    late = manager.attach(request(2, repo="https://example.org/r2.git"))[0]
    await settle()
    assert (manager.readers_building, manager.running, manager.queued) == (2, 1, 2)
    for job in (reader, late):
        builder.gate(job.request.build_id).set()
        await job.task
    await settle()
    assert builder.started == ["b0", "b2", "b1"]
    assert manager.readers_building == 0 and manager.running == 1
    builder.gate("b1").set()
    await check.task
    assert check.result.phase == "built"


async def test_more_builds_than_slots_wait_with_positions_that_move():
    builder = GatedBuilder()
    manager = BuildManager(builder=builder, concurrent_builds=2)
    jobs = [manager.attach(request(i, repo=f"https://example.org/r{i}.git"))[0] for i in range(5)]
    await settle()
    assert builder.started == ["b0", "b1"]
    assert (manager.running, manager.queued) == (2, 3)
    assert waiting(jobs[2].history) == [
        "Waiting for a build slot: position 1 of 1\n",
        "Waiting for a build slot: position 1 of 2\n",
        "Waiting for a build slot: position 1 of 3\n",
    ]
    assert waiting(jobs[4].history)[-1] == "Waiting for a build slot: position 3 of 3\n"
    assert jobs[4].history[-1].extra == {"position": 3, "queue_length": 3}

    builder.gate("b0").set()
    await jobs[0].task
    await settle()
    assert builder.started == ["b0", "b1", "b2"]
    assert waiting(jobs[4].history)[-1] == "Waiting for a build slot: position 2 of 2\n"
    assert waiting(jobs[3].history)[-1] == "Waiting for a build slot: position 1 of 2\n"

    for i in range(1, 5):
        builder.gate(f"b{i}").set()
    await asyncio.gather(*(j.task for j in jobs))
    assert all(j.result.phase == "built" for j in jobs)
    assert (manager.running, manager.queued) == (0, 0)


async def test_the_concurrency_limit_is_never_exceeded():
    builder = GatedBuilder()
    manager = BuildManager(builder=builder, concurrent_builds=3)
    jobs = [manager.attach(request(i, repo=f"https://example.org/r{i}.git"))[0] for i in range(8)]
    peak = 0
    for i in range(8):
        await settle()
        running = len(builder.started) - len(builder.ended)
        peak = max(peak, running)
        builder.gate(f"b{i}").set()
        await jobs[i].task
    assert peak == 3
    assert builder.started == [f"b{i}" for i in range(8)]


async def test_per_repository_quota_refuses_beyond_the_limit():
    builder = GatedBuilder()
    manager = BuildManager(builder=builder, concurrent_builds=1, builds_per_repo=2)
    first, _ = manager.attach(request(1))
    manager.attach(request(2))  # waiting: counts too
    same, joined = manager.attach(request(1))  # the same image joins, no new build
    assert joined and same is first
    with pytest.raises(PanbinderError) as err:
        manager.attach(request(3))
    assert err.value.reason == "build_quota"
    assert err.value.status_code == 429
    assert "2 builds running or waiting" in err.value.message
    _, joined = manager.attach(request(4, repo="https://example.org/other.git"))
    assert not joined
    for i in (1, 2, 4):
        builder.gate(f"b{i}").set()
    await asyncio.gather(*(j.task for j in manager.jobs.copy().values()))
    manager.attach(request(3))  # room again


async def test_timeout_calls_the_cancel_hook_and_fails_clearly():
    builder = GatedBuilder()
    manager = BuildManager(builder=builder, build_timeout=0.2)
    outcomes = []
    manager.on_finish.append(lambda job, outcome, seconds: outcomes.append(outcome))
    job, _ = manager.attach(request(1))
    events = [e async for e in manager.follow(job)]
    assert builder.cancelled == ["b1"]
    assert builder.ended == ["b1"]  # the build iteration was stopped too
    last = events[-1]
    assert last.phase == "failed" and last.extra["reason"] == "build_timeout"
    assert "longer than this service's limit of 0.2 seconds" in last.message
    assert "(BuildManager.build_timeout)" in last.message  # the setting to raise
    assert manager.jobs == {} and manager.running == 0
    assert outcomes == ["timeout"]


async def test_timeout_starts_when_the_build_gets_its_slot():
    builder = GatedBuilder()
    manager = BuildManager(builder=builder, concurrent_builds=1, build_timeout=0.3)
    first, _ = manager.attach(request(1, repo="https://example.org/a.git"))
    second, _ = manager.attach(request(2, repo="https://example.org/b.git"))
    await asyncio.sleep(0.2)
    builder.gate("b1").set()
    await first.task
    builder.gate("b2").set()
    await second.task
    assert second.result.phase == "built"  # waited 0.2 s, ran briefly: within its 0.3 s


async def test_abandoned_build_is_cancelled_when_enabled():
    builder = GatedBuilder()
    manager = BuildManager(builder=builder, cancel_when_abandoned=True)
    job, _ = manager.attach(request(1))
    gone = asyncio.Event()
    stream = manager.follow(job, until=gone)
    assert (await anext(stream)).phase == "building"
    follower = asyncio.create_task(anext(stream, None))
    await settle()
    gone.set()
    assert await follower is None  # the follower stops without a final event
    await job.task
    assert builder.cancelled == ["b1"]
    assert job.result.extra["reason"] == "build_cancelled"
    assert manager.jobs == {}


async def test_abandoned_build_keeps_running_by_default():
    builder = GatedBuilder()
    manager = BuildManager(builder=builder)
    job, _ = manager.attach(request(1))
    gone = asyncio.Event()
    stream = manager.follow(job, until=gone)
    await anext(stream)
    gone.set()
    assert await anext(stream, None) is None
    await settle()
    assert builder.cancelled == [] and job.result is None
    builder.gate("b1").set()
    await job.task
    assert job.result.phase == "built"


async def test_build_is_kept_while_another_follower_remains():
    builder = GatedBuilder()
    manager = BuildManager(builder=builder, cancel_when_abandoned=True)
    job, _ = manager.attach(request(1))
    gone, stays = asyncio.Event(), asyncio.Event()
    leaving, staying = manager.follow(job, until=gone), manager.follow(job, until=stays)
    await anext(leaving)
    await anext(staying)
    gone.set()
    assert await anext(leaving, None) is None
    assert builder.cancelled == []
    builder.gate("b1").set()
    assert (await anext(staying)).phase == "built"


async def test_abandoned_waiting_build_leaves_the_queue_and_a_new_request_starts_afresh():
    builder = GatedBuilder()
    manager = BuildManager(builder=builder, concurrent_builds=1, cancel_when_abandoned=True)
    running, _ = manager.attach(request(1, repo="https://example.org/a.git"))
    queued, _ = manager.attach(request(2, repo="https://example.org/b.git"))
    gone = asyncio.Event()
    stream = manager.follow(queued, until=gone)
    assert (await anext(stream)).phase == "waiting"
    gone.set()
    assert await anext(stream, None) is None
    await queued.task
    assert queued.result.extra["reason"] == "build_cancelled"
    assert builder.started == ["b1"] and manager.queued == 0
    again, joined = manager.attach(request(2, repo="https://example.org/b.git"))
    assert not joined and again is not queued
    builder.gate("b1").set()
    builder.gate("b2").set()
    await asyncio.gather(running.task, again.task)
    assert again.result.phase == "built"


async def test_failed_build_keeps_its_log_named_in_the_event(tmp_path):
    class Failing(Builder):
        async def build(self, request):
            yield Event("building", "compiling\n")
            yield Event("failed", "it broke")

    manager = BuildManager(builder=Failing(), log_dir=str(tmp_path))
    job, _ = manager.attach(request(1))
    await job.task
    name = job.result.extra["build_log"]
    assert (tmp_path / name).read_text() == "[building] compiling\n[failed] it broke\n"


def test_long_logs_keep_start_and_end():
    events = [Event("building", f"line {i:05d}\n") for i in range(2000)]
    text = render(events, 1000).decode()
    assert text.startswith("[building] line 00000")
    assert text.rstrip().endswith("line 01999")
    assert "bytes of this log were left out" in text
    assert len(text) < 1100


def test_only_the_newest_logs_are_kept(tmp_path):
    import os

    for i in range(5):
        write_log(tmp_path, f"img{i}@t.log", [Event("building", "x")], max_bytes=0, keep=3)
        os.utime(tmp_path / f"img{i}@t.log", (1000 + i, 1000 + i))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img2@t.log", "img3@t.log", "img4@t.log"]


def test_cancel_token_stops_registered_and_checkout_processes(tmp_path):
    import subprocess
    import threading

    from panbinder.builder import cancel
    from panbinder.builder.engine import run_streaming

    token = cancel.CancelToken(workdir=str(tmp_path))
    git_like = subprocess.Popen(["sleep", "300"], cwd=tmp_path)  # as repo2docker's git runs
    outcome: list[BaseException] = []
    lines: list[str] = []

    def build_thread() -> None:
        with cancel.bound(token):
            try:
                for line in run_streaming(["sh", "-c", "echo started; sleep 300"]):
                    lines.append(line)
            except BaseException as e:
                outcome.append(e)

    thread = threading.Thread(target=build_thread)
    thread.start()
    for _ in range(100):
        if lines:
            break
        threading.Event().wait(0.02)
    token.cancel()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert isinstance(outcome[0], cancel.BuildCancelled)
    assert git_like.wait(timeout=10) == -15
    assert cancel.current() is None
