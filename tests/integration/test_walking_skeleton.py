"""End to end: build a real image with repo2docker, push it, launch it through JupyterHub,
run code in the kernel. Every test talks to the real services started in conftest.py."""

from __future__ import annotations

import asyncio
import json
import re

import docker
import pytest
from tornado.httpclient import AsyncHTTPClient

from tests.support import read_stream, run_code

from .conftest import CORS_ORIGIN, PREFIX

pytestmark = [pytest.mark.docker, pytest.mark.hub, pytest.mark.slow]

CHECK = "import tabulate; print(2 * int(open('data/values.txt').read()), tabulate.__version__)"


def container_of(user: str):
    client = docker.from_env()
    matches = [c for c in client.containers.list() if c.name.startswith(PREFIX) and user in c.name]
    assert len(matches) == 1, [c.name for c in client.containers.list()]
    return matches[0]


async def test_new_repository_builds_then_launches_and_runs_code(portal, git_server, fresh_repo):
    stream = await read_stream(portal.build_url(git_server.url(fresh_repo), "main"))
    assert stream.last["phase"] == "ready", stream.log()
    assert "building" in stream.phases and "pushing" in stream.phases
    assert stream.phases.index("built") < stream.phases.index("launching")
    ready = stream.last
    assert ready["image"].startswith("127.0.0.1:5000/panbinder/v1-git-")
    assert re.fullmatch(r".*:[0-9a-f]{40}", ready["image"])
    assert ready["repo_url"] == git_server.url(fresh_repo)
    sha = ready["image"].rsplit(":", 1)[1]
    assert ready["binder_persistent_request"].endswith("/" + sha)
    out = await run_code(ready["url"], ready["token"], CHECK)
    assert out.split() == ["42", "0.9.0"]


async def test_launched_container_is_hardened(portal, git_server, analysis_repo):
    stream = await read_stream(portal.build_url(git_server.url(analysis_repo), "main"))
    ready = stream.last
    assert ready["phase"] == "ready", stream.log()
    user = ready["url"].rstrip("/").rsplit("/", 1)[1]
    c = container_of(user.removeprefix("pb-"))
    host = c.attrs["HostConfig"]
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["CapDrop"] == ["ALL"]
    assert host["PidsLimit"] == 200
    assert host["Memory"] == 1024**3
    assert host["CpuQuota"] == host["CpuPeriod"]  # 1 cpu
    out = await run_code(
        ready["url"],
        ready["token"],
        "import os\nprint(os.getuid())\n"
        "print([l.split()[1] for l in open('/proc/self/status') if l.startswith(('CapEff', 'NoNewPrivs'))])",
    )
    uid, caps = out.splitlines()
    assert uid == "1000"
    assert caps == "['0000000000000000', '1']"
    assert f"--ServerApp.allow_origin={CORS_ORIGIN}" in c.attrs["Args"]


async def test_second_request_uses_cached_image(portal, git_server, analysis_repo):
    first = await read_stream(portal.build_url(git_server.url(analysis_repo), "main"))
    assert first.last["phase"] == "ready", first.log()
    again = await read_stream(portal.build_url(git_server.url(analysis_repo), "main"))
    assert again.last["phase"] == "ready", again.log()
    assert "building" not in again.phases and "pushing" not in again.phases
    assert "Found built image" in again.log()
    assert again.last["image"] == first.last["image"]
    out = await run_code(again.last["url"], again.last["token"], CHECK)
    assert out.split()[0] == "42"


async def test_ref_forms_resolve_to_the_same_image(portal, git_server, analysis_repo):
    sha = git_server.commit(analysis_repo, {}, "empty commit for ref forms")
    git_server.git(analysis_repo, "tag", "v-test", sha)
    git_server.git(analysis_repo, "branch", "feature/x", sha)
    images = set()
    for ref in ("main", "v-test", "feature/x", sha[:9], sha):
        s = await read_stream(portal.build_url(git_server.url(analysis_repo), ref) + "?build_only=true")
        assert s.last["phase"] == "ready", (ref, s.log())
        images.add(s.last["imageName"])
    assert len(images) == 1
    assert images.pop().endswith(":" + sha)


async def test_code_only_commit_reuses_the_environment_layers(portal, git_server, analysis_repo):
    base = await read_stream(portal.build_url(git_server.url(analysis_repo), "main") + "?build_only=true")
    assert base.last["phase"] == "ready", base.log()
    git_server.commit(
        analysis_repo,
        {"figure.ipynb": '{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'},
        "nb",
    )
    s = await read_stream(portal.build_url(git_server.url(analysis_repo), "main") + "?build_only=true")
    assert s.last["phase"] == "ready", s.log()
    log = s.log()
    assert "building" in s.phases
    # BuildKit reports the requirements install and the server install as cached steps
    step = r"#(\d+) \[[^\]]*\] RUN --mount=type=cache[^\n]*{}[^\n]*\n(?:#\1 [^\n]*\n)*?#\1 CACHED"
    assert re.search(step.format(r"-r requirements\.txt"), log), log[-3000:]
    assert re.search(step.format("jupyterhub=="), log), log[-3000:]
    assert "Collecting tabulate" not in log


