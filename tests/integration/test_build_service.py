"""The build service for real: a build queue with one slot, a short build timeout, the ban list,
kept build logs and the repository size cap, against docker, BuildKit and the registry."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import subprocess
import time

import pytest
from tornado.httpclient import AsyncHTTPClient

from tests.support import read_stream, session_prefix

pytestmark = [pytest.mark.docker, pytest.mark.slow]
PREFIX = session_prefix("panbinder-bs")
TIMEOUT = 25
# a docker client's build, in the build engine (``--host``) or anywhere else
DOCKER_BUILD = re.compile(r"^\S*docker( --host \S+)? build ")
MAX_REPO = 300_000


@pytest.fixture(scope="module")
def service(portal_factory):
    config = f"""
        c.GitProvider.allow_local = True
        c.ServeApp.start_hub = False
        c.ServeApp.keepalive_interval = 1.0
        c.BuildManager.concurrent_builds = 1
        c.BuildManager.build_timeout = {TIMEOUT}
        c.BuildManager.cancel_when_abandoned = True
        c.Repo2DockerBuilder.max_repo_size = {MAX_REPO}
        c.SpecPolicy.banned_specs = [r"git://127\\.0\\.0\\.1:\\d+/banned-"]
        """
    with portal_factory("bs", config, prefix=PREFIX) as p:
        yield p


def build_url(service, git_server, name: str) -> str:
    return service.build_url(git_server.url(name), "main") + "?build_only=true"


def processes() -> str:
    return subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout


def container_commands() -> str:
    return subprocess.run(
        ["docker", "ps", "--no-trunc", "--format", "{{.Names}} {{.Command}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


async def step_appears(marker: str, stream: asyncio.Task, limit: float = 120) -> bool:
    """True once BuildKit's step runs ``marker`` (a process on this host), before ``stream`` ends."""
    deadline = time.monotonic() + limit
    while not stream.done() and time.monotonic() < deadline:
        if marker in processes():
            return True
        await asyncio.sleep(0.2)
    return False


async def step_gone(marker: str, limit: float = 15) -> bool:
    for _ in range(int(limit * 2)):
        if marker not in processes():
            return True
        await asyncio.sleep(0.5)
    return False


async def metric(service, name: str) -> float:
    body = (await AsyncHTTPClient().fetch(f"{service.url}/metrics")).body.decode()
    line = next(ln for ln in body.splitlines() if ln.startswith(name + " "))
    return float(line.split()[1])


async def test_requests_beyond_the_concurrency_limit_wait_with_positions(service, git_server):
    tag = secrets.token_hex(4)
    names = [f"queue-{tag}-{i}" for i in range(3)]
    for i, name in enumerate(names):
        git_server.commit(name, {"postBuild": f"#!/bin/sh\nsleep 4\necho queued {i} > ~/marker\n"})
    tasks = []
    for name in names:  # in this order: the first builds, the others wait behind it
        tasks.append(asyncio.create_task(read_stream(build_url(service, git_server, name), timeout=600)))
        await asyncio.sleep(1.0)
    streams = await asyncio.gather(*tasks)
    for s in streams:
        assert s.last["phase"] == "ready", s.log()
    positions = [[e["message"] for e in s.events if "position" in e] for s in streams]
    assert positions[0] == []
    assert positions[1][0] == "Waiting for a build slot: position 1 of 1\n"
    assert positions[2][0] == "Waiting for a build slot: position 2 of 2\n"
    assert "Waiting for a build slot: position 1 of 1\n" in positions[2]  # the queue moved
    assert [e["position"] for e in streams[2].events if "position" in e][-1] == 1
    assert await metric(service, "panbinder_build_queue_length") == 0


