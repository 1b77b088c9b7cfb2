"""The build engine's settings and how every docker call of a build reaches it (no docker needed:
a stand-in client records its command lines, a stand-in Engine API on a unix socket the SDK's)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
from repo2docker.app import Repo2Docker
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_unix_socket
from tornado.web import Application, RequestHandler
from traitlets import TraitError
from traitlets.config import Config

from panbinder.builder.base import BuildRequest
from panbinder.builder.build_engine import BuildEngine, docker_argv, leftover_deletions
from panbinder.builder.engine import BuildKitEngine
from panbinder.builder.labelling import label_and_push
from panbinder.builder.limits import CgroupLayout, StepLimiter, _docker_root
from panbinder.builder.lock import capture_lock
from panbinder.builder.r2d import ENGINE_STOPPED, Repo2DockerBuilder, failure_message
from panbinder.errors import PanbinderError
from panbinder.registry_cache.naming import ImageRef

HOST = "unix:///srv/panbinder/build-engine/build.sock"
FAKE_DOCKER = """#!/bin/sh
line=$(printf '%s' "$*" | tr '\\n' ' ')
printf '%s\\n' "$line" >> "{log}"  # one write: calls from threads do not interleave
case "$*" in
  *" version "*) echo 20.10.24 ;;
  *" info "*) echo /srv/build-root ;;
  *"image inspect --format {{{{.Id}}}}"*) echo sha256:0123 ;;
  *" image inspect "*) exit 1 ;;
  *" push "*) echo "tag: digest: sha256:{digest} size: 1" ;;
  *" run "*) printf '3.11.2\\n----panbinder-lock----\\npip==24\\n----panbinder-lock----\\nbash=5\\n' ;;
  *" build "*) for a in "$@"; do case "$prev" in --iidfile) echo sha256:4567 > "$a" ;; esac; prev=$a; done ;;
