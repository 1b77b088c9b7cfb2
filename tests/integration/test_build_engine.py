"""The build engine for real: builds run in a dockerd of their own, never in the engine that runs
readers' servers, and a build engine killed mid-build stops only its builds.

The kill, restart and full-disk tests use a build engine of their own (own state folder, bridge
and subnet, data root on a small tmpfs), started and stopped by the project's own functions, so
that killing it never touches the builds of other portals on this machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import time

import pytest

from panbinder.builder.build_engine import BuildEngine
from panbinder.builder.buildpacks.settings import BASE_IMAGE
from panbinder.builder.r2d import ENGINE_STOPPED
from panbinder.launcher.hub_process import docker_bridge_gateway
from panbinder.serve import ServeApp
from panbinder.web.handlers.health import DOWN_MESSAGES
from tests.support import (
    Portal,
    machine_build_engine,
    portal_health,
    processes_running,
    read_stream,
    run_code,
    session_prefix,
    wait_status,
)

from .conftest import PREFIX as IT_PREFIX

pytestmark = [pytest.mark.docker, pytest.mark.hub, pytest.mark.slow]

PREFIX = session_prefix("panbinder-be")
RUN_ENGINE = ["/usr/bin/docker"]
CHECK = "import tabulate; print(2 * int(open('data/values.txt').read()), tabulate.__version__)"


def run(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


def dockerfile_repo(git_server, name: str, steps: str) -> str:
    """A repository built from its Dockerfile on the base image (a build of a few seconds)."""
    git_server.commit(name, {"Dockerfile": f"FROM {BASE_IMAGE}\n{steps}\n"}, "dockerfile")
    return git_server.url(name)


def built_image(stream) -> str:
    """The image a build-only stream ended with (it ends 'ready' with imageName, as BinderHub's)."""
    assert stream.last.get("phase") in ("built", "ready") and stream.last.get("imageName"), stream.log()
    return stream.last["imageName"]


async def health_of(portal: Portal, service: str) -> dict:
    _, body = await portal_health(portal)
    return next(c for c in body["checks"] if c["service"] == service)


async def test_a_build_runs_in_the_build_engine_and_the_run_engine_pulls_it_at_launch(
    portal, git_server, fresh_repo
):
    engine = machine_build_engine()
    url = git_server.url(fresh_repo)
    built = await read_stream(portal.build_url(url, "main", "build_only=true"))
    assert built.last["phase"] == "ready", built.log()
    image = built.last["imageName"]
    # the build's layers and history are in the build engine only
    history = run(engine.command("history", "--no-trunc", "--format", "{{.CreatedBy}}", image))
    assert history.returncode == 0, history.stderr
    assert "requirements.txt" in history.stdout, history.stdout[-2000:]
    assert run([*RUN_ENGINE, "image", "inspect", image]).returncode != 0, "the run engine has the image"
    start = time.monotonic()
    ready = await read_stream(portal.build_url(url, "main"))
    assert ready.last["phase"] == "ready", ready.log()
    await wait_status(ready.last["url"] + "api/status", ready.last["token"])
    print(f"\nlaunch of a cached image, first pull by the run engine: {time.monotonic() - start:.2f} s")
    # the run engine got it from the registry: pulled under its registry digest
    info = json.loads(run([*RUN_ENGINE, "image", "inspect", "--format", "{{json .}}", image]).stdout)
    name = image.rsplit(":", 1)[0]
    assert any(d.startswith(name + "@sha256:") for d in info["RepoDigests"]), info["RepoDigests"]
    assert (await run_code(ready.last["url"], ready.last["token"], CHECK)).split() == ["42", "0.9.0"]


@pytest.fixture(scope="module")
def own_engine(tmp_path_factory):
    """A build engine of this module's own, its data root on a 1 GiB tmpfs."""
    folder = tmp_path_factory.mktemp("be")
    data = folder / "data"
    data.mkdir()
    mounted = run(["mount", "-t", "tmpfs", "-o", "size=1g", "tmpfs", str(data)])
    assert mounted.returncode == 0, mounted.stderr
    subnet = 20 + os.getpid() % 200
    engine = BuildEngine(
        state_dir=str(folder),
        data_root=str(data),
        bridge=f"pbt{os.getpid() % 1_000_000}",
        bridge_address=f"172.30.{subnet}.1/24",
    )
    try:
        engine.start()
        yield engine
    finally:
        engine.stop()
        run(["umount", "-l", str(data)])
    # stopped with its bridge and every iptables rule dockerd or the engine made for it
    assert run(["ip", "link", "show", engine.bridge]).returncode != 0
    rules = run(["iptables-save"]).stdout
    assert engine.bridge not in rules and engine.subnet not in rules, rules


@pytest.fixture(scope="module")
def own_portal(portal_factory, own_engine):
    """A portal (no Hub, so no containers: builds only) whose builds run in ``own_engine``."""
    config = f"""
        c.GitProvider.allow_local = True
        c.ServeApp.start_hub = False
        c.BuildEngine.state_dir = {own_engine.state_dir!r}
        c.BuildEngine.data_root = {own_engine.data_root!r}
        c.BuildEngine.bridge = {own_engine.bridge!r}
        c.BuildEngine.bridge_address = {own_engine.bridge_address!r}
        """
    with portal_factory("be", config, prefix=PREFIX) as p:
        yield p


async def test_killing_the_build_engine_mid_build_fails_the_build_and_spares_running_servers(
    portal, git_server, analysis_repo, own_engine, own_portal
):
    launched = await read_stream(portal.build_url(git_server.url(analysis_repo), "main"))
    assert launched.last["phase"] == "ready", launched.log()
    server, token = launched.last["url"], launched.last["token"]
    seconds = 300 + secrets.randbelow(600)  # names this build's step among all processes
    slow = dockerfile_repo(git_server, f"slow-{secrets.token_hex(4)}", f"RUN echo started && sleep {seconds}")
    build = asyncio.ensure_future(read_stream(own_portal.build_url(slow, "main", "build_only=true")))
    deadline = time.monotonic() + 120
    while not processes_running(f"sleep {seconds}"):
        assert time.monotonic() < deadline and not build.done(), "the slow step did not start"
        await asyncio.sleep(0.2)
    os.kill(int(own_engine.pidfile.read_text()), signal.SIGKILL)
    stream = await asyncio.wait_for(build, 120)
    assert stream.last["phase"] == "failed", stream.log()
    assert stream.last["message"] == ENGINE_STOPPED
    assert "The build engine stopped" in stream.last["message"]
    # the reader's server never noticed
    assert (await run_code(server, token, CHECK)).split() == ["42", "0.9.0"]
    down = await health_of(own_portal, "build-engine")
    assert down == {"service": "build-engine", "ok": False, "message": DOWN_MESSAGES["build-engine"]}
    # the project's own command starts it again (same settings), and the next build works
    started = own_portal.command("build-engine", "start")
    assert started.returncode == 0, started.stdout + started.stderr
    assert own_engine.ping()
    assert processes_running(f"sleep {seconds}") == [], "the killed build's step still runs"
    deadline = time.monotonic() + ServeApp.health_cache.default_value + 5
    while not (await health_of(own_portal, "build-engine"))["ok"]:  # /health caches each check
        assert time.monotonic() < deadline, "/health still says the build engine is down"
        await asyncio.sleep(1)
    quick = dockerfile_repo(git_server, f"quick-{secrets.token_hex(4)}", "RUN echo quick > /quick")
    again = await read_stream(own_portal.build_url(quick, "main", "build_only=true"))
    assert again.last["phase"] == "ready", again.log()
    assert (await run_code(server, token, CHECK)).split() == ["42", "0.9.0"]


async def test_a_build_that_fills_its_disk_fails_saying_so(own_engine, own_portal, git_server):
    steps = "RUN dd if=/dev/zero of=/filler bs=1M count=2048"
    repo = dockerfile_repo(git_server, f"full-{secrets.token_hex(4)}", steps)
    stream = await read_stream(own_portal.build_url(repo, "main", "build_only=true"))
    assert stream.last["phase"] == "failed", stream.log()
    message = stream.last["message"]
    assert message.startswith("The build ran out of disk space (no space left on device)"), message
    assert "BuildEngine.data_root" in message
    assert own_engine.ping()  # a full disk fails the build, not the engine


PROBE = """import socket, sys
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=3)
        print("probe-reached", target)
    except OSError as e:
        print("probe-blocked", target, e)
"""


async def test_build_steps_reach_neither_readers_servers_nor_the_hub(
    portal, git_server, analysis_repo, own_portal
):
    launched = await read_stream(portal.build_url(git_server.url(analysis_repo), "main"))
    assert launched.last["phase"] == "ready", launched.log()
    user = launched.last["url"].rstrip("/").rsplit("/", 1)[1].removeprefix("pb-")
    names = run([*RUN_ENGINE, "ps", "--format", "{{.Names}}"]).stdout.split()
    container = next(n for n in names if n.startswith(IT_PREFIX) and user in n)
    inspect = [*RUN_ENGINE, "inspect", "--format", "{{.NetworkSettings.IPAddress}}", container]
    server = (run(inspect).stdout.strip(), 8888)
    assert server[0].startswith("172.17."), server  # a server on the run engine's own bridge
    hub_api = (docker_bridge_gateway(), portal.hub_api_port)  # where servers call the Hub
    targets = [f"{host}:{port}" for host, port in (server, hub_api)]
    for target in (server, hub_api):  # both listen: the host reaches them
        with socket.create_connection(target, timeout=3):
            pass
    name = f"probe-{secrets.token_hex(4)}"
    run_probe = f"RUN python3 /probe.py {' '.join(targets)}"
    dockerfile = f"FROM {BASE_IMAGE}\nCOPY probe.py /probe.py\n{run_probe}\n"
    git_server.commit(name, {"Dockerfile": dockerfile, "probe.py": PROBE}, "probe")
    stream = await read_stream(own_portal.build_url(git_server.url(name), "main", "build_only=true"))
    built_image(stream)
    log = stream.log()
    assert all(f"probe-blocked {t}" in log for t in targets) and "probe-reached" not in log, log[-3000:]
