"""Process lifecycle with real processes: nothing a portal started outlives it or is adopted.

Each test runs its own ``panbinder serve`` (own state folder, ports and container prefix), kills
or stops it as an operator or a crash would, and ends with no process of that state folder, no
process naming the folder and no container with the prefix.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from tornado.httpclient import AsyncHTTPClient

from panbinder import processes
from tests.support import (
    Portal,
    container_names,
    read_stream,
    remove_containers,
    session_prefix,
    wait_status,
)

pytestmark = [pytest.mark.docker, pytest.mark.hub, pytest.mark.slow]
BASE = "panbinder-life"
SLEEP = "23.17"  # a postBuild sleep no other process on the machine runs


@pytest.fixture
def portal(portal_factory, tmp_path, request):
    """Not started: each test starts, kills and restarts it itself."""
    prefix = f"{session_prefix(BASE)}-{request.node.name[5:20].replace('_', '')}"
    config = """
        c.GitProvider.allow_local = True
        c.ServerPool.size = 0
        c.HubProcess.cull_timeout = 900
        """
    with portal_factory("life", config, start=False, prefix=prefix, state=tmp_path / "state") as p:
        yield p
        p.stop()
        for proc in leftovers(p):  # never leave a process behind, even when the test failed
            processes.stop_pids([proc.pid], timeout=5)


def leftovers(portal: Portal) -> list[processes.Proc]:
    """Live processes of any run on the portal's state folder, or naming it, but not the portal."""
    state = str(portal.state.resolve())
    serve = portal.proc.pid if portal.proc is not None and portal.proc.poll() is None else -1
    return [
        p
        for p in processes.all_procs()
        if p.pid != serve and (p.state == state or any(state in a for a in p.args))
    ]


def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout:g} s: {what}")


def assert_nothing_left(portal: Portal, timeout: float = 15) -> None:
    wait_until(lambda: not leftovers(portal), timeout, f"processes left: {leftovers(portal)}")
    wait_until(lambda: not container_names(portal.container_prefix), timeout, "containers left")


def sleeping_steps() -> list[processes.Proc]:
    return [p for p in processes.all_procs() if p.args[:2] == ("sleep", SLEEP)]


def build_clients(portal: Portal) -> list[processes.Proc]:
    """``docker [global options] build ... --tag IMAGE`` processes of the portal's runs."""
    return [
        p for p in portal.processes() if p.args[0].endswith("docker") and {"build", "--tag"} <= set(p.args)
    ]


async def health(portal: Portal) -> dict:
    resp = await AsyncHTTPClient().fetch(f"{portal.url}/health", raise_error=False)
    return json.loads(resp.body)


def hub_is_child_of_serve(portal: Portal) -> bool:
    pid = processes.read_pid_file(portal.state / "run" / "jupyterhub.pid")
    hub = processes.read_proc(pid) if pid else None
    return hub is not None and hub.ppid == portal.proc.pid


async def test_sigterm_stops_servers_culler_proxy_and_hub(portal, git_server, analysis_repo):
    """As a background job (SIGINT ignored, which the culler inherited), a SIGTERM stop used to
    leave the proxy, the culler and the user's container running."""
    portal.background_job = True
    portal.start()
    s = await read_stream(portal.build_url(git_server.url(analysis_repo), "main"))
    assert s.last["phase"] == "ready", s.log()
    await wait_status(s.last["url"] + "api/status", s.last["token"])
    assert container_names(portal.container_prefix)
    names = " ".join(p.command for p in portal.processes())
    assert "configurable-http-proxy" in names and "jupyterhub_idle_culler" in names
    start = time.monotonic()
    portal.proc.send_signal(signal.SIGTERM)
    portal.proc.wait(timeout=70)
    took = time.monotonic() - start
    assert portal.proc.returncode == 0
    assert took < 45, f"the stop took {took:.0f} s"
    assert_nothing_left(portal, timeout=5)
    log = (portal.state / "logs" / "jupyterhub.log").read_text()
    order = [
        log.index(m) for m in ("single-user servers first", "Cleaning up 1 services", "Cleaning up proxy")
    ]
    assert order == sorted(order), log[-3000:]


async def test_kill9_mid_build_then_restart(portal, git_server):
    """A crash mid-build stops the build, Hub, proxy and culler; a restart with the watcher also
    gone stops the orphaned build itself; the new Hub is its own; the request then builds."""
    name = f"slow-{uuid.uuid4().hex[:8]}"
    git_server.commit(
        name,
        {
            "requirements.txt": "tabulate==0.9.0\n",
            "postBuild": f"#!/bin/sh\necho building {name}\nsleep {SLEEP}\n",
        },
    )
    url = portal.build_url(git_server.url(name), "main")
    portal.start()

    async def crash_mid_build(*, watcher: bool) -> None:
        reader = asyncio.ensure_future(read_stream(url, timeout=300))
        await asyncio.to_thread(wait_until, sleeping_steps, 240, "the build reaching postBuild")
        assert build_clients(portal), "no docker build client under the portal"
        portal.kill(watcher=watcher)
        await asyncio.wait([reader])

    # the portal alone dies: its watcher and the parent-death signals clean up
    await crash_mid_build(watcher=False)
    wait_until(lambda: not portal.processes(), 20, f"processes of the dead portal: {portal.processes()}")
    wait_until(lambda: not sleeping_steps(), 10, "the BuildKit step of the dead portal's build")

    portal.start()
    assert hub_is_child_of_serve(portal)
    assert (await health(portal))["ok"]

    # the portal and its watcher die: the docker build client is orphaned, the restart stops it
    await crash_mid_build(watcher=True)
    orphans = build_clients(portal)
    assert orphans, "the crash left no build client: this test no longer attacks anything"
    portal.start()
    assert not any(processes.alive(p.pid) for p in orphans)
    wait_until(lambda: not sleeping_steps(), 10, "the BuildKit step of the orphaned build")
    assert "was interrupted when an earlier run of the portal stopped" in portal.logs()
    assert hub_is_child_of_serve(portal)
    body = await health(portal)
    assert body["ok"], body

    s = await read_stream(url, timeout=400)
    assert s.last["phase"] == "ready", s.log()
    assert s.log().count(f"building {name}") == 1  # built once, cleanly
    await wait_status(s.last["url"] + "api/status", s.last["token"])
    portal.stop()
    assert_nothing_left(portal)


