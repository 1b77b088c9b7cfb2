"""The registry goes down and comes back: /health names it, a launch fails saying "registry
unreachable" and what to do, and once it is back a launch builds, pushes and reaches ready.

The test runs its own registry (Debian's ``docker-registry`` on a free 127.0.0.1 port, its own
storage folder) and a portal that uses it; the shared registry other tests use is never touched.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time

import pytest
from tornado.httpclient import AsyncHTTPClient

from panbinder.builder.build_engine import BuildEngine
from tests.integration.conftest import ANALYSIS_FILES
from tests.support import (
    OwnRegistry,
    Portal,
    read_stream,
    wait_status,
)

pytestmark = [pytest.mark.docker, pytest.mark.hub, pytest.mark.slow]

HEALTH_CACHE = 10.0  # /health keeps a check's result this long (web/handlers/health.py)


@pytest.fixture
def registry(tmp_path):
    own = OwnRegistry(tmp_path / "registry")
    assert own.port != 5000
    own.start()
    yield own
    own.stop()
    forget_images(f"127.0.0.1:{own.port}/")
    shutil.rmtree(own.root / "storage", ignore_errors=True)  # an image's worth of layers


def forget_images(prefix: str) -> None:
    """Remove the images named after the test's registry from the run and the build engine."""
    for docker in (["/usr/bin/docker"], BuildEngine().command()):
        listed = subprocess.run(
            [*docker, "images", "--format", "{{.Repository}}:{{.Tag}}"], capture_output=True, text=True
        )
        names = [n for n in listed.stdout.split() if n.startswith(prefix)]
        if names:
            subprocess.run([*docker, "rmi", "-f", *names], capture_output=True)


@pytest.fixture
def portal(portal_factory, tmp_path, registry):
    config = f"""
        c.Registry.url = {registry.url!r}
        c.Registry.timeout = 5.0
        c.ServerPool.size = 0
        c.ServeApp.keepalive_interval = 1.0
        """
    with portal_factory("regdown", config, state=tmp_path / "state") as p:
        yield p


async def health(portal: Portal) -> tuple[int, dict]:
    resp = await AsyncHTTPClient().fetch(f"{portal.url}/health", raise_error=False, request_timeout=30)
    return resp.code, json.loads(resp.body)


async def wait_health(portal: Portal, ok: bool, timeout: float = 60) -> dict:
    """/health once it says ``ok`` (it caches each check for HEALTH_CACHE seconds)."""
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        code, body = await health(portal)
        if body.get("ok") is ok and code == (200 if ok else 503):
            return body
        await asyncio.sleep(0.5)
    raise AssertionError(f"/health did not turn ok={ok} in {timeout} s: {body}")


def check(body: dict, service: str) -> dict:
    return next(c for c in body["checks"] if c["service"] == service)


async def test_registry_down_then_back(portal, registry, git_server):
    sha = git_server.commit("registry-down", ANALYSIS_FILES, "for the registry-down test")
    url = portal.build_url(git_server.url("registry-down"), "main")
    await wait_health(portal, ok=True)

    registry.stop()
    body = await wait_health(portal, ok=False, timeout=HEALTH_CACHE + 20)
    down = check(body, "registry")
    assert down["ok"] is False and down["message"].startswith("registry unreachable"), body
    assert [c["service"] for c in body["checks"] if not c["ok"]] == ["registry"], body
    assert registry.url not in json.dumps(body)  # the internal address is the operators' business

    started = time.monotonic()
    s = await read_stream(url, timeout=120)
    assert s.last["phase"] == "failed", s.log()
    assert s.last["message"].startswith("Registry unreachable:"), s.last
    assert "try again" in s.last["message"] and "operators" in s.last["message"]
    assert s.last["reason"] == "registry_unreachable" and s.last["status_code"] == 503, s.last
    assert time.monotonic() - started < 30, "a down registry must fail fast, not hang"
    assert "Traceback" not in s.raw and registry.url not in s.raw
    assert sha not in [e.get("imageName", "") for e in s.events]

    registry.start()
    body = await wait_health(portal, ok=True, timeout=HEALTH_CACHE + 20)
    assert "message" not in check(body, "registry"), body

    s = await read_stream(url, timeout=900)
    assert s.last["phase"] == "ready", s.log()[-3000:]
    built = [e for e in s.events if e["phase"] == "built"]
    assert built and built[0]["imageName"].startswith(f"127.0.0.1:{registry.port}/"), built
    await wait_status(s.last["url"] + "api/status", s.last["token"], timeout=60)
