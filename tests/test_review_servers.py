"""Servers of review links stop when their link ends: which servers are selected (pure), their
record on a real SQLite catalogue, the hand-out of a review launch, and the revocation and
sweep with a launcher that records the users it is asked to remove (the Hub itself: tests/integration/test_review_links.py)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from panbinder.data_mounts.catalogue import Catalogue
from panbinder.data_mounts.models import Dataset, Publication
from panbinder.data_mounts.review_grants import ReviewGrant, link_ended, select_ended
from panbinder.data_mounts.review_links import ReviewLinks
from panbinder.data_mounts.review_models import ReviewLinkServer
from panbinder.events import Event
from panbinder.launcher import Launcher
from panbinder.pipeline import track_review_server
from panbinder.review_cli import servers_note
from panbinder.review_servers import ReviewServers

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
DOI = "10.5555/paper"
HUB = "http://127.0.0.1:8000/user"


def test_a_link_ends_when_revoked_or_expired():
    later, earlier = NOW + timedelta(seconds=1), NOW - timedelta(seconds=1)
    assert not link_ended(None, later, NOW)
    assert link_ended(None, NOW, NOW)  # the expiry itself is the end
    assert link_ended(None, earlier, NOW)
    assert link_ended(earlier, later, NOW)


def test_only_the_servers_of_ended_links_are_selected_each_once():
    later, earlier = NOW + timedelta(days=1), NOW - timedelta(days=1)
    rows = [
        ("pb-live", None, later),
        ("pb-revoked", earlier, later),
        ("pb-expired", None, earlier),
        ("pb-revoked", earlier, later),  # the same user twice: stopped once
        ("pb-both", earlier, earlier),
    ]
    assert select_ended(rows, NOW) == ["pb-revoked", "pb-expired", "pb-both"]
    assert select_ended([], NOW) == []


def test_the_cli_says_what_happened_to_the_servers():
    assert servers_note(0, 0, 30) == "0 servers launched through it stopped"
    assert servers_note(1, 0, 30) == "1 server launched through it stopped"
    note = servers_note(1, 2, 30)
    assert "2 could not be stopped now" in note and "stops them within 30 s" in note
    assert "unshare' again" in servers_note(0, 1, 0)


class RemovingLauncher(Launcher):
    """Records the users it is asked to remove; those in ``failing`` are not removed."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.removed: list[str] = []
        self.failing: set[str] = set()

    async def delete_user(self, user: str) -> bool:
        if user in self.failing:
            return False
        self.removed.append(user)
        return True


@pytest.fixture
def cat(tmp_path: Path):
    c = Catalogue(db_url=f"sqlite:///{tmp_path}/c.sqlite", storage_roots=[str(tmp_path)])
    c.start()
    with c.session() as s:
        locked = Dataset(pid="p:locked", groups=["proposal-7"], release_date=NOW + timedelta(days=300))
        s.add(Publication(doi=DOI, repo_url="r", ref="main", resolved_sha="a" * 40, datasets=[locked]))
    yield c
    c.close()


def kept(cat: Catalogue) -> list[str]:
    with cat.session() as s:
        return sorted(s.scalars(select(ReviewLinkServer.hub_user)))


def test_the_record_keeps_a_server_until_it_is_forgotten(cat):
    links = ReviewLinks(signing_key="k" * 64)
    _, live = links.create(cat, DOI, "30d")
    _, short = links.create(cat, DOI, "1h")
    links.record_server(cat, live["id"], "pb-a")
    links.record_server(cat, live["id"], "pb-a")  # recorded twice: kept once
    links.record_server(cat, short["id"], "pb-b")
    assert kept(cat) == ["pb-a", "pb-b"]
    assert links.ended_servers(cat) == []
    assert links.ended_servers(cat, now=datetime.now(UTC) + timedelta(hours=2)) == ["pb-b"]
    links.revoke(cat, live["id"])
    assert links.ended_servers(cat) == ["pb-a"]
    assert links.ended_servers(cat, link_id=short["id"]) == []
    links.forget_servers(cat, ["pb-a"])
    assert kept(cat) == ["pb-b"]


