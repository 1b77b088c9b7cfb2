"""Launch by DOI: the pinned repository commit with the publication's datasets mounted
read-only under /data, with embargo rules; catalogue pages, API and preview."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from tornado.httpclient import AsyncHTTPClient

from tests.support import read_stream, run_code

from .conftest import DOI_EMBARGO, DOI_OPEN, DOI_RELEASED, cli, write_scan

pytestmark = [pytest.mark.docker, pytest.mark.hub, pytest.mark.slow]

READ = (
    "import h5py, json, os\n"
    "m = json.load(open('/data/MANIFEST.json'))\n"
    "ds = m['datasets'][0]\n"
    "with h5py.File(os.path.join(ds['path'], 'scan.nxs')) as f:\n"
    "    print(int(f['/entry/data/counts'][7]), os.environ['PANBINDER_DATA'], ds['pid'])\n"
)


async def get(url: str, token: str = "", accept: str = "application/json"):
    headers = {"Accept": accept}
    if token:
        headers["Authorization"] = f"token {token}"
    return await AsyncHTTPClient().fetch(url, headers=headers, raise_error=False)


async def test_launch_by_doi_mounts_datasets_read_only(portal, publications):
    s = await read_stream(f"{portal.url}/build/doi/{DOI_OPEN}")
    assert s.last["phase"] == "ready", s.log()
    assert s.last["binder_persistent_request"] == f"v2/doi/{DOI_OPEN}"
    assert "/panbinder/v1-git-" in s.last["image"]  # the same image a launch of the repository URL uses
    ready = s.last
    out = await run_code(ready["url"], ready["token"], READ)
    assert out.split() == ["21", "/data", "local:open-scan"]
    err = await run_code(
        ready["url"],
        ready["token"],
        "import glob\nfor target in (glob.glob('/data/*/scan.nxs')[0], '/data/new-file', '/data/MANIFEST.json'):\n"
        "    try:\n        open(target, 'a').write('x')\n    except OSError as e:\n        print(e.strerror)",
    )
    assert err.splitlines()[0] == "Read-only file system"
    assert len(err.splitlines()) == 3
    listing = await run_code(ready["url"], ready["token"], "import os; print(sorted(os.listdir('/data')))")
    assert "MANIFEST.json" in listing and listing.count("'") == 4  # one dataset + the manifest


async def test_embargoed_dataset_refused_for_anonymous(portal, publications):
    resp = await get(f"{portal.url}/build/doi/{DOI_EMBARGO}")
    assert resp.code == 403
    message = json.loads(resp.body)["message"]
    assert "scan with value 5" in message or "embargoed-scan" in message
    assert (datetime.now(UTC) + timedelta(days=365)).date().isoformat()[:4] in message
    assert "Nothing was launched" in message


async def test_embargoed_dataset_mounted_for_proposal_member(portal, publications):
    token = portal.user_token("alice")
    s = await read_stream(
        f"{portal.url}/build/doi/{DOI_EMBARGO}", headers={"Authorization": f"token {token}"}
    )
    assert s.last["phase"] == "ready", s.log()
    out = await run_code(s.last["url"], s.last["token"], READ)
    assert out.split()[0] == "35"


async def test_released_dataset_is_open_to_anonymous(portal, publications):
    s = await read_stream(f"{portal.url}/build/doi/{DOI_RELEASED}")
    assert s.last["phase"] == "ready", s.log()
    out = await run_code(s.last["url"], s.last["token"], READ)
    assert out.split()[0] == "49"


async def test_unknown_and_malformed_doi(portal, publications):
    unknown = await get(f"{portal.url}/build/doi/10.5555/nobody.registered.this")
    assert unknown.code == 404
    assert "No publication with DOI 10.5555/nobody.registered.this" in json.loads(unknown.body)["message"]
    bad = await get(f"{portal.url}/build/doi/not-a-doi")
    assert bad.code == 400 and "is not a DOI" in json.loads(bad.body)["message"]


async def test_dataset_api_hides_embargoed_files(portal, publications):
    anon = json.loads((await get(f"{portal.url}/api/datasets/local:embargoed-scan")).body)
    assert anon["title"] and anon["files"] is None and anon["accessible"] is False
    alice = json.loads(
        (await get(f"{portal.url}/api/datasets/local:embargoed-scan", portal.user_token("alice"))).body
    )
    assert [f["path"] for f in alice["files"]] == ["scan.nxs"]
    listing = json.loads((await get(f"{portal.url}/api/datasets")).body)
    assert {"local:open-scan", "local:embargoed-scan"} <= {d["pid"] for d in listing["datasets"]}
    pub = json.loads((await get(f"{portal.url}/api/publications/{DOI_OPEN}")).body)
    assert pub["badge_markdown"].startswith("[![launch](") and f"v2/doi/{DOI_OPEN}" in pub["badge_markdown"]
    assert len(pub["resolved_sha"]) == 40


async def test_cards_and_badge_render(portal, publications):
    card = await get(f"{portal.url}/datasets/local:open-scan", accept="text/html")
    assert card.code == 200 and b"scan.nxs" in card.body
    hidden = await get(f"{portal.url}/datasets/local:embargoed-scan", accept="text/html")
    assert hidden.code == 200 and b"under embargo" in hidden.body and b"scan.nxs" not in hidden.body
    pub = await get(f"{portal.url}/publications/{DOI_OPEN}", accept="text/html")
    assert pub.code == 200 and b"[![launch](" in pub.body
    badge = await get(f"{portal.url}/badge/doi/{DOI_OPEN}.svg")
    assert badge.body.startswith(b"<svg")


async def test_preview_tree_and_thumbnail(portal, publications):
    tree = await get(f"{portal.url}/api/preview/tree/local:open-scan?file=scan.nxs")
    assert tree.code == 200, tree.body
    assert b"/entry/data/counts" in tree.body
    png = await get(
        f"{portal.url}/api/preview/thumbnail/local:open-scan?file=scan.nxs&path=/entry/data/image"
    )
    assert png.code == 200 and png.body.startswith(b"\x89PNG")
    refused = await get(f"{portal.url}/api/preview/tree/local:embargoed-scan?file=scan.nxs")
    assert refused.code == 403
    escape = await get(f"{portal.url}/api/preview/tree/local:open-scan?file=../embargoed-scan/scan.nxs")
    assert escape.code in (403, 404)


async def test_missing_dataset_folder_is_a_clear_error(portal, publications, storage_root, git_server):
    write_scan(storage_root / "vanishing-scan", 1)
    cli(portal, "datasets", "scan", str(storage_root))
    cli(
        portal,
        "publications",
        "add",
        "--doi=10.5555/panbinder.vanishing",
        f"--repo={git_server.url('paper')}",
        "--ref=main",
        "--dataset=local:vanishing-scan",
    )
    with publications.session() as session:
        publications.get_dataset(session, "local:vanishing-scan").is_public = True
    (storage_root / "vanishing-scan" / "scan.nxs").unlink()
    (storage_root / "vanishing-scan").rmdir()
    resp = await get(f"{portal.url}/build/doi/10.5555/panbinder.vanishing")
    assert resp.code == 409
    assert "missing" in json.loads(resp.body)["message"]


def test_cli_launch_by_doi_prints_the_url(portal, publications):
    proc = cli(portal, "launch", f"--doi={DOI_OPEN}")
    assert proc.stdout.strip().startswith(f"http://127.0.0.1:{portal.hub_port}/user/pb-")
    assert "?token=" in proc.stdout
    refused = cli(portal, "launch", f"--doi={DOI_EMBARGO}", check=False)
    assert refused.returncode == 2 and "embargo" in refused.stderr


async def test_hub_refuses_unsigned_mounts(portal, publications, storage_root):
    """A user token cannot restart a server with datasets the portal did not grant."""
    token = portal.service_token
    hub = f"http://127.0.0.1:{portal.hub_port}/hub/api"
    client = AsyncHTTPClient()
    auth = {"Authorization": f"token {token}"}
    await client.fetch(f"{hub}/users/pb-forger", method="POST", body="{}", headers=auth, raise_error=False)
    s = await read_stream(f"{portal.url}/build/doi/{DOI_OPEN}?build_only=true")
    options = {
        "image": s.last["imageName"],
        "mounts": [[str(storage_root / "embargoed-scan"), "/data/stolen", True]],
        "environment": {},
        "signature": "0" * 64,
    }
    resp = await client.fetch(
        f"{hub}/users/pb-forger/server",
        method="POST",
        body=json.dumps({"user_options": options}),
        headers=auth,
        raise_error=False,
    )
    assert resp.code in (201, 202), resp.body
    # the spawn fails at once; the progress stream may already be gone, so also ask the Hub
    progress = await client.fetch(
        f"{hub}/users/pb-forger/server/progress", headers=auth, request_timeout=60, raise_error=False
    )
    assert progress.code == 400 or b'"failed": true' in progress.body
    user = json.loads((await client.fetch(f"{hub}/users/pb-forger", headers=auth)).body)
    assert not user["servers"]
    assert "launch options refused" in (portal.state / "logs" / "jupyterhub.log").read_text()
