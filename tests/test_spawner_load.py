"""The Hub-side spawner with many servers starting at once: docker calls side by side, and
readiness checks that slow down with the number starting (the Hub answers all in one process)."""

from __future__ import annotations

import threading
import time

from panbinder.launcher.spawner import PanbinderSpawner, poll_interval


def test_readiness_checks_slow_down_with_servers_starting_at_once():
    assert poll_interval(0.05, 1) == 0.05  # one launch alone keeps its fast start
    assert poll_interval(0.05, 20) == 0.25
    assert poll_interval(0.05, 1000) == 1.0


def test_docker_calls_of_servers_starting_at_once_run_side_by_side():
    """DockerSpawner sends every docker call of every server through one thread: 20 starts at
    once queued behind each other's calls."""
    spawner = PanbinderSpawner(docker_threads=4)
    running, peak = 0, 0
    lock = threading.Lock()

    def call() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.1)
        with lock:
            running -= 1

    start = time.monotonic()
    for f in [spawner.executor.submit(call) for _ in range(8)]:
        f.result()
    assert peak == 4 and time.monotonic() - start < 0.5
