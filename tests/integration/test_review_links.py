"""Review links, for real: a link made with the command line launches the embargoed publication in
an anonymous server that reads the dataset; an expired link and a revoked one get a 403 and start
no container; the servers launched through a link stop when it is revoked (at once, by the
command) or expires (by the portal's sweep), and cannot be started again; owners make and revoke
links over the API and see the button on the page."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import docker
import pytest
from tornado.httpclient import AsyncHTTPClient

from panbinder.data_mounts.review_models import ReviewLink
from panbinder.launcher.base import server_user
from tests.support import hub_users, read_stream, run_code

from .conftest import DOI_EMBARGO, DOI_OPEN, PREFIX, REVIEW_SWEEP, catalogue_of, cli

pytestmark = [pytest.mark.docker, pytest.mark.hub, pytest.mark.slow]

READ = (
    "import h5py, json, os\n"
    "ds = json.load(open('/data/MANIFEST.json'))['datasets'][0]\n"
    "with h5py.File(os.path.join(ds['path'], 'scan.nxs')) as f:\n"
    "    print(int(f['/entry/data/counts'][7]), ds['pid'], sorted(os.listdir('/data')) == sorted(\n"
    "        ['MANIFEST.json', os.path.basename(ds['path'])]))\n"
)


async def get(url: str, token: str = "", accept: str = "application/json", **kw):
    headers = {"Accept": accept, **({"Authorization": f"token {token}"} if token else {})}
    return await AsyncHTTPClient().fetch(url, headers=headers, raise_error=False, **kw)


def containers() -> set[str]:
    client = docker.from_env()
    try:
        return {c.name for c in client.containers.list(all=True, filters={"name": PREFIX})}
    finally:
        client.close()


def share(portal, *args: str) -> tuple[str, str]:
    """(the link's token, its number) from ``publications share``."""
    out = cli(portal, "publications", "share", DOI_EMBARGO, *args).stdout.splitlines()
    assert out[0].startswith(f"{portal.url}/v2/doi/{DOI_EMBARGO}?review_token="), out
    number = out[1].split()[2].rstrip(",")
    return parse_qs(urlsplit(out[0]).query)["review_token"][0], number


async def assert_refused(portal, token: str, words: str) -> None:
    """The launch page and the event stream answer 403 saying ``words``; no container starts."""
    before = containers()
    page = await get(f"{portal.url}/v2/doi/{DOI_EMBARGO}?review_token={token}", accept="text/html")
    stream = await get(f"{portal.url}/build/doi/{DOI_EMBARGO}?review_token={token}")
    assert page.code == stream.code == 403, (page.code, stream.code)
    assert words in page.body.decode() and words in json.loads(stream.body)["message"]
    assert not containers() - before  # none new (one being removed meanwhile may go)


async def launch(portal, token: str) -> dict:
    """The ready event of a launch through the review link ``token``."""
    s = await read_stream(f"{portal.url}/build/doi/{DOI_EMBARGO}?review_token={token}")
    assert s.last["phase"] == "ready", s.log()
    return s.last


async def assert_gone(portal, ready: dict, within: float) -> None:
    """The server of ``ready`` and its Hub user are gone within ``within`` seconds: its URL no
    longer reaches it, and its token cannot start it again (the user went with it)."""
    user = server_user(ready["url"])
    deadline = time.monotonic() + within
    for _ in range(int(within / 0.2) + 1):
        if user not in hub_users(portal) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert user not in hub_users(portal), f"the server of {user} still runs after {within} s"
    status = await get(f"{ready['url']}api/status", ready["token"], follow_redirects=False)
    assert status.code != 200
    hub = f"http://127.0.0.1:{portal.hub_port}/hub/api/users/{user}/server"
    again = await get(hub, ready["token"], method="POST", body=json.dumps({"image": ready["image"]}))
    assert again.code in (403, 404), (again.code, again.body)


async def test_a_review_link_launches_until_it_expires_or_is_revoked(portal, publications):
    token, number = share(portal, "--expires=30d", "--note=Reviewers of manuscript X")
    short, _ = share(portal, "--expires=2s")  # expires during this test
    made = time.monotonic()
    page = await get(f"{portal.url}/v2/doi/{DOI_EMBARGO}?review_token={token}", accept="text/html")
    assert page.code == 200
    assert f"review_token={token}" in page.body.decode()  # the page's stream carries the link
    s = await read_stream(f"{portal.url}/build/doi/{DOI_EMBARGO}?review_token={token}")
    assert s.last["phase"] == "ready", s.log()
    out = await run_code(s.last["url"], s.last["token"], READ)
    assert out.split() == ["35", "local:embargoed-scan", "True"]  # only its dataset and the manifest
    # the link opens this publication only, and nothing else of the dataset outside the launch
    other = await get(f"{portal.url}/build/doi/{DOI_OPEN}?review_token={token}")
    assert other.code == 403 and "another publication" in json.loads(other.body)["message"]
    files = await get(f"{portal.url}/api/datasets/local:embargoed-scan?review_token={token}")
    assert json.loads(files.body)["files"] is None
    listing = cli(portal, "publications", "shares", DOI_EMBARGO).stdout
    assert f"{number}\tactive" in listing and "1 uses" in listing and "Reviewers of manuscript X" in listing

    await asyncio.sleep(max(0.0, 2.5 - (time.monotonic() - made)))
    await assert_refused(portal, short, "expired")
    # revoking from the command line stops the link's server at once, through the Hub API
    out = cli(portal, "publications", "unshare", number).stdout
    assert "1 server launched through it stopped" in out, out
    await assert_gone(portal, s.last, within=0.0)
    await assert_refused(portal, token, "withdrawn")
    assert f"{number}\trevoked" in cli(portal, "publications", "shares", DOI_EMBARGO).stdout


async def test_the_server_of_an_expired_review_link_stops_within_the_sweep(
    portal, publications, storage_root
):
    token, number = share(portal, "--expires=1h")
    ready = await launch(portal, token)
    assert server_user(ready["url"]) in hub_users(portal)
    cat = catalogue_of(portal, storage_root)
    try:  # the link expires now (the catalogue's expiry counts, as the signed one does)
        with cat.session() as session:
            session.get(ReviewLink, int(number)).expires = datetime.now(UTC) - timedelta(seconds=1)
    finally:
        cat.close()
    # the next sweep (every REVIEW_SWEEP seconds), then the removal (about 1 s; slack for a busy machine)
    await assert_gone(portal, ready, within=REVIEW_SWEEP + 10.0)
    await assert_refused(portal, token, "expired")


async def test_owners_manage_review_links_on_the_api_and_the_page(portal, publications):
    alice = portal.user_token("alice")  # in the proposal's group: an owner of the embargoed data
    api = f"{portal.url}/api/review-links"
    body = json.dumps({"doi": DOI_EMBARGO, "expires": "7d", "note": "<b>R2</b>"})
    made = await get(api, alice, method="POST", body=body)
    assert made.code == 201, made.body
    link = json.loads(made.body)
    assert "review_token=" in link["url"] and link["review_link"]["note"] == "<b>R2</b>"
    anonymous = await get(api, method="POST", body=body)
    assert anonymous.code == 403 and "owners" in json.loads(anonymous.body)["message"]
    token = parse_qs(urlsplit(link["url"]).query)["review_token"][0]
    stolen = await get(f"{api}?doi={DOI_EMBARGO}&review_token={token}")  # a reviewer is no owner
    assert stolen.code == 403
    page = (await get(f"{portal.url}/publications/{DOI_EMBARGO}", alice, accept="text/html")).body.decode()
    assert 'id="share"' in page and "Make a review link" in page
    assert (
        'id="share"'
        not in (await get(f"{portal.url}/publications/{DOI_EMBARGO}", accept="text/html")).body.decode()
    )
    listing = await get(f"{portal.url}/review-links?doi={DOI_EMBARGO}", alice, accept="text/html")
    assert "&lt;b&gt;R2&lt;/b&gt;" in listing.body.decode()  # escaped where rendered
    gone = await get(f"{api}/{link['review_link']['id']}", alice, method="DELETE")
    assert gone.code == 200 and json.loads(gone.body)["review_link"]["status"] == "revoked"
    assert json.loads(gone.body)["stopped_servers"] == 0  # it launched nothing
    refused = await get(f"{portal.url}/build/doi/{DOI_EMBARGO}?review_token={token}")
    assert refused.code == 403
