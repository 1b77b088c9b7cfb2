"""Review links, for real: a link made with the command line launches the embargoed publication in
an anonymous server that reads the dataset; an expired link and a revoked one get a 403 and start
no container; owners make and revoke links over the API and see the button on the page."""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import parse_qs, urlsplit

import docker
import pytest
from tornado.httpclient import AsyncHTTPClient

from tests.support import read_stream, run_code

from .conftest import DOI_EMBARGO, DOI_OPEN, PREFIX, cli

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
    assert containers() == before


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
    cli(portal, "publications", "unshare", number)
    await assert_refused(portal, token, "withdrawn")
    assert f"{number}\trevoked" in cli(portal, "publications", "shares", DOI_EMBARGO).stdout


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
    refused = await get(f"{portal.url}/build/doi/{DOI_EMBARGO}?review_token={token}")
    assert refused.code == 403
