"""Build limits for real: the RUN steps of a build run under BuildManager's memory, CPU and
process limits on this host's docker engine, and a build that needs more memory fails with a
message that says so."""

from __future__ import annotations

import secrets
import subprocess

import pytest

from tests.support import Portal, read_stream, session_prefix

pytestmark = [pytest.mark.docker, pytest.mark.slow]
PREFIX = session_prefix("panbinder-bl")
MEMORY = 256 * 1024**2
CPU_QUOTA = 150_000  # 1.5 CPUs per 100 ms period
PIDS = 300

# What a RUN step sees of its own cgroup, on a v1 or a v2 host.
SHOW_LIMITS = """#!/bin/sh
for f in /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us \\
         /sys/fs/cgroup/cpu/cpu.cfs_period_us /sys/fs/cgroup/pids/pids.max \\
         /sys/fs/cgroup/memory.max /sys/fs/cgroup/cpu.max /sys/fs/cgroup/pids.max; do
    if [ -e "$f" ]; then echo "$f $(cat "$f")"; fi
done > "$HOME/limits.txt"
cat "$HOME/limits.txt"
"""
ALLOCATE = """#!/bin/sh
echo "allocating 600 MB"
python3 -c "b = bytearray(b'x' * (600 * 1024 * 1024)); print('allocated', len(b))"
"""


@pytest.fixture(scope="module")
def service(portal_factory):
    config = f"""
        c.GitProvider.allow_local = True
        c.ServeApp.start_hub = False
        c.BuildManager.build_memory_limit = "256M"
        c.BuildManager.build_cpu_limit = {CPU_QUOTA / 100_000}
        c.BuildManager.build_pids_limit = {PIDS}
        """
    with portal_factory("bl", config, prefix=PREFIX) as p:
        yield p


def build_url(service: Portal, git_server, name: str) -> str:
    return service.build_url(git_server.url(name), "main") + "?build_only=true"


def read_in_image(image: str, path: str) -> str:
    name = f"{PREFIX}-{secrets.token_hex(3)}"
    out = subprocess.run(
        ["docker", "run", "--rm", "--network=none", "--name", name, "--entrypoint", "cat", image, path],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


async def test_a_build_step_that_needs_more_memory_than_the_limit_fails_with_a_clear_message(
    service, git_server
):
    name = f"hungry-{secrets.token_hex(4)}"
    git_server.commit(name, {"postBuild": ALLOCATE})
    s = await read_stream(build_url(service, git_server, name), timeout=600)
    last = s.last
    assert last["phase"] == "failed", s.log()
    assert "allocating 600 MB" in s.log()  # the step ran, and was stopped in it
    assert "allocated" not in s.log()
    assert last["reason"] == "build_limit"
    assert last["message"].startswith(
        "The build ran out of memory (limit 256 MB per build step, BuildManager.build_memory_limit)"
    )
    assert "Traceback" not in last["message"]
    assert "build limits:" not in service.logs()  # no step was left unlimited


async def test_build_steps_see_the_configured_limits(service, git_server):
    name = f"limits-{secrets.token_hex(4)}"
    git_server.commit(name, {"postBuild": SHOW_LIMITS})
    s = await read_stream(build_url(service, git_server, name), timeout=600)
    assert s.last["phase"] == "ready", s.log()
    seen = dict(
        line.split(" ", 1)
        for line in read_in_image(s.last["imageName"], "/home/jovyan/limits.txt").splitlines()
    )
    if "/sys/fs/cgroup/memory/memory.limit_in_bytes" in seen:  # cgroup v1
        assert seen["/sys/fs/cgroup/memory/memory.limit_in_bytes"] == str(MEMORY)
        assert seen["/sys/fs/cgroup/cpu/cpu.cfs_quota_us"] == str(CPU_QUOTA)
        assert seen["/sys/fs/cgroup/cpu/cpu.cfs_period_us"] == "100000"
        assert seen["/sys/fs/cgroup/pids/pids.max"] == str(PIDS)
    else:
        assert seen["/sys/fs/cgroup/memory.max"] == str(MEMORY)
        assert seen["/sys/fs/cgroup/cpu.max"] == f"{CPU_QUOTA} 100000"
        assert seen["/sys/fs/cgroup/pids.max"] == str(PIDS)
    assert "build limits:" not in service.logs()