async def test_concurrent_requests_share_one_build(portal, git_server, analysis_repo):
    git_server.commit(analysis_repo, {"analysis.py": "print('new code')\n"}, "new code")
    url = portal.build_url(git_server.url(analysis_repo), "main")
    a, b = await asyncio.gather(read_stream(url), read_stream(url))
    assert a.last["phase"] == "ready", a.log()
    assert b.last["phase"] == "ready", b.log()
    assert a.last["image"] == b.last["image"]
    joined = [s for s in (a, b) if "already being built" in s.log()]
    assert len(joined) == 1
    # both streams carry the same build log
    assert a.log().count("Image built and pushed") == b.log().count("Image built and pushed") == 1
    assert a.last["url"] != b.last["url"]


async def test_build_only_ends_ready_with_the_image_and_launches_nothing(portal, git_server, analysis_repo):
    s = await read_stream(portal.build_url(git_server.url(analysis_repo), "main") + "?build_only=true")
    assert s.phases[-2:] == ["built", "ready"], s.log()
    assert "imageName" in s.last and "url" not in s.last
    assert "launching" not in s.phases


async def test_cors_headers_on_build_and_badge(portal, git_server, analysis_repo):
    client = AsyncHTTPClient()
    badge = await client.fetch(portal.url + "/badge.svg")
    assert badge.headers["Access-Control-Allow-Origin"] == CORS_ORIGIN
    assert badge.body.startswith(b"<svg")
    chunks = []
    await client.fetch(
        portal.build_url(git_server.url(analysis_repo), "main") + "?build_only=true",
        streaming_callback=chunks.append,
        header_callback=lambda line: (
            chunks.append(line.encode()) if line.lower().startswith("access-control") else None
        ),
    )
    assert any(CORS_ORIGIN.encode() in c for c in chunks)


async def test_health_versions_metrics(portal):
    client = AsyncHTTPClient()
    health = json.loads((await client.fetch(portal.url + "/health")).body)
    assert health["ok"] is True
    assert {c["service"] for c in health["checks"]} == {"registry", "docker", "hub", "build-engine"}
    versions = json.loads((await client.fetch(portal.url + "/versions")).body)
    assert versions["jupyterhub"] == "6.1.1" and "repo2docker" in versions["builder"]
    metrics = (await client.fetch(portal.url + "/metrics")).body.decode()
    for name in ("panbinder_build_seconds", "panbinder_launch_seconds", "panbinder_builds_in_progress"):
        assert name in metrics


async def test_launch_page_renders(portal, git_server, analysis_repo):
    client = AsyncHTTPClient()
    page = await client.fetch(
        portal.url
        + f"/v2/git/{git_server.url(analysis_repo).replace(':', '%3A').replace('/', '%2F')}/main?labpath=figure.ipynb"
    )
    text = page.body.decode()
    assert "EventSource" not in text  # the script lives in a static file
    assert 'data-labpath="figure.ipynb"' in text
    assert "/build/git/git%3A%2F%2F127.0.0.1" in text


async def test_keepalive_comments_during_silent_build_steps(portal, git_server):
    # postBuild sleeps silently for longer than the 1 s keepalive interval set in conftest
    git_server.commit("quiet", {"postBuild": "#!/bin/bash\nsleep 4\necho done > ~/.postbuild-ran\n"}, "quiet")
    s = await read_stream(portal.build_url(git_server.url("quiet"), "main") + "?build_only=true")
    assert s.last["phase"] == "ready", s.log()
    assert s.keepalives >= 2
    assert ":keepalive\n\n" in s.raw


async def prestarted(portal, image: str) -> int:
    """Pre-started servers of ``image``, as /health shows them to the operator (service token)."""
    token = portal.service_token
    resp = await AsyncHTTPClient().fetch(
        portal.url + "/health", headers={"Authorization": f"token {token}"}, raise_error=False
    )
    return json.loads(resp.body)["prestarted"].get(image, 0)


async def test_next_launch_of_an_image_gets_a_prestarted_server(portal, git_server, analysis_repo):
    url = portal.build_url(git_server.url(analysis_repo), "main")
    first = await read_stream(url)
    assert first.last["phase"] == "ready", first.log()
    for _ in range(120):
        if await prestarted(portal, first.last["image"]) >= 1:
            break
        await asyncio.sleep(0.5)
    else:
        raise AssertionError("no server was pre-started after a launch")
    again = await read_stream(url)
    assert again.last["phase"] == "ready", again.log()
    assert again.last["prestarted"] is True
    assert "launching" not in again.phases
    assert again.last["url"] != first.last["url"]
    out = await run_code(again.last["url"], again.last["token"], CHECK)
    assert out.split()[0] == "42"
    # the first user's token does not open the pre-started server
    resp = await AsyncHTTPClient().fetch(
        again.last["url"] + "api/status",
        headers={"Authorization": f"token {first.last['token']}"},
        raise_error=False,
    )
    assert resp.code in (403, 404, 302)
