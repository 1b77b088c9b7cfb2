"""Build limits (builder/limits.py): sizes, cgroup file values, finding a build's steps, messages."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from traitlets import TraitError

from panbinder.builder import limits
from panbinder.builder.base import Builder
from panbinder.builder.limits import (
    CgroupLayout,
    LimitReport,
    StepLimiter,
    StepLimits,
    limit_failure_message,
    parse_mountinfo,
)
from panbinder.builder.manager import BuildManager
from panbinder.events import Event

from .test_build_manager import make_request

MiB = 1024**2


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0),
        (None, 0),
        (4096, 4096),
        ("512M", 512 * MiB),
        ("2G", 2 * 1024 * MiB),
        ("1.5G", 1536 * MiB),
        ("64K", 64 * 1024),
    ],
)
def test_memory_limit_is_a_byte_specification(value, expected):
    assert BuildManager(build_memory_limit=value).step_limits().memory == expected


@pytest.mark.parametrize("text", ["lots", "2X", "1.2.3G", "G"])
def test_memory_limit_refuses_what_is_not_a_size(text):
    with pytest.raises(TraitError, match="not a valid memory specification"):
        BuildManager(build_memory_limit=text)


def test_format_size():
    assert limits.format_size(256 * MiB) == "256 MB"
    assert limits.format_size(1536 * MiB) == "1.5 GB"
    assert limits.format_size(100) == "100 bytes"


def test_v1_files_in_the_order_the_kernel_accepts():
    files = limits.v1_files(StepLimits(memory=256 * MiB, cpu=1.5, pids=300), memsw=True)
    assert files == [
        ("memory", "memory.limit_in_bytes", "268435456"),
        ("memory", "memory.memsw.limit_in_bytes", "268435456"),  # after the memory limit
        ("cpu", "cpu.cfs_period_us", "100000"),
        ("cpu", "cpu.cfs_quota_us", "150000"),
        ("pids", "pids.max", "300"),
    ]


def test_v1_files_without_swap_accounting_or_unset_limits():
    assert limits.v1_files(StepLimits(memory=MiB), memsw=False) == [
        ("memory", "memory.limit_in_bytes", "1048576")
    ]
    assert limits.v1_files(StepLimits(), memsw=True) == []
    assert StepLimits().empty and not StepLimits(pids=1).empty


def test_v2_files():
    assert limits.v2_files(StepLimits(memory=2 * 1024 * MiB, cpu=0.25, pids=64)) == [
        ("memory.max", "2147483648"),
        ("memory.swap.max", "0"),
        ("cpu.max", "25000 100000"),
        ("pids.max", "64"),
    ]


def test_cpu_quota_has_the_kernel_minimum():
    assert limits.cpu_quota_us(0.001) == 1000
    assert limits.cpu_quota_us(2) == 200000


HYBRID = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
UNIFIED = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"


def test_mountinfo_v1_and_hybrid_hosts_use_the_v1_hierarchies():
    layout = parse_mountinfo(HYBRID)
    assert layout.v1 == {
        "cpu": "/sys/fs/cgroup/cpu,cpuacct",
        "memory": "/sys/fs/cgroup/memory",
        "pids": "/sys/fs/cgroup/pids",
    }
    assert layout.dirs("/docker/buildkit/abc") == {
        "cpu": Path("/sys/fs/cgroup/cpu,cpuacct/docker/buildkit/abc"),
        "memory": Path("/sys/fs/cgroup/memory/docker/buildkit/abc"),
        "pids": Path("/sys/fs/cgroup/pids/docker/buildkit/abc"),
    }


def test_mountinfo_unified_host():
    layout = parse_mountinfo(UNIFIED, lambda root: "cpuset cpu io memory pids")
    assert layout == CgroupLayout(v2="/sys/fs/cgroup")
    assert layout.dirs("/docker/buildkit/abc") == {"unified": Path("/sys/fs/cgroup/docker/buildkit/abc")}


def test_mountinfo_without_a_memory_controller_is_not_usable():
    assert not parse_mountinfo(UNIFIED, lambda root: "cpu pids").usable
    assert not parse_mountinfo("").usable


def test_oom_kill_counters():
    assert limits.oom_kills("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n") == 3  # v1 oom_control
    assert limits.oom_kills("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n") == 1
    assert limits.oom_kills("") == 0


def test_marker_is_found_in_a_step_environment():
    mark = limits.marker("A1/b2")
    assert mark == "panbinder-build-a1-b2.invalid"
    config = {"process": {"env": ["PATH=/bin", f"no_proxy=example.org,{mark}", f"NO_PROXY={mark}"]}}
    assert limits.step_marker(config) == mark
    assert limits.step_marker({"process": {"env": ["no_proxy=example.org"]}}) == ""
    assert limits.step_marker({}) == ""


def fake_host(tmp_path: Path) -> tuple[Path, CgroupLayout]:
    """An executor folder and v1 hierarchies made of plain folders."""
    executor = tmp_path / "executor"
    executor.mkdir()
    mounts = {c: tmp_path / "cg" / c for c in ("memory", "cpu", "pids")}
    for folder in mounts.values():
        (folder / "docker" / "buildkit").mkdir(parents=True)
    (mounts["memory"] / "docker" / "buildkit" / "memory.memsw.limit_in_bytes").write_text("max\n")
    return executor, CgroupLayout(v1={c: str(p) for c, p in mounts.items()})


def add_bundle(executor: Path, name: str, env: list[str]) -> Path:
    bundle = executor / name
    bundle.mkdir()
    config = {"process": {"env": env}, "linux": {"cgroupsPath": f"/docker/buildkit/{name}"}}
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle


def wait_until(check, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_limiter_limits_only_the_marked_steps_and_counts_oom_kills(tmp_path, monkeypatch):
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    executor, layout = fake_host(tmp_path)
    limiter = StepLimiter(str(executor), layout=layout, interval=0.005)
    report = limiter.register("img:tag", "b1", StepLimits(memory=256 * MiB, cpu=1.5, pids=300))
    assert limits.build_args_for("img:tag") == {"no_proxy": "panbinder-build-b1.invalid"}
    assert limits.build_args_for("other:tag") == {}
    add_bundle(executor, "other", ["no_proxy=panbinder-build-b2.invalid"])
    bundle = add_bundle(executor, "mine", ["PATH=/bin", "no_proxy=panbinder-build-b1.invalid"])
    memory = tmp_path / "cg/memory/docker/buildkit/mine"
    wait_until(lambda: (memory / "memory.memsw.limit_in_bytes").exists())
    assert (memory / "memory.limit_in_bytes").read_text() == "268435456"
    assert (tmp_path / "cg/cpu/docker/buildkit/mine/cpu.cfs_quota_us").read_text() == "150000"
    assert (tmp_path / "cg/pids/docker/buildkit/mine/pids.max").read_text() == "300"
    assert not (tmp_path / "cg/memory/docker/buildkit/other").exists()  # not ours: untouched
    (memory / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
    wait_until(lambda: report.oom_kills == 1)
    (bundle / "config.json").unlink()
    bundle.rmdir()  # the step is over
    assert limiter.unregister("img:tag", "b1") is report
    assert report.steps == 1 and report.problems == []
    assert limits.build_args_for("img:tag") == {}
    wait_until(lambda: limiter._thread is None)  # nothing left to watch: the thread ends


def test_limiter_reports_what_it_cannot_do(tmp_path):
    limiter = StepLimiter(str(tmp_path / "missing"), layout=CgroupLayout(v1={"memory": str(tmp_path)}))
    report = limiter.register("img:tag", "b3", StepLimits(memory=MiB))
    wait_until(lambda: report.problems)
    assert report.problems[0].startswith("not enforced: cannot read BuildKit's executor folder")
    limiter.unregister("img:tag", "b3")


def test_out_of_memory_message_names_the_limit_and_the_setting():
    report = LimitReport(StepLimits(memory=512 * MiB), steps=2, oom_kills=1)
    msg = limit_failure_message(report, [])
    assert msg.startswith("The build ran out of memory (limit 512 MB per build step, ")
    assert "BuildManager.build_memory_limit" in msg
    assert "postBuild" in msg and "ask the operators to raise the limit" in msg
    assert "Traceback" not in msg


def test_a_killed_step_at_the_memory_limit_counts_as_out_of_memory():
    report = LimitReport(StepLimits(memory=MiB), hit_memory_limit=True)
    tail = ["#9 0.529 Killed", "ERROR: executor failed running [/bin/sh -c ./postBuild]: exit code: 137"]
    assert "ran out of memory" in limit_failure_message(report, tail)
    assert limit_failure_message(report, ["exit code: 1"]) == ""  # a page cache at the limit is normal


def test_no_message_for_failures_the_limits_did_not_cause():
    assert limit_failure_message(LimitReport(StepLimits(memory=MiB, pids=10)), ["exit code: 137"]) == ""
    assert limit_failure_message(LimitReport(StepLimits(), oom_kills=1), []) == ""  # not ours


def test_pids_message():
    msg = limit_failure_message(LimitReport(StepLimits(pids=100), hit_pids_limit=True), [])
    assert "limit 100 per build step, BuildManager.build_pids_limit" in msg


def test_manager_settings():
    manager = BuildManager(build_memory_limit="512M", build_cpu_limit=1.5, build_pids_limit=0)
    assert manager.step_limits() == StepLimits(memory=512 * MiB, cpu=1.5, pids=0)
    assert BuildManager().step_limits().memory == 4 * 1024 * MiB
    assert BuildManager().build_cpu_limit >= 1
    with pytest.raises(TraitError):
        BuildManager(build_memory_limit="a lot")
    assert BuildManager(build_memory_limit=0, build_cpu_limit=0, build_pids_limit=0).step_limits().empty
    for name in ("build_memory_limit", "build_cpu_limit", "build_pids_limit", "buildkit_executor_dir"):
        trait = BuildManager.class_traits()[name]
        assert trait.metadata.get("config") and len(trait.help) > 80


class OutOfMemoryBuilder(Builder):
    async def build(self, request):
        yield Event("building", "#9 0.5 Killed\n")
        yield Event("failed", "The build failed: exit code: 137.", {"log_tail": ["#9 0.5 Killed"]})


class FakeLimiter:
    def __init__(self, report: LimitReport) -> None:
        self.report = report
        self.registered: list[tuple[str, str]] = []

    def register(self, tag: str, build_id: str, step_limits: StepLimits) -> LimitReport:
        self.registered.append((tag, build_id))
        return self.report

    def unregister(self, tag: str, build_id: str) -> LimitReport:
        self.registered.remove((tag, build_id))
        return self.report


async def follow_to_end(manager: BuildManager) -> Event:
    job, _ = manager.attach(make_request())
    return [event async for event in manager.follow(job)][-1]


async def test_manager_explains_a_build_killed_for_memory():
    manager = BuildManager(builder=OutOfMemoryBuilder(), build_memory_limit="256M")
    manager._limiter = FakeLimiter(LimitReport(manager.step_limits(), steps=1, oom_kills=1))
    last = await follow_to_end(manager)
    assert last.phase == "failed"
    assert last.extra["reason"] == "build_limit"
    assert "ran out of memory (limit 256 MB per build step" in last.message
    assert last.extra["log_tail"] == ["#9 0.5 Killed"]
    assert manager._limiter.registered == []


async def test_manager_keeps_other_failures_and_skips_limits_when_disabled():
    manager = BuildManager(builder=OutOfMemoryBuilder(), build_memory_limit="256M")
    manager._limiter = FakeLimiter(LimitReport(manager.step_limits()))
    assert (await follow_to_end(manager)).message == "The build failed: exit code: 137."
    off = BuildManager(builder=OutOfMemoryBuilder(), build_memory_limit=0, build_cpu_limit=0)
    off.build_pids_limit = 0
    off._limiter = FakeLimiter(LimitReport(StepLimits(), oom_kills=1))
    assert (await follow_to_end(off)).message == "The build failed: exit code: 137."


def test_the_marker_joins_the_no_proxy_list_a_deployment_has(tmp_path, monkeypatch):
    limiter = StepLimiter(str(tmp_path), layout=fake_host(tmp_path)[1], interval=0.005)
    limiter.register("img:proxied", "b9", StepLimits(memory=256 * MiB))
    try:
        monkeypatch.setenv("no_proxy", "localhost,.facility.example")
        mark = "panbinder-build-b9.invalid"
        assert limits.build_args_for("img:proxied") == {"no_proxy": f"localhost,.facility.example,{mark}"}
        given = {"no_proxy": "index.facility.example"}
        assert limits.build_args_for("img:proxied", given) == {"no_proxy": f"index.facility.example,{mark}"}
        assert limits.step_marker({"process": {"env": [f"no_proxy=index.facility.example,{mark}"]}}) == mark
    finally:
        limiter.unregister("img:proxied", "b9")
