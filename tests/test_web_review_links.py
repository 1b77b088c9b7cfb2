"""Review links through the portal's HTTP side (in-process portal, recording launcher): the launch
it allows and the ones it refuses, the owners' API and page, and the escaping of notes."""

from __future__ import annotations

import json
import logging
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import pytest_asyncio

from tests.web_app import web_portal

pytestmark = pytest.mark.asyncio(loop_scope="module")

DOI, OTHER = "10.5555/reviewed", "10.5555/other"
ALICE = "alice-token"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def portal(tmp_path_factory):
    async with web_portal(tmp_path_factory.mktemp("review")) as p:
        p.add_dataset("local:locked", public=False, groups=("proposal-42",))
        p.add_dataset("local:other", public=False, groups=("proposal-42",))
        p.add_publication(DOI, "local:locked")
        p.add_publication(OTHER, "local:other")
        p.hub_users[ALICE] = {"name": "alice", "groups": ["proposal-42"]}
        p.hub_users["bob-token"] = {"name": "bob", "groups": ["proposal-7"]}
        yield p


async def make_link(portal, note: str = "") -> tuple[str, dict]:
    body = json.dumps({"doi": DOI, "expires": "7d", "note": note})
    resp = await portal.fetch("/api/review-links", token=ALICE, method="POST", body=body)
    assert resp.code == 201, resp.body
    data = json.loads(resp.body)
    return parse_qs(urlsplit(data["url"]).query)["review_token"][0], data


async def test_a_review_link_launches_with_the_embargoed_dataset_until_revoked(portal):
    token, data = await make_link(portal)
    assert data["url"].startswith(f"https://binder.facility.example/v2/doi/{DOI}?review_token=rv1.")
    assert (await portal.fetch(f"/build/doi/{DOI}")).code == 403  # without the link
    page = await portal.fetch(f"/v2/doi/{DOI}?review_token={token}", accept="text/html")
    assert page.code == 200 and f"review_token={token}" in page.body.decode()
    before = len(portal.launcher.requests)
    s = await portal.stream(f"/build/doi/{DOI}?review_token={token}")
    assert s.code == 200 and s.events[-1]["phase"] == "ready", s.raw
    request = portal.launcher.requests[before]
    assert sorted(m.container_path for m in request.mounts)[1].startswith("/data/local-locked")
    assert all(m.read_only for m in request.mounts)
    listed = json.loads((await portal.fetch(f"/api/review-links?doi={DOI}", token=ALICE)).body)
    assert listed["review_links"][-1]["uses"] == 1  # the stream, not the page
    assert token not in json.dumps(listed)

    for path in (
        f"/build/doi/{OTHER}",
        f"/v2/doi/{OTHER}",
        f"/build/git/{quote('git://127.0.0.1:9/x', safe='')}/main",
    ):
        resp = await portal.fetch(f"{path}?review_token={token}")
        assert resp.code == 403, (path, resp.code)
    deleted = list(portal.launcher.deleted)
    gone = await portal.fetch(f"/api/review-links/{data['review_link']['id']}", token=ALICE, method="DELETE")
    assert gone.code == 200
    # the server launched through the link is stopped with it
    answer = json.loads(gone.body)
    assert answer["stopped_servers"] == 1 and answer["servers_left"] == 0
    assert portal.launcher.deleted == [*deleted, "pb-1"]
    for path in (f"/build/doi/{DOI}", f"/v2/doi/{DOI}"):
        resp = await portal.fetch(f"{path}?review_token={token}")
        assert resp.code == 403 and json.loads(resp.body)["reason"] == "review_revoked"
    assert len(portal.launcher.requests) == before + 1


async def test_the_access_log_holds_no_review_token(portal, caplog):
    token, _ = await make_link(portal)
    caplog.set_level(logging.INFO, logger="tornado.access")
    await portal.fetch(f"/build/doi/{OTHER}?review_token={token}")
    lines = [r.getMessage() for r in caplog.records if r.name == "tornado.access"]
    assert any(f"/build/doi/{OTHER}?review_token=[secret]" in line for line in lines), lines
    assert not any(token.split(".")[2] in line for line in lines)


async def test_only_owners_manage_links_and_notes_are_escaped(portal):
    body = json.dumps({"doi": DOI, "expires": "7d"})
    for token in ("", "bob-token"):
        resp = await portal.fetch("/api/review-links", token=token, method="POST", body=body)
        assert resp.code == 403 and json.loads(resp.body)["reason"] == "not_owner"
    for bad in ("[]", "{", json.dumps({"doi": DOI, "expires": 30})):
        resp = await portal.fetch("/api/review-links", token=ALICE, method="POST", body=bad)
        assert resp.code == 400, bad
    for number in ("abc", "9" * 30, "²"):
        resp = await portal.fetch(f"/api/review-links/{quote(number)}", token=ALICE, method="DELETE")
        assert resp.code == 404 and json.loads(resp.body)["reason"] == "unknown_review_link"
    token, _ = await make_link(portal, note='<script>alert("x")</script>')
    page = (await portal.fetch(f"/review-links?doi={DOI}", token=ALICE, accept="text/html")).body.decode()
    assert "<script>alert" not in page and "&lt;script&gt;alert" in page
    reviewer = await portal.fetch(f"/review-links?doi={DOI}&review_token={token}", accept="text/html")
    assert reviewer.code == 403
    card = await portal.fetch(f"/publications/{DOI}", token=ALICE, accept="text/html")
    assert 'id="share"' in card.body.decode()
    for token in ("", "bob-token"):
        card = await portal.fetch(f"/publications/{DOI}", token=token, accept="text/html")
        assert 'id="share"' not in card.body.decode()


async def test_a_launch_through_a_review_link_mounts_no_workspace_even_signed_in(portal):
    token, _ = await make_link(portal)
    launcher = portal.launcher
    launcher.workspace_path = lambda owner: "/home/jovyan/work" if owner else ""  # a back-end with workspaces
    try:
        s = await portal.stream(f"/build/doi/{DOI}?review_token={token}", token="bob-token")
        assert s.code == 200 and s.events[-1]["phase"] == "ready", s.raw
        assert launcher.requests[-1].workspace == ""  # bob may not keep or register the embargoed data
        s = await portal.stream(f"/build/doi/{DOI}", token=ALICE)  # by her own rights: her workspace
        assert s.code == 200 and s.events[-1]["phase"] == "ready", s.raw
        assert launcher.requests[-1].workspace == "alice"
    finally:
        del launcher.workspace_path
