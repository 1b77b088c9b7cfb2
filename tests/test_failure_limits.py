"""Failed builds that ran out of memory, time or disk name the limit and the setting to change,
in a short message without a traceback, with the log's last lines kept apart."""

from __future__ import annotations

import pytest

from panbinder.builder.failure_causes import MAX_MESSAGE, FailedBuild, explain
from panbinder.builder.limits import LimitReport, StepLimits, limit_failure_message
from panbinder.builder.manager import BuildManager
from panbinder.builder.r2d import disk_space, failure_message
from tests.test_build_queue import GatedBuilder, request

POSTBUILD_FAILED = "#21 ERROR: executor failed running [/bin/sh -c ./postBuild]: exit code: 137"
PIP_FAILED = (
    "#14 ERROR: executor failed running [/bin/sh -c PIP_CACHE_DIR=/tmp/pip-cache /srv/venv/bin/pip "
    "install --no-warn-script-location -r requirements.txt]: exit code: 1"
)


def short(message: str) -> str:
    assert len(message) < MAX_MESSAGE and "Traceback" not in message and "executor failed" not in message
    return message


def test_a_step_the_kernel_killed_is_out_of_memory_naming_the_setting():
    build = FailedBuild(["#21 4.2 allocating", "#21 9.7 Killed", POSTBUILD_FAILED], error=POSTBUILD_FAILED)
    message = short(explain(build))
    assert message.startswith("postBuild ran out of memory (killed, exit code 137)")
    assert "BuildManager.build_memory_limit" in message


def test_a_memory_error_during_the_requirements_is_out_of_memory():
    lines = [
        "#14 30.1 Traceback (most recent call last):",
        '#14 30.1   File "/srv/venv/lib/python3.11/site-packages/pip/_internal/x.py", line 3, in f',
        "#14 30.2 MemoryError",
        PIP_FAILED,
    ]
    message = short(explain(FailedBuild(lines, error=PIP_FAILED)))
    assert message.startswith("Installing the requirements ran out of memory (MemoryError)")


def test_node_running_out_of_heap_says_how_to_raise_it():
    lines = [
        "#21 60.1 FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory",
        POSTBUILD_FAILED.replace("137", "134"),
    ]
    message = short(explain(FailedBuild(lines)))
    assert "Node.js ran out of memory" in message and "NODE_OPTIONS=--max-old-space-size" in message


@pytest.mark.parametrize(
    "line",
    [
        "#14 3.1 ERROR: Could not install packages due to an OSError: [Errno 28] No space left on device",
        "#21 2.0 npm ERR! code ENOSPC",
        "#9 ERROR: failed to copy files: write /var/lib/docker/x: no space left on device",
    ],
)
def test_a_full_disk_names_the_build_engines_disk_and_its_free_space(line):
    disk = "0.1 GB free of 50 GB"
    message = short(failure_message([line, PIP_FAILED], PIP_FAILED, disk=disk))
    assert message.startswith("The build ran out of disk space")
    assert f"BuildEngine.data_root: {disk}" in message
    # a full disk explains the other errors it caused (here a missing distribution)
    other = "#14 3.0 ERROR: No matching distribution found for numpy"
    assert failure_message([other, line], "").startswith("The build ran out of disk space")


def test_disk_space_reads_the_file_system(tmp_path):
    text = disk_space(str(tmp_path))
    assert " free of " in text and str(tmp_path) not in text  # the text reaches readers: no server path
    assert disk_space(str(tmp_path / "missing")) == ""


def test_a_memory_error_at_the_step_limit_names_the_limit():
    report = LimitReport(StepLimits(memory=256 * 1024**2), steps=3, hit_memory_limit=True)
    message = limit_failure_message(report, ["#21 9.0 MemoryError", POSTBUILD_FAILED.replace("137", "1")])
    assert "limit 256 MB per build step, BuildManager.build_memory_limit" in message
    assert limit_failure_message(report, ["#21 9.0 some other error"]) == ""


async def test_the_timeout_keeps_the_log_tail_apart_from_its_message():
    manager = BuildManager(builder=GatedBuilder(), build_timeout=0.2)
    job, _ = manager.attach(request(1))
    events = [e async for e in manager.follow(job)]
    last = events[-1]
    assert last.extra["reason"] == "build_timeout" and "(BuildManager.build_timeout)" in short(last.message)
    assert last.extra["log_tail"] == ["b1 running"]