esac
"""


@pytest.fixture
def fake_docker(tmp_path) -> tuple[str, Path]:
    """(path of a stand-in docker client, file listing the command lines it was given)."""
    log = tmp_path / "calls"
    script = tmp_path / "docker"
    script.write_text(FAKE_DOCKER.format(log=log, digest="a" * 64))
    script.chmod(0o755)
    return str(script), log


def calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_defaults_live_under_the_state_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("PANBINDER_STATE", str(tmp_path))
    engine = BuildEngine()
    folder = str(tmp_path / "build-engine")
    assert engine.state_dir == folder
    assert engine.host == f"unix://{folder}/build.sock"
    assert (engine.data_root, engine.exec_root) == (f"{folder}/data", f"{folder}/exec")
    assert str(engine.pidfile) == f"{folder}/dockerd.pid"
    assert engine.command("ps") == [engine.docker_cli, "--host", engine.host, "ps"]


def test_settings_come_from_the_configuration():
    config = Config(
        {"BuildEngine": {"state_dir": "/srv/be", "bridge": "pbx0", "bridge_address": "10.9.8.1/24"}}
    )
    engine = BuildEngine(config=config)
    assert engine.host == "unix:///srv/be/build.sock"
    assert (engine.gateway(), engine.subnet) == ("10.9.8.1", "10.9.8.0/24")
    args = engine.dockerd_args()
    for expected in (
        "--host=unix:///srv/be/build.sock",
        "--data-root=/srv/be/data",
        "--exec-root=/srv/be/exec",
        "--pidfile=/srv/be/dockerd.pid",
        "--bridge=pbx0",
        "--iptables=true",
    ):
        assert expected in args
    assert "/var/run/docker.sock" not in " ".join(args)  # never the run engine's socket


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("bridge", "a-bridge-name-too-long"),
        ("bridge", ""),
        ("bridge_address", "172.30.0.0/24"),  # the network's own address
        ("bridge_address", "172.30.0.1/32"),
        ("bridge_address", "not-an-address"),
    ],
)
def test_bad_bridge_settings_are_refused_at_start(name, value):
    with pytest.raises(TraitError, match=f"BuildEngine.{name}"):
        BuildEngine(**{name: value})


FILTER = """-P FORWARD DROP
-N DOCKER-USER
-A FORWARD -j DOCKER-USER
-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o docker0 -j DOCKER
-A FORWARD -i docker0 ! -o docker0 -j ACCEPT
-A FORWARD -o pbx0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o pbx0 -j DOCKER
-A FORWARD -i pbx0 ! -o pbx0 -j ACCEPT
-A FORWARD -i pbx01 -o pbx01 -j ACCEPT
-A DOCKER-ISOLATION-STAGE-1 -i pbx0 ! -o pbx0 -j DOCKER-ISOLATION-STAGE-2
-A DOCKER-ISOLATION-STAGE-2 -o pbx0 -j DROP
-A DOCKER-USER -i pbx0 -o docker+ -j DROP
-A DOCKER-USER -m comment --comment "the operator's own rule" -j RETURN
"""
NAT = """-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A POSTROUTING -s 10.9.8.0/24 ! -o pbx0 -j MASQUERADE
-A DOCKER -i docker0 -j RETURN
-A DOCKER -i pbx0 -j RETURN
"""


def test_stop_removes_every_rule_of_the_build_bridge_and_nothing_else():
    engine = BuildEngine(bridge="pbx0", bridge_address="10.9.8.1/24")
    filter_rules = [" ".join(d) for d in leftover_deletions("filter", FILTER, engine.bridge, engine.subnet)]
    assert filter_rules == [
        "-t filter -D FORWARD -o pbx0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        "-t filter -D FORWARD -o pbx0 -j DOCKER",
        "-t filter -D FORWARD -i pbx0 ! -o pbx0 -j ACCEPT",
        "-t filter -D DOCKER-ISOLATION-STAGE-1 -i pbx0 ! -o pbx0 -j DOCKER-ISOLATION-STAGE-2",
        "-t filter -D DOCKER-ISOLATION-STAGE-2 -o pbx0 -j DROP",
        "-t filter -D DOCKER-USER -i pbx0 -o docker+ -j DROP",
    ]  # docker0's rules, another bridge's (pbx01) and the operator's stay
    nat_rules = [" ".join(d) for d in leftover_deletions("nat", NAT, engine.bridge, engine.subnet)]
    assert nat_rules == [
        "-t nat -D POSTROUTING -s 10.9.8.0/24 ! -o pbx0 -j MASQUERADE",
        "-t nat -D DOCKER -i pbx0 -j RETURN",
    ]
    isolation = [" ".join(rule) for rule in engine.isolation_rules()]
    assert "DOCKER-USER -i pbx0 -o docker+ -j DROP" in isolation
    assert "DOCKER-USER -i docker+ -o pbx0 -j DROP" in isolation
    assert "INPUT -i pbx0 ! -d 10.9.8.1 -j DROP" in isolation  # of the host, only the gateway
    input_rule = "-A INPUT ! -d 10.9.8.1/32 -i pbx0 -j DROP"  # as iptables -S lists it
    assert leftover_deletions("filter", input_rule, "pbx0", "10.9.8.0/24") == [
        ["-t", "filter", "-D", "INPUT", "!", "-d", "10.9.8.1/32", "-i", "pbx0", "-j", "DROP"]
    ]


def test_docker_argv_takes_a_path_or_a_command_line():
    assert docker_argv("/usr/bin/docker", "ps") == ["/usr/bin/docker", "ps"]
    assert docker_argv(("docker", "--host", HOST), "ps") == ["docker", "--host", HOST, "ps"]


def request(image: str = "127.0.0.1:5000/panbinder/v1-x:abc") -> BuildRequest:
    name, _, tag = image.rpartition(":")
    registry, _, repo = name.partition("/")
    return BuildRequest("b1", "git", "git://127.0.0.1:1/r", "abc", "main", ImageRef(registry, repo, tag))


def test_repo2docker_builds_in_the_build_engine(tmp_path, fake_docker):
    """repo2docker makes its engine itself: the build engine reaches it through its config."""
    builder = Repo2DockerBuilder(config=Config({"BuildEngine": {"host": HOST, "docker_cli": fake_docker[0]}}))
    r2d = builder._make_r2d(request(), builder.log, str(tmp_path / "repo"))
    assert isinstance(r2d, Repo2Docker)
    engine = r2d.get_engine()
    assert isinstance(engine, BuildKitEngine)
    assert engine.command == [fake_docker[0], "--host", HOST]
    assert builder._engine(r2d).command == engine.command


def test_a_rebuild_recipe_travels_with_its_request(tmp_path, fake_docker):
    """A frozen recipe replaces the detected packs with the frozen pack, its requirements file in
    the build's own folder; a fresh one turns the layer cache off; a plain request neither."""
    from dataclasses import replace

    from panbinder.builder.base import Recipe
    from panbinder.builder.buildpacks.frozen import FrozenPipBuildPack

    builder = Repo2DockerBuilder(config=Config({"BuildEngine": {"host": HOST, "docker_cli": fake_docker[0]}}))
    frozen = replace(request(), recipe=Recipe(frozen_requirements="tabulate==0.9.0\n", apt_pins=("jq=1.6",)))
    r2d = builder._make_r2d(frozen, builder.log, str(tmp_path / "repo"))
    (pack,) = r2d.buildpacks
    assert issubclass(pack, FrozenPipBuildPack) and pack.pins == ("jq=1.6",)
    assert (tmp_path / "frozen-requirements.txt").read_text() == "tabulate==0.9.0\n"
    assert pack.requirements_file == str(tmp_path / "frozen-requirements.txt")
    assert not r2d.config.BuildKitEngine.get("no_cache", False)
    fresh = builder._make_r2d(
        replace(request(), recipe=Recipe(no_cache=True)), builder.log, str(tmp_path / "f")
    )
    assert fresh.config.BuildKitEngine.no_cache is True
    assert not any(issubclass(p, FrozenPipBuildPack) for p in fresh.buildpacks)
    plain = builder._make_r2d(request(), builder.log, str(tmp_path / "p"))
    assert not plain.config.BuildKitEngine.get("no_cache", False)