def hub_children(portal: Portal) -> list[processes.Proc]:
    return [p for p in portal.processes() if p.runs("configurable-http-proxy") or p.runs("idle_culler")]


class Impostor(BaseHTTPRequestHandler):
    """Answers every GET with 200, as a Hub left by an earlier run (same token) did."""

    def do_GET(self) -> None:
        body = json.dumps({"version": "6.1.1", "pid": 1, "nonce": ""}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


async def test_health_fails_when_another_program_answers_for_the_hub(portal):
    """/health said ok whenever something answered on the Hub's port with 200."""
    portal.config = portal.config.rstrip() + "\n        c.HubProcess.restart = False\n"  # the impostor's port
    portal.start()
    assert (await health(portal))["ok"]
    hub_pid = processes.read_pid_file(portal.state / "run" / "jupyterhub.pid")
    os.kill(hub_pid, signal.SIGKILL)
    # the proxy and the culler die with the Hub (they used to live on in sessions of their own)
    wait_until(lambda: not hub_children(portal), 10, "the proxy and the culler dying with the Hub")
    wait_until(
        lambda: processes.port_free("127.0.0.1", portal.hub_port),
        10,
        f"the proxy's port: {processes.port_holders(portal.hub_port)}",
    )
    impostor = ThreadingHTTPServer(("127.0.0.1", portal.hub_port), Impostor)
    thread = threading.Thread(target=impostor.serve_forever, daemon=True)
    thread.start()
    try:
        await asyncio.sleep(11)  # past the health cache
        body = await health(portal)
    finally:
        impostor.shutdown()
        impostor.server_close()
    hub = next(c for c in body["checks"] if c["service"] == "hub")
    assert not body["ok"] and not hub["ok"], body
    portal.stop()
    assert_nothing_left(portal)


async def test_kill9_mid_launch_then_restart(portal, git_server, analysis_repo):
    """A crash while a server starts leaves no container once the portal is back."""
    portal.start()
    url = portal.build_url(git_server.url(analysis_repo), "main")
    s = await read_stream(url)  # the image exists; the next launch only starts a container
    assert s.last["phase"] == "ready", s.log()
    portal.stop()
    remove_containers(portal.container_prefix)
    portal.start()
    reader = asyncio.ensure_future(read_stream(url, timeout=120))
    await asyncio.to_thread(
        wait_until, lambda: container_names(portal.container_prefix), 60, "a container being started"
    )
    portal.kill()
    await asyncio.wait([reader])
    portal.start()
    wait_until(lambda: not container_names(portal.container_prefix), 60, "the interrupted launch's container")
    assert hub_is_child_of_serve(portal)
    portal.stop()
    assert_nothing_left(portal)


async def test_servers_left_for_the_next_hub_stay_reachable(portal, git_server, analysis_repo):
    """HubProcess.cleanup_servers = False: a restart adopts running servers (same URL and token)
    and still culls them."""
    portal.config = portal.config.rstrip() + "\n        c.HubProcess.cleanup_servers = False\n"
    portal.start()
    s = await read_stream(portal.build_url(git_server.url(analysis_repo), "main"))
    assert s.last["phase"] == "ready", s.log()
    status = s.last["url"] + "api/status"
    await wait_status(status, s.last["token"])
    portal.stop()
    running = container_names(portal.container_prefix)
    assert running, "the server was stopped although cleanup_servers is False"
    wait_until(lambda: not leftovers(portal), 10, f"processes left: {leftovers(portal)}")
    portal.config += "        c.HubProcess.cull_timeout = 20\n        c.HubProcess.cull_every = 3\n"
    portal.start()
    assert hub_is_child_of_serve(portal)
    await wait_status(status, s.last["token"], timeout=30)  # through the new proxy
    assert container_names(portal.container_prefix) == running
    # and the new Hub's culler removes it once idle
    await asyncio.to_thread(wait_until, lambda: not container_names(portal.container_prefix), 90, "the cull")
    portal.stop()
    assert_nothing_left(portal)


def test_serve_refuses_a_port_another_program_holds(portal):
    """Another program on the Hub's port: serve says which port, setting and process, exits 1."""
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", portal.hub_port))
        holder.listen()
        portal.write_config()
        start = time.monotonic()
        done = portal.command("serve", timeout=60)
    assert done.returncode == 1
    assert time.monotonic() - start < 30
    out = done.stdout + done.stderr
    assert (
        f"Port {portal.hub_port} on 127.0.0.1 (HubProcess.port) is already in use by pid {os.getpid()}" in out
    )
    assert "Traceback" not in out
    assert not leftovers(portal)


def test_sigterm_while_starting_stops_what_was_started(portal):
    """A stop request before the portal serves used to kill it at once, leaving its Hub behind."""
    portal.write_config()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "panbinder",
            "serve",
            f"--config={portal.state / 'panbinder_config.py'}",
            f"--state-dir={portal.state}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: any(p.runs("hub_app") for p in portal.processes()), 60, "the Hub starting")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=70) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
    assert_nothing_left(portal, timeout=10)
