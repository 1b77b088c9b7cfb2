"""Process lifecycle without docker: real processes, real signals, real sockets on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from panbinder import processes
from panbinder.errors import PanbinderError
from panbinder.launcher.hub_process import HubProcess, check_ports
from panbinder.lifecycle import PortalRun

SLEEPER = "import time; time.sleep(300)"


def wait_gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not processes.alive(pid):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def spawned():
    """Start processes; kill whatever is left at the end."""
    procs: list[subprocess.Popen] = []

    def spawn(args: list[str], **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(args, **kwargs)
        procs.append(proc)
        return proc

    yield spawn
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def marked_env(state: Path, owner: str) -> dict[str, str]:
    return dict(os.environ, **{processes.STATE_ENV: str(state.resolve()), processes.OWNER_ENV: owner})


def grandchild_pid(parent: subprocess.Popen, timeout: float = 10) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = [p.pid for p in processes.all_procs() if p.ppid == parent.pid]
        if kids:
            return kids[0]
        time.sleep(0.05)
    raise AssertionError("no child appeared")


def test_lifeline_child_dies_with_its_parent(spawned):
    """A process started through the lifeline dies when its parent is SIGKILLed."""
    parent = spawned(
        [
            sys.executable,
            "-c",
            "import os, subprocess, sys, time\n"
            "subprocess.Popen([sys.executable, '-m', 'panbinder.lifeline', 'exec',"
            " f'--parent={os.getpid()}', '--', sys.executable, '-c', 'import time; time.sleep(300)'])\n"
            "time.sleep(300)",
        ]
    )
    child = grandchild_pid(parent)
    time.sleep(0.5)  # the wrapper has exec'd
    assert processes.read_proc(child).args[-1] == "import time; time.sleep(300)"
    parent.kill()
    parent.wait()
    assert wait_gone(child), "the lifeline child outlived its parent"


def test_lifeline_resets_an_ignored_sigint(spawned):
    """A shell's background job ignores SIGINT; the Hub's services must not inherit that."""
    ignoring = spawned(
        [sys.executable, "-c", SLEEPER], preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)
    )
    time.sleep(0.3)
    assert _ignores_sigint(ignoring.pid)  # what the culler got before
    wrapped = spawned(
        [sys.executable, "-m", "panbinder.lifeline", "exec", f"--parent={os.getpid()}", "--", "sleep", "300"],
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    time.sleep(0.5)
    assert not _ignores_sigint(wrapped.pid)
    wrapped.send_signal(signal.SIGINT)
    assert wrapped.wait(timeout=5) == -signal.SIGINT


def _ignores_sigint(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status").read_text()
    ignored = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigIgn:")), 16)
    return bool(ignored & (1 << (signal.SIGINT - 1)))


def test_watcher_stops_the_portals_processes_when_its_pipe_closes(spawned, tmp_path):
    owner = "4242-test"
    build = spawned(["sleep", "300"], env=marked_env(tmp_path, owner))
    other = spawned(["sleep", "300"], env=marked_env(tmp_path, "another-run"))
    watcher = spawned(
        [sys.executable, "-m", "panbinder.lifeline", "watch", f"--owner={owner}", "--hub-timeout=5"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    time.sleep(0.5)
    assert build.poll() is None
    watcher.stdin.close()  # the portal is gone
    assert watcher.wait(timeout=20) == 0
    assert build.wait(timeout=5) == -signal.SIGTERM
    assert other.poll() is None, "the watcher stopped a process of another run"
    assert b"sleep 300" in watcher.stderr.read()


def test_a_new_run_stops_what_an_earlier_one_left(spawned, tmp_path):
    run = PortalRun(tmp_path, _log())
    left = spawned(["sleep", "300"], env=marked_env(tmp_path, "earlier-run"))
    elsewhere = spawned(["sleep", "300"], env=marked_env(tmp_path / "other-state", "earlier-run"))
    time.sleep(0.3)
    found = run.stop_left_behind()
    assert [p.pid for p in found] == [left.pid]
    assert left.wait(timeout=5) == -signal.SIGTERM
    assert elsewhere.poll() is None


def test_stale_pid_files_are_checked_before_killing(spawned, tmp_path):
    """Hub, proxy and culler of an earlier run are stopped; a reused pid is never killed."""
    state = tmp_path
    (state / "run").mkdir()
    culler = spawned([sys.executable, "-c", SLEEPER, "jupyterhub_idle_culler"], env=marked_env(state, "old"))
    stranger = spawned(["sleep", "300"], env=marked_env(state, "old"))  # pid reused by another program
    foreign = spawned(  # a proxy of a portal with another state folder
        [sys.executable, "-c", SLEEPER, "configurable-http-proxy"], env=marked_env(tmp_path / "x", "old")
    )
    (state / "run" / "culler.pid").write_text(f"{culler.pid}\n")
    (state / "run" / "jupyterhub.pid").write_text(f"{stranger.pid}\n")
    (state / "run" / "proxy.pid").write_text(f"{foreign.pid}\n")
    time.sleep(0.3)
    hub = HubProcess(stop_timeout=5)
    stopped = hub.stop_stale(state)
    assert [p.pid for p in stopped] == [culler.pid]
    assert culler.wait(timeout=5) == -signal.SIGTERM
    assert stranger.poll() is None and foreign.poll() is None
    assert not list((state / "run").glob("*.pid")), "stale pid files are removed"


def test_a_port_held_by_another_program_fails_loudly():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(PanbinderError) as e:
            check_ports([("127.0.0.1", port, "HubProcess.port")])
    message = e.value.message
    assert f"Port {port} on 127.0.0.1 (HubProcess.port)" in message
    assert f"pid {os.getpid()}" in message and "c.HubProcess.port" in message
    check_ports([("127.0.0.1", port, "HubProcess.port")])  # free again


def test_a_second_serve_on_the_same_state_folder_is_refused(spawned, tmp_path):
    serve = spawned([sys.executable, "-c", SLEEPER, "panbinder", "serve"])
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "portal.pid").write_text(f"{serve.pid}\n")
    time.sleep(0.3)
    with pytest.raises(PanbinderError, match=f"Another panbinder serve \\(pid {serve.pid}\\)"):
        PortalRun(tmp_path, _log()).claim()
    serve.kill()
    serve.wait()
    PortalRun(tmp_path, _log()).claim()  # a dead one's pid file is taken over
    assert (tmp_path / "run" / "portal.pid").read_text().strip() == str(os.getpid())


def test_daemons_are_never_stopped(spawned, tmp_path):
    """dockerd (a build engine) started from a portal carries its marks but outlives it."""
    fake = tmp_path / "bin" / "dockerd"
    fake.parent.mkdir()
    fake.symlink_to("/bin/sleep")
    daemon = spawned([str(fake), "300"], env=marked_env(tmp_path, "earlier-run"))
    time.sleep(0.3)
    assert PortalRun(tmp_path, _log()).stop_left_behind() == []
    assert daemon.poll() is None


def test_interrupted_builds_are_found_stopped_and_forgotten(spawned, tmp_path, monkeypatch, caplog):
    from panbinder.builder.inflight import InflightRecords

    image = "127.0.0.1:5000/panbinder/lifecycle-test:abc"
    monkeypatch.setenv(processes.STATE_ENV, str(tmp_path.resolve()))
    monkeypatch.setenv(processes.OWNER_ENV, "earlier-run")
    records = InflightRecords(str(tmp_path / "builds"), _log())
    records.add("b-1", image, "git://127.0.0.1/repo")
    client = spawned([sys.executable, "-c", SLEEPER, "--tag", image], env=marked_env(tmp_path, "earlier-run"))
    monkeypatch.setenv(processes.OWNER_ENV, "this-run")
    records.add("b-2", image + "2", "git://127.0.0.1/repo")  # this run's own build
    time.sleep(0.3)
    with caplog.at_level("WARNING"):
        stopped = records.stop_left()
    assert [r.build_id for r in stopped] == ["b-1"]
    assert client.wait(timeout=5) == -signal.SIGTERM
    assert "build b-1 of " + image + " was interrupted" in caplog.text
    assert sorted(p.name for p in (tmp_path / "builds").iterdir()) == ["b-2.json"]
    assert json.loads((tmp_path / "builds" / "b-2.json").read_text())["owner"] == "this-run"


def _log():
    import logging

    return logging.getLogger("panbinder.test")