class EngineApi(RequestHandler):
    """The Docker Engine API calls the SDK makes, recorded: every image exists (id sha256:0123)."""

    def _answer(self, path: str) -> None:
        self.settings["calls"].append(f"{self.request.method} {path.split('/', 1)[-1]}")
        if path == "version":
            self.finish({"ApiVersion": "1.41", "Version": "20.10.24"})
        elif path.endswith("/info"):
            self.finish({"DockerRootDir": "/srv/build-root"})
        elif "/images/" in path and path.endswith("/json"):
            name = path.split("/images/", 1)[1].removesuffix("/json")
            self.finish({"Id": "sha256:0123", "RepoTags": [name], "RepoDigests": [], "Config": {}})
        else:  # tag, remove
            self.set_status(201 if self.request.method == "POST" else 200)
            self.finish("[]" if self.request.method == "DELETE" else "")

    get = post = delete = _answer


@pytest.fixture
def engine_api():
    """(host URL of a Docker Engine API stand-in on a unix socket, the calls it received)."""
    folder = tempfile.mkdtemp(prefix="pb-api-")  # short: a socket path has at most 107 bytes
    calls: list[str] = []
    ready, loop_box = threading.Event(), []

    def serve() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        server = HTTPServer(Application([(r"/(.*)", EngineApi)], calls=calls))
        server.add_socket(bind_unix_socket(f"{folder}/api.sock"))
        loop_box.append(loop)
        ready.set()
        loop.run_forever()
        server.stop()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ready.wait(10)
    yield f"unix://{folder}/api.sock", calls
    loop_box[0].call_soon_threadsafe(loop_box[0].stop)
    thread.join(10)
    shutil.rmtree(folder, ignore_errors=True)


def test_every_docker_call_of_a_build_goes_to_the_build_engine(tmp_path, fake_docker, engine_api):
    docker, log = fake_docker
    host, api_calls = engine_api
    parent = Repo2Docker(config=Config({"BuildKitEngine": {"docker_cli": docker, "docker_host": host}}))
    engine = BuildKitEngine(parent=parent)
    list(engine.build(tag="r/x:1", path=str(tmp_path), push=True))
    assert engine.inspect_image("r/x:1").tags == ["r/x:1"]
    command = engine.command
    label_and_push("r/x:1", {"a": "b"}, docker_cli=command)
    capture_lock("r/x:1", docker_cli=command, base_image="base:1")
    assert _docker_root(command) == "/srv/build-root"
    lines = calls(log)  # the command line: builds, pushes and probes
    assert {line.split()[2] for line in lines} >= {"build", "push", "run"}
    assert all(line.startswith(f"--host {host} ") for line in lines), lines
    sdk = set(api_calls)  # the SDK: look-ups and the root folder, on the same engine's socket
    assert {"GET images/r/x:1/json", "GET images/base:1/json", "GET info"} <= sdk, api_calls


