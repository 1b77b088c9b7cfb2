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


async def test_anonymous_servers_append_the_changes_config_and_set_no_pythonpath(tmp_path, monkeypatch):
    from dockerspawner import DockerSpawner
    from traitlets.config import Config

    config = Config({"Workspaces": {"root": str(tmp_path)}})
    spawner = PanbinderSpawner(config=config)
    image_env = ["PATH=/usr/bin", "JUPYTER_CONFIG_PATH=/srv/conda/etc/jupyter"]
    inspected: list[str] = []

    async def docker(method, *args, **kwargs):
        inspected.append(args[0])
        return {"Config": {"Env": image_env}}

    async def create_object(self):
        return dict(self.environment)

    monkeypatch.setattr(spawner, "docker", docker)
    monkeypatch.setattr(DockerSpawner, "create_object", create_object)
    spawner.environment = {"PYTHONPATH": "/signed/lib"}  # from the signed launch options
    await spawner.offer_changes()
    env = await spawner.create_object()
    assert env["PYTHONPATH"] == "/signed/lib"  # left as it was
    assert env["JUPYTER_CONFIG_PATH"] == "/srv/conda/etc/jupyter:/opt/panbinder/config"
    assert inspected == [spawner.image]  # the image the container is made of

    spawner.environment = {"JUPYTER_CONFIG_PATH": "/signed/jupyter"}  # the signed one wins over the image's
    env = await spawner.create_object()
    assert env["JUPYTER_CONFIG_PATH"] == "/signed/jupyter:/opt/panbinder/config" and "PYTHONPATH" not in env

    image_env.clear()  # an image without one: ours alone
    spawner.environment = {}
    assert (await spawner.create_object())["JUPYTER_CONFIG_PATH"] == "/opt/panbinder/config"


def test_the_server_config_puts_the_changes_module_on_the_servers_path(tmp_path, monkeypatch):
    import sys

    from panbinder.launcher.server_changes import server_files

    server_files(tmp_path / "opt")
    config = tmp_path / "opt" / "config" / "jupyter_server_config.py"
    monkeypatch.setattr(sys, "path", list(sys.path))
    exec(compile(config.read_text(), str(config), "exec"), {"__file__": str(config), "c": None})
    assert sys.path[-1] == str(tmp_path / "opt")
    assert (tmp_path / "opt" / "panbinder_changes.py").exists()
