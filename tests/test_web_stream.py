"""The /build event stream, in-process: the phases in order, the Server-Sent Events format
(``data:`` lines, ``retry:`` before the last event, keepalive comments), the fields BinderHub's
clients read (``status_code`` of 'failed', the links of 'ready') and what the builder and the
launcher were asked for. The builder and the launcher are recording stand-ins (tests/web_app.py);
the real ones are driven end to end in tests/integration/.
"""

from __future__ import annotations

import asyncio
from urllib.parse import quote

import pytest

from panbinder.events import TERMINAL_RETRY_MS, Event
from tests.loopback import bare_repo
from tests.support import free_port
from tests.web_app import CORS_ORIGIN, PUBLIC_URL, REPO, SHA, eventually, git_spec, web_portal

SPEC = git_spec()
DOI = "10.5555/paper.data"


@pytest.fixture
async def portal(tmp_path):
    async with web_portal(tmp_path) as p:
        yield p


def built_image(s) -> str:
    return next(e["imageName"] for e in s.events if e["phase"] == "built")


def blocks(raw: str) -> list[str]:
    """The stream's blocks (each ends with a blank line)."""
    assert raw.endswith("\n\n"), raw[-50:]
    return raw[:-2].split("\n\n")


async def test_a_launch_streams_every_phase_in_order(portal):
    resp = await portal.fetch(f"/build/git/{SPEC}", accept="text/event-stream")
    assert resp.code == 200
    assert resp.headers["Content-Type"] == "text/event-stream"
    assert resp.headers["Cache-Control"] == "no-cache"
    assert resp.headers["Access-Control-Allow-Origin"] == CORS_ORIGIN
    s = await portal.stream(f"/build/git/{SPEC}")
    assert s.phases == ["waiting", "fetching", "building", "built", "launching", "ready"]
    assert s.events[1]["ref"] == SHA
    *middle, last = blocks(s.raw)
    assert all(b.startswith("data: ") and "\n" not in b for b in middle), middle
    assert last.startswith(f"retry: {TERMINAL_RETRY_MS}\ndata: ")  # only the terminal event sets it
    image = built_image(s)
    (build,) = portal.builder.requests[-1:]
    assert build.image.full == image and build.resolved_ref == SHA and build.repo_url == REPO
    (launch,) = portal.launcher.requests[-1:]
    assert launch.image.full == image and launch.mounts == () and launch.environment == ()
    ready = s.last
    assert ready["url"] == "http://127.0.0.1:8000/user/pb-1/" and ready["token"] == "t0k"
    assert ready["binder_launch_host"] == f"{PUBLIC_URL}/"
    assert ready["binder_request"] == f"v2/git/{SPEC}"


async def test_an_image_in_the_registry_is_launched_without_building(portal):
    first = await portal.stream(f"/build/git/{SPEC}")
    name, tag = built_image(first).split("/", 1)[1].rsplit(":", 1)
    portal.registry_images[f"{name}:{tag}"] = "sha256:" + "1" * 64
    s = await portal.stream(f"/build/git/{SPEC}")
    assert s.phases == ["waiting", "fetching", "built", "launching", "ready"]
    assert s.events[2]["message"] == "Found built image, launching...\n"
    assert len(portal.builder.requests) == 1 and len(portal.launcher.requests) == 2


async def test_build_only_ends_with_the_image_and_launches_nothing(portal):
    s = await portal.stream(f"/build/git/{SPEC}?build_only=true")
    assert s.phases == ["waiting", "fetching", "building", "built", "ready"]
    assert s.last["imageName"] == built_image(s) and "url" not in s.last
    assert portal.launcher.requests == []


async def test_a_failed_build_carries_its_status_and_a_link_to_its_log(portal):
    portal.builder.script = [
        Event("building", "Collecting numpy==0.0.0\n"),
        Event("failed", "requirements.txt: numpy==0.0.0 was not found; check its version."),
    ]
    s = await portal.stream(f"/build/git/{SPEC}")
    assert s.phases == ["waiting", "fetching", "building", "failed"]
    assert s.last["status_code"] == 500 and "numpy==0.0.0 was not found" in s.last["message"]
    assert s.last["build_log_url"] == f"{PUBLIC_URL}/build-logs/{quote(s.last['build_log'], safe='@')}"
    assert blocks(s.raw)[-1].startswith(f"retry: {TERMINAL_RETRY_MS}\n")
    assert portal.launcher.requests == []
    log = await portal.fetch("/build-logs/" + quote(s.last["build_log"], safe="@"))
    assert log.code == 200 and log.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert "Collecting numpy==0.0.0" in log.body.decode()