async def test_revoking_stops_the_servers_of_that_link_only(cat):
    launcher = RemovingLauncher()
    servers = ReviewServers(catalogue=cat, launcher=launcher)
    links = ReviewLinks(signing_key="k" * 64)
    _, one = links.create(cat, DOI, "30d")
    _, two = links.create(cat, DOI, "30d")
    assert await servers.record(one["id"], f"{HUB}/pb-one/")
    assert await servers.record(two["id"], f"{HUB}/pb-two/")
    link, stopped, left = await servers.revoke(one["id"])
    assert link["status"] == "revoked" and stopped == ["pb-one"] and left == []
    assert launcher.removed == ["pb-one"] and kept(cat) == ["pb-two"]
    # a server whose link ended while it started is stopped at once, not handed out
    assert not await servers.record(one["id"], f"{HUB}/pb-late/")
    assert launcher.removed == ["pb-one", "pb-late"]


async def test_a_server_the_hub_did_not_remove_is_kept_for_the_next_sweep(cat):
    launcher = RemovingLauncher()
    servers = ReviewServers(catalogue=cat, launcher=launcher, interval=0.05)
    links = ReviewLinks(signing_key="k" * 64)
    _, link = links.create(cat, DOI, "30d")
    await servers.record(link["id"], f"{HUB}/pb-stuck/")
    launcher.failing.add("pb-stuck")
    _, stopped, left = await servers.revoke(link["id"])
    assert stopped == [] and left == ["pb-stuck"] and kept(cat) == ["pb-stuck"]
    launcher.failing.clear()  # the Hub answers again: the sweep stops it
    servers.start()
    try:
        for _ in range(100):
            if not kept(cat):
                break
            await asyncio.sleep(0.02)
    finally:
        await servers.stop()
    assert launcher.removed == ["pb-stuck"] and kept(cat) == []


async def test_the_sweep_stops_the_servers_of_expired_links(cat):
    launcher = RemovingLauncher()
    servers = ReviewServers(catalogue=cat, launcher=launcher)
    links = ReviewLinks(signing_key="k" * 64)
    _, short = links.create(cat, DOI, "1h")
    _, long = links.create(cat, DOI, "30d")
    await servers.record(short["id"], f"{HUB}/pb-short/")
    await servers.record(long["id"], f"{HUB}/pb-long/")
    assert await servers.stop_ended() == ([], [])
    later = datetime.now(UTC) + timedelta(hours=2)
    assert await servers.stop_ended(now=later) == (["pb-short"], [])
    assert launcher.removed == ["pb-short"] and kept(cat) == ["pb-long"]


async def test_a_review_launch_is_handed_out_only_once_its_server_is_recorded(cat):
    launcher = RemovingLauncher()
    servers = ReviewServers(catalogue=cat, launcher=launcher)
    links = ReviewLinks(signing_key="k" * 64)
    _, link = links.create(cat, DOI, "30d")
    grant = ReviewGrant(link["id"], DOI, ("p:locked",), 0)
    ready = Event("ready", "ready\n", {"url": f"{HUB}/pb-ok/", "token": "t"})
    ctx = SimpleNamespace(review_servers=servers, launcher=launcher)
    assert await track_review_server(ctx, grant, ready) is ready and kept(cat) == ["pb-ok"]
    # the link ended while the server started: removed, and the launch fails
    links.revoke(cat, link["id"])
    late = Event("ready", "ready\n", {"url": f"{HUB}/pb-late/", "token": "t"})
    failed = await track_review_server(ctx, grant, late)
    assert failed.phase == "failed" and failed.extra["status_code"] == 403
    assert "pb-late" in launcher.removed
    # nothing to record it in: removed too (a server nobody could stop later is not handed out)
    lost = Event("ready", "ready\n", {"url": f"{HUB}/pb-lost/", "token": "t"})
    failed = await track_review_server(SimpleNamespace(review_servers=None, launcher=launcher), grant, lost)
    assert failed.phase == "failed" and launcher.removed[-1] == "pb-lost"