def test_build_limits_find_the_steps_under_the_build_engines_root(fake_docker, engine_api):
    docker, log = fake_docker
    host, api_calls = engine_api
    limiter = StepLimiter(
        docker=[docker, "--host", host], layout=CgroupLayout(v1={"memory": "/sys/fs/cgroup/memory"})
    )
    assert limiter._setup() == "cannot read BuildKit's executor folder /srv/build-root/buildkit/executor"
    assert api_calls[-1] == "GET info" and calls(log) == []


def test_a_full_disk_is_named_in_the_failure():
    tail = [
        "#9 [4/5] RUN pip install -r requirements.txt",
        "ERROR: failed to copy: write /x: no space left on device",
    ]
    message = failure_message(tail, "docker build exited with 1")
    assert message.startswith("The build ran out of disk space (no space left on device)")
    assert "BuildEngine.data_root" in message


def test_a_build_whose_engine_stopped_fails_saying_so(tmp_path):
    builder = Repo2DockerBuilder(config=Config({"BuildEngine": {"host": f"unix://{tmp_path}/gone.sock"}}))
    lines = ["#7 [3/6] RUN pip install", "error reading from server: EOF"]
    event = asyncio.run(builder._failed(request(), RuntimeError("docker build exited with 1"), lines))
    assert (event.phase, event.message, event.extra["reason"]) == (
        "failed",
        ENGINE_STOPPED,
        "build_engine_stopped",
    )
    assert "The build engine stopped" in event.message


def test_a_failed_build_with_the_engine_answering_keeps_its_own_explanation(fake_docker):
    builder = Repo2DockerBuilder(config=Config({"BuildEngine": {"host": HOST, "docker_cli": fake_docker[0]}}))
    lines = ["E: Unable to locate package nosuch"]
    event = asyncio.run(builder._failed(request(), RuntimeError("docker build exited with 100"), lines))
    assert event.message.startswith("apt.txt names the package nosuch")


def test_a_failed_event_carries_no_url_credentials(fake_docker):
    """An index named with its token in requirements.txt: the message says which URL, not the token."""
    builder = Repo2DockerBuilder(config=Config({"BuildEngine": {"host": HOST, "docker_cli": fake_docker[0]}}))
    url = "https://reader:s3cr3t@pypi.example.org/simple"
    for error in (RuntimeError(f"could not reach {url}"), PanbinderError(f"The index {url} answered 401")):
        event = asyncio.run(builder._failed(request(), error, [f"ERROR: 401 Client Error for url: {url}/x/"]))
        assert "s3cr3t" not in event.message and "reader:[secret]@pypi.example.org" in event.message


def cli(*args: str, state: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "panbinder", "build-engine", *args, f"--state-dir={state}"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PANBINDER_STATE": str(state), "PATH": "/usr/bin:/bin"},
        cwd=state,
    )


def test_status_of_an_engine_that_is_not_running(tmp_path):
    proc = cli("status", state=tmp_path)
    assert proc.returncode == 1
    assert f"build engine at unix://{tmp_path}/build-engine/build.sock: not answering" in proc.stdout


def test_unknown_action_prints_the_usage(tmp_path):
    proc = cli("restart-everything", state=tmp_path)
    assert proc.returncode == 2
    assert "usage: panbinder build-engine start|stop|status" in proc.stderr


def test_a_pid_file_naming_another_process_is_never_signalled(tmp_path):
    """A stale pid file whose pid now belongs to another process (this one) counts as no dockerd."""
    # a bridge and subnet nothing uses: stop() removes whatever names them
    engine = BuildEngine(state_dir=str(tmp_path), bridge="pbunit-none", bridge_address="10.254.253.1/24")
    engine.pidfile.write_text(f"{os.getpid()}\n")
    assert engine._pid() == 0
    assert engine.stop() is False  # nothing was signalled: this test is still running
    (tmp_path / "exec" / "containerd").mkdir(parents=True)
    (tmp_path / "exec" / "containerd" / "containerd.pid").write_text(str(os.getpid()))
    assert engine._containerd_pid() == 0