async def test_a_status_the_builder_gives_is_kept(portal):
    portal.builder.script = [Event("failed", "R is not available here.", {"status_code": 422})]
    s = await portal.stream(f"/build/git/{SPEC}")
    assert s.last["phase"] == "failed" and s.last["status_code"] == 422


async def test_a_builder_that_crashes_ends_the_stream_with_a_failed_event(portal):
    portal.builder.script = [Event("building", "step\n"), RuntimeError("secret detail /srv/x")]
    s = await portal.stream(f"/build/git/{SPEC}")
    assert s.last["phase"] == "failed" and s.last["status_code"] == 500
    assert "RuntimeError" in s.last["message"] and "secret detail" not in s.raw


async def test_a_failed_launch_keeps_the_launchers_status(portal):
    portal.launcher.script = [
        Event("launching", "Starting\n"),
        Event("failed", "No room for another server; try again in a few minutes.", {"status_code": 503}),
    ]
    s = await portal.stream(f"/build/git/{SPEC}")
    assert s.phases[-2:] == ["launching", "failed"] and s.last["status_code"] == 503
    assert "build_log_url" not in s.last


async def test_a_launcher_that_crashes_gets_a_generic_message(portal):
    portal.launcher.script = [Event("launching", "Starting\n"), RuntimeError("token=abc at 10.0.0.5")]
    s = await portal.stream(f"/build/git/{SPEC}")
    assert s.last == {
        "phase": "failed",
        "message": "Something went wrong on our side; try again in a moment.",
        "status_code": 500,
    }
    assert "token=abc" not in s.raw and "Traceback" not in s.raw


async def test_a_stream_that_ends_without_a_result_says_so(portal):
    portal.launcher.script = [Event("launching", "Starting\n")]
    s = await portal.stream(f"/build/git/{SPEC}")
    assert s.phases[-2:] == ["launching", "failed"]
    assert s.last["message"] == "The request ended without a result; try again."
    assert s.last["status_code"] == 500


async def test_an_unreachable_registry_fails_the_stream_with_503(tmp_path):
    async with web_portal(tmp_path, {"Registry": {"url": f"http://127.0.0.1:{free_port()}"}}) as portal:
        s = await portal.stream(f"/build/git/{SPEC}")
        assert s.phases == ["waiting", "fetching", "failed"]
        assert s.last["status_code"] == 503 and s.last["reason"] == "registry_unreachable"
        assert portal.builder.requests == []


async def test_a_branch_is_resolved_and_the_persistent_link_names_the_commit(tmp_path):
    bare, commit = bare_repo(tmp_path / "git")
    url = f"file://{bare}"
    async with web_portal(tmp_path, {"GitProvider": {"allow_local": True}}) as portal:
        s = await portal.stream(f"/build/git/{quote(url, safe='')}/main")
        assert s.phases[-1] == "ready", s.raw
        sha = s.events[1]["ref"]
        assert sha == commit and portal.builder.requests[0].resolved_ref == sha
        assert portal.builder.requests[0].unresolved_ref == "main"
        assert s.last["binder_request"] == f"v2/git/{quote(url, safe='')}/main"
        assert s.last["binder_persistent_request"] == f"v2/git/{quote(url, safe='')}/{sha}"
        missing = await portal.stream(f"/build/git/{quote(url, safe='')}/no-such-branch")
        assert missing.phases == ["waiting", "failed"]
        assert missing.last["status_code"] == 404 and missing.last["reason"] == "unknown_ref"
        assert len(portal.builder.requests) == 1