async def test_build_past_its_timeout_is_stopped_and_its_log_is_served(service, git_server):
    seconds = 1000 + secrets.randbelow(8000)  # a marker to find the step's process by
    name = f"slow-{secrets.token_hex(4)}"
    git_server.commit(name, {"postBuild": f"#!/bin/sh\necho about to sleep\nsleep {seconds}\n"})
    started = time.monotonic()
    stream = asyncio.create_task(read_stream(build_url(service, git_server, name), timeout=300))
    assert await step_appears(f"sleep {seconds}", stream), "the check below would not see the step"
    s = await stream
    elapsed = time.monotonic() - started
    last = s.last
    assert last["phase"] == "failed", s.log()
    assert last["reason"] == "build_timeout"
    assert f"longer than this service's limit of {TIMEOUT} seconds and was stopped" in last["message"]
    assert elapsed < TIMEOUT + 30
    # nothing of the build keeps running: not the docker client, not BuildKit's step
    assert await step_gone(f"sleep {seconds}")
    assert f"sleep {seconds}" not in container_commands()
    assert not [ln for ln in processes().splitlines() if DOCKER_BUILD.match(ln)]
    assert await metric(service, "panbinder_builds_in_progress") == 0
    assert await metric(service, "panbinder_build_queue_length") == 0
    assert await metric(service, 'panbinder_builds_total{outcome="timeout"}') >= 1

    url = last["build_log_url"]
    assert url == f"{service.url}/build-logs/{last['build_log']}"
    resp = await AsyncHTTPClient().fetch(url)
    assert resp.headers["Content-Type"].startswith("text/plain")
    text = resp.body.decode()
    assert "about to sleep" in text
    assert "[failed] The build took longer" in text


async def test_banned_repository_gets_403(service, git_server):
    name = f"banned-{secrets.token_hex(4)}"
    git_server.commit(name, {"README.md": "not here\n"})
    client = AsyncHTTPClient()
    resp = await client.fetch(
        service.build_url(git_server.url(name), "main"),
        headers={"Accept": "text/event-stream"},
        raise_error=False,
    )
    assert resp.code == 403
    body = json.loads(resp.body)
    assert body["reason"] == "banned_spec"
    assert "is not allowed on this service" in body["message"]
    page = await client.fetch(
        f"{service.url}/v2/git/{service.build_url(git_server.url(name), 'main').split('/build/git/')[1]}",
        headers={"Accept": "text/html"},
        raise_error=False,
    )
    assert page.code == 403 and b"is not allowed on this service" in page.body


async def test_repository_over_the_size_cap_fails_before_building(service, git_server):
    name = f"big-{secrets.token_hex(4)}"
    git_server.commit(name, {"data.txt": secrets.token_hex(MAX_REPO // 2 + 1000)})
    s = await read_stream(build_url(service, git_server, name), timeout=300)
    assert s.last["phase"] == "failed", s.log()
    assert "larger than this service's limit of 293.0 KiB" in s.last["message"]
    assert "#1 [internal] load" not in s.log()  # docker build never started
    log = await AsyncHTTPClient().fetch(s.last["build_log_url"])
    assert b"larger than this service's limit" in log.body


@pytest.mark.parametrize("name", ["..%2F..%2Fportal.log", "..", "x.txt", "%2E%2E%2Fportal.log"])
async def test_build_log_url_serves_only_kept_logs(service, name):
    resp = await AsyncHTTPClient().fetch(f"{service.url}/build-logs/{name}", raise_error=False)
    assert resp.code == 404


async def test_build_nobody_waits_for_is_cancelled(service, git_server):
    seconds = 10000 + secrets.randbelow(8000)
    name = f"abandoned-{secrets.token_hex(4)}"
    git_server.commit(name, {"postBuild": f"#!/bin/sh\nsleep {seconds}\n"})
    path = build_url(service, git_server, name).removeprefix(service.url)
    reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode())
    await writer.drain()
    watcher = asyncio.create_task(reader.read(1 << 20))  # keeps the stream read while the step starts
    assert await step_appears(f"sleep {seconds}", asyncio.create_task(asyncio.sleep(120)))
    watcher.cancel()
    writer.close()  # the only client leaves
    assert await step_gone(f"sleep {seconds}")
    assert await metric(service, "panbinder_builds_in_progress") == 0
    assert await metric(service, 'panbinder_builds_total{outcome="abandoned"}') >= 1
