"""The pipeline (resolve, look up, build, launch) called as the CLI calls it, and a reader who
leaves: nothing is launched after the client is gone, and a launch under way is closed.

The components are the portal's own (tests/web_app.py), with a recording builder and launcher.
"""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY

from panbinder.data_mounts.review_grants import ReviewGrant
from panbinder.events import Event
from panbinder.pipeline import run_pipeline
from tests.web_app import SHA, eventually, git_spec, web_portal

SPEC = git_spec()


@pytest.fixture
async def portal(tmp_path):
    async with web_portal(tmp_path) as p:
        yield p


def requests_counted(outcome: str) -> float:
    labels = {"provider": "git", "outcome": outcome}
    return REGISTRY.get_sample_value("panbinder_build_requests_total", labels) or 0.0


async def collect(
    portal, *, stop_at: str = "", abandoned: asyncio.Event | None = None, **kwargs
) -> list[Event]:
    """Run the pipeline for SPEC; set ``abandoned`` once an event of phase ``stop_at`` arrives."""
    events = []
    provider = portal.provider("git", SPEC)
    async for event in run_pipeline(portal.pipeline, provider, abandoned=abandoned, **kwargs):
        events.append(event)
        if event.phase == stop_at and abandoned is not None:
            abandoned.set()
    return events


async def test_build_only_as_the_build_command_runs_it(portal):
    events = await collect(portal, build_only=True)
    assert [e.phase for e in events] == ["waiting", "fetching", "building", "built", "ready"]
    assert events[-1].extra["imageName"] == portal.builder.requests[0].image.full
    assert portal.builder.requests[0].resolved_ref == SHA and portal.launcher.requests == []


async def test_a_banned_repository_is_one_failed_event_with_403(tmp_path):
    async with web_portal(
        tmp_path, {"SpecPolicy": {"allowed_specs": [r"https://git\.facility\.eu/"]}}
    ) as portal:
        before = requests_counted("failed")
        events = await collect(portal)
        assert [e.phase for e in events] == ["failed"]
        assert events[0].extra == {"reason": "banned_spec", "status_code": 403}
        assert requests_counted("failed") == before + 1
        assert portal.builder.requests == [] and portal.launcher.requests == []


async def test_a_client_that_leaves_during_the_build_gets_no_launch(portal):
    portal.builder.gate = asyncio.Event()
    before = requests_counted("abandoned")
    events = await asyncio.wait_for(collect(portal, stop_at="building", abandoned=asyncio.Event()), 5)
    assert [e.phase for e in events] == ["waiting", "fetching", "building"]
    assert portal.launcher.requests == [] and requests_counted("abandoned") == before + 1
    portal.builder.gate.set()


async def test_a_client_that_leaves_during_the_launch_closes_it(portal):
    portal.launcher.gate = asyncio.Event()  # the launch waits before 'ready'
    events = await asyncio.wait_for(collect(portal, stop_at="launching", abandoned=asyncio.Event()), 5)
    assert events[-1].phase == "launching"
    assert len(portal.launcher.requests) == 1 and portal.launcher.closed == 1


async def test_closing_the_event_stream_closes_the_launch(portal):
    portal.launcher.gate = asyncio.Event()
    host, port = portal.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET /build/git/{SPEC} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    seen = b""
    while b'"phase": "launching"' not in seen:
        chunk = await asyncio.wait_for(reader.read(4096), 5)
        assert chunk, seen
        seen += chunk
    writer.close()
    await eventually(lambda: portal.launcher.closed == 1)


async def test_the_owner_is_the_launch_workspace_only_when_the_launcher_mounts_workspaces(portal):
    await collect(portal, owner="alice")  # the recording launcher has no workspaces
    assert portal.launcher.requests[-1].workspace == ""  # so the launch may take a pooled server
    portal.launcher.workspace_path = lambda owner: "/home/jovyan/work" if owner else ""
    await collect(portal, owner="alice")
    assert portal.launcher.requests[-1].workspace == "alice"
    # through a review link: never a workspace next to the data the link opens
    grant = ReviewGrant(link_id=1, doi="10.5555/x", pids=(), expires=2**40)
    await collect(portal, owner="alice", review=grant)
    assert portal.launcher.requests[-1].workspace == ""