async def test_identical_requests_share_one_build(portal):
    portal.builder.gate = asyncio.Event()
    first = asyncio.ensure_future(portal.stream(f"/build/git/{SPEC}"))
    await portal.builder.started.wait()
    second = asyncio.ensure_future(portal.stream(f"/build/git/{SPEC}"))
    (job,) = portal.pipeline.manager.jobs.values()
    await eventually(lambda: len(job.listeners) == 2)  # both requests follow the one build
    portal.builder.gate.set()
    a, b = await asyncio.gather(first, second)
    assert a.last["phase"] == b.last["phase"] == "ready"
    assert len(portal.builder.requests) == 1 and len(portal.launcher.requests) == 2
    assert "The same image is already being built; following that build.\n" in [
        e.get("message") for e in b.events
    ]


async def test_a_repository_over_its_build_quota_gets_429_in_the_stream(tmp_path):
    async with web_portal(tmp_path, {"BuildManager": {"builds_per_repo": 1}}) as portal:
        portal.builder.gate = asyncio.Event()
        first = asyncio.ensure_future(portal.stream(f"/build/git/{SPEC}"))
        await portal.builder.started.wait()
        other = await portal.stream(f"/build/git/{git_spec(ref='f' * 40)}")
        assert other.last["phase"] == "failed" and other.last["status_code"] == 429
        assert other.last["reason"] == "build_quota"
        portal.builder.gate.set()
        assert (await first).last["phase"] == "ready"


async def test_a_build_waiting_for_a_slot_streams_its_place_in_the_queue(tmp_path):
    async with web_portal(tmp_path, {"BuildManager": {"concurrent_builds": 1}}) as portal:
        portal.builder.gate = asyncio.Event()
        first = asyncio.ensure_future(portal.stream(f"/build/git/{SPEC}"))
        await portal.builder.started.wait()
        second = asyncio.ensure_future(portal.stream(f"/build/git/{git_spec(ref='f' * 40)}"))
        await eventually(lambda: portal.pipeline.manager.queued == 1)
        portal.builder.gate.set()
        a, b = await asyncio.gather(first, second)
        assert a.phases == ["waiting", "fetching", "building", "built", "launching", "ready"]
        queued = [e for e in b.events if e.get("position")]
        assert queued == [
            {
                "phase": "waiting",
                "message": "Waiting for a build slot: position 1 of 1\n",
                "position": 1,
                "queue_length": 1,
            }
        ]
        assert b.phases[b.events.index(queued[0]) + 1 :] == ["building", "built", "launching", "ready"]


async def test_an_idle_stream_gets_keepalive_comments(tmp_path):
    async with web_portal(tmp_path, {"ServeApp": {"keepalive_interval": 0.05}}) as portal:
        portal.builder.gate = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.call_later(0.4, portal.builder.gate.set)
        s = await portal.stream(f"/build/git/{SPEC}")
        assert s.last["phase"] == "ready"
        assert ":keepalive\n\n" in s.raw
        assert [b for b in blocks(s.raw) if b.startswith(":")] == [":keepalive"] * s.raw.count(":keepalive")


async def test_a_doi_launch_mounts_its_datasets_read_only(portal):
    folder = portal.add_dataset("local:scan-1")
    portal.add_publication(DOI, "local:scan-1")
    s = await portal.stream(f"/build/doi/{DOI}")
    assert s.phases[-1] == "ready", s.raw
    (build,) = portal.builder.requests
    assert build.provider == "doi" and build.repo_url == REPO and build.resolved_ref == SHA
    (launch,) = portal.launcher.requests
    data = [m for m in launch.mounts if m.host_path == str(folder)]
    assert len(data) == 1 and data[0].read_only and data[0].container_path.startswith("/data/")
    assert all(m.read_only for m in launch.mounts)
    assert ("PANBINDER_DATA", "/data") in launch.environment
    git = await portal.stream(f"/build/git/{SPEC}")  # the very image a launch by URL uses
    assert built_image(git) == built_image(s)


async def test_the_launch_page_points_its_script_at_the_stream(portal):
    resp = await portal.fetch(f"/v2/git/{SPEC}?labpath=fig.ipynb", accept="text/html")
    assert resp.code == 200
    text = resp.body.decode()
    assert f'data-stream="/build/git/{SPEC}?labpath=fig.ipynb' in text
    assert 'data-labpath="fig.ipynb"' in text
    assert portal.builder.requests == [] and portal.launcher.requests == []
