"""A signed-in user's ~/work: kept across a cull, a service restart (and a host restart's lost
mount), and a change of image; its quota stops writes; ``panbinder workspaces`` lists and removes.

One portal of its own (small quota, its own volume prefix). The two images are two commits of a
copy of the session's analysis repository: the first reuses the analysis image's cached layers,
the second changes only a file (a build of about a second). Datasets stay read-only at /data.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from tornado.httpclient import AsyncHTTPClient
from tornado.simple_httpclient import HTTPTimeoutError

from panbinder.launcher.workspaces import workspace_key
from tests.integration.conftest import ANALYSIS_FILES, catalogue_of, cli, workspace_portal_config, write_scan
from tests.support import eventually, read_stream, run_code, session_prefix, unmount_under

pytestmark = [pytest.mark.docker, pytest.mark.hub, pytest.mark.slow]
PREFIX = session_prefix("panbinder-ws")
VOLUMES = f"pbtest-work-{os.getpid()}-"
WORK = "/home/jovyan/work"
DOI = "10.5555/panbinder.workspace"


@pytest.fixture(scope="module")
def ws_portal(portal_factory, tmp_path_factory, git_server):
    storage = tmp_path_factory.mktemp("ws-storage")
    config = workspace_portal_config(storage, "ws-testers", VOLUMES)
    with portal_factory("ws", config, prefix=PREFIX, start=False) as p:
        write_scan(storage / "ws-scan", 4)
        p.start(timeout=300)
        cli(p, "datasets", "scan", str(storage))
        cat = catalogue_of(p, storage)
        with cat.session() as session:
            cat.get_dataset(session, "local:ws-scan").is_public = True
        cat.close()
        try:
            yield p
        finally:
            unmount_under(p.state / "workspaces")
            names = subprocess.run(
                ["/usr/bin/docker", "volume", "ls", "-q", "--filter", f"name={VOLUMES}"],
                capture_output=True,
                text=True,
            ).stdout.split()
            if names:
                subprocess.run(["/usr/bin/docker", "volume", "rm", "-f", *names], capture_output=True)


async def code(url: str, token: str, source: str) -> str:
    """``run_code`` with one more try when the kernel's websocket does not connect in time (a
    loaded machine); each snippet here can run twice."""
    try:
        return await run_code(url, token, source, timeout=120)
    except HTTPTimeoutError:
        return await run_code(url, token, source, timeout=120)


async def launch(portal, url: str) -> dict:
    token = portal.user_token("alice")
    s = await read_stream(url, headers={"Authorization": f"token {token}"})
    assert s.last["phase"] == "ready", s.log()
    return {**s.last, "log": s.log()}


async def cull(portal, ready: dict) -> None:
    """What the idle culler does: stop the server, then delete its temporary user."""
    user = ready["url"].rstrip("/").rsplit("/", 1)[1]
    hub = f"http://127.0.0.1:{portal.hub_port}/hub/api/users/{user}"
    auth = {"Authorization": f"token {portal.service_token}"}
    client = AsyncHTTPClient()
    resp = await client.fetch(f"{hub}/server", method="DELETE", headers=auth, raise_error=False)
    assert resp.code in (202, 204), resp.body
    for _ in range(120):
        model = json.loads((await client.fetch(hub, headers=auth)).body)
        if not model.get("servers"):
            break
        await asyncio.sleep(0.5)
    await client.fetch(hub, method="DELETE", headers=auth)


@pytest.fixture(scope="module")
def ws_repo(git_server):
    git_server.commit("ws-analysis", ANALYSIS_FILES)  # the analysis image's layers: a short build
    return "ws-analysis"


async def test_work_survives_cull_restart_and_image_change_and_the_quota_holds(
    ws_portal, git_server, ws_repo
):
    p, key = ws_portal, workspace_key("alice")
    root = p.state / "workspaces"
    first = await launch(p, p.build_url(git_server.url("ws-analysis"), "main"))
    assert f"Your workspace {WORK} keeps your files" in first["log"]
    out = await code(
        first["url"],
        first["token"],
        f"import os; open('{WORK}/result.txt', 'w').write('42'); print(os.environ['PANBINDER_WORKSPACE'])",
    )
    assert out.strip() == WORK
    before_cull = datetime.now(UTC) - timedelta(seconds=1)
    await cull(p, first)
    record = json.loads((root / f"{key}.json").read_text())
    assert record["owner"] == "alice" and datetime.fromisoformat(record["last_used"]) >= before_cull

    await asyncio.to_thread(restart_after_reboot, p, root / "mnt" / key)
    git_server.commit("ws-analysis", {"README.md": "a second commit: another image\n"})
    repo = git_server.url("ws-analysis")
    await asyncio.to_thread(
        cli,
        p,
        "publications",
        "add",
        f"--doi={DOI}",
        f"--repo={repo}",
        "--ref=main",
        "--dataset=local:ws-scan",
    )

    second = await launch(p, f"{p.url}/build/doi/{DOI}")  # the other image, with a dataset
    assert second["image"] != first["image"]
    out = await code(
        second["url"],
        second["token"],
        "import glob, os\n"
        f"print(open('{WORK}/result.txt').read())\n"
        "try:\n    open(glob.glob('/data/*/scan.nxs')[0], 'a')\nexcept OSError as e:\n    print(e.strerror)\n",
    )
    assert out.split("\n")[:2] == ["42", "Read-only file system"]
    full = await code(
        second["url"],
        second["token"],
        "try:\n"
        f"    with open('{WORK}/big', 'wb') as f:\n"
        "        for _ in range(64):\n            f.write(b'0' * 2**20)\n"
        "except OSError as e:\n    print(e.errno, e.strerror)\n",
    )
    assert full.strip() == "28 No space left on device"
    third = await launch(p, f"{p.url}/build/doi/{DOI}")
    assert "It is full" in third["log"] and f"delete files in {WORK}" in third["log"]

    listing = (await asyncio.to_thread(cli, p, "workspaces")).stdout
    assert "alice" in listing and "in use" in listing  # a running server keeps it
    await cull(p, second)
    await cull(p, third)  # a stop is a use: the record says so; then it ages past the retention
    record = json.loads((root / f"{key}.json").read_text())
    assert datetime.fromisoformat(record["last_used"]) >= datetime.now(UTC) - timedelta(minutes=5)
    old = (datetime.now(UTC) - timedelta(days=400)).isoformat(timespec="seconds")
    (root / f"{key}.json").write_text(json.dumps({**record, "last_used": old}))

    def alice_row() -> tuple[str, str]:
        listing = cli(p, "workspaces").stdout
        return next(row for row in listing.splitlines() if row.startswith("alice")), listing

    # a culled server's container may take a moment to go, and mounts the volume until then
    async def released() -> bool:
        return not (await asyncio.to_thread(alice_row))[0].endswith("in use")

    await eventually(released, 60, "the culled containers gone")
    line, listing = await asyncio.to_thread(alice_row)
    assert line.endswith("remove") and "32.0 MiB" in line and "dry run" in listing
    assert (root / f"{key}.img").exists()
    removed = (await asyncio.to_thread(cli, p, "workspaces", "--apply")).stdout
    assert "removed the workspace of alice" in removed
    assert await asyncio.to_thread(leftovers, root, key) == []


def restart_after_reboot(portal, mount: Path) -> None:
    """The service restarts, and the workspace's mount is lost as in a host restart."""
    portal.stop()
    subprocess.run(["umount", str(mount)], check=True)
    portal.start(timeout=300)


def leftovers(root: Path, key: str) -> list[str]:
    """What is left of a removed workspace: its files, its mount, its docker volume."""
    found = [p.name for p in (root / f"{key}.img", root / f"{key}.json") if p.exists()]
    if os.path.ismount(root / "mnt" / key):
        found.append("mount")
    volumes = subprocess.run(
        ["/usr/bin/docker", "volume", "ls", "-q", "--filter", f"name={VOLUMES}{key}"],
        capture_output=True,
        text=True,
    ).stdout.split()
    return found + volumes


async def test_anonymous_servers_say_changes_are_temporary_and_offer_them_as_a_zip(
    ws_portal, git_server, ws_repo
):
    p, repo = ws_portal, git_server.url(ws_repo)
    client = AsyncHTTPClient()
    page = f"{p.url}/v2/git/{quote(repo, safe='')}/main"
    anonymous = (await client.fetch(page)).body.decode()
    assert "temporary-note" in anonymous and "workspace-note" not in anonymous
    auth = {"Authorization": f"token {p.user_token('alice')}"}
    signed_in = (await client.fetch(page, headers=auth)).body.decode()
    assert "workspace-note" in signed_in and WORK in signed_in and "temporary-note" not in signed_in

    s = await read_stream(p.build_url(repo, "main"))
    assert s.last["phase"] == "ready", s.log()
    url, token = s.last["url"], s.last["token"]
    out = await code(
        url,
        token,
        "import os\n"
        "print(open(os.path.expanduser('~/CHANGES-ARE-TEMPORARY.md')).readline().strip())\n"
        "open(os.path.expanduser('~/mine.txt'), 'w').write('my result')\n"
        f"print(os.path.exists('{WORK}'))\n",
    )
    assert out.split("\n")[:2] == ["# Changes in this server are temporary", "False"]
    resp = await client.fetch(f"{url}panbinder/changes.zip", headers={"Authorization": f"token {token}"})
    with zipfile.ZipFile(io.BytesIO(resp.body)) as zf:
        assert zf.namelist() == ["mine.txt"] and zf.read("mine.txt") == b"my result"
    refused = await client.fetch(f"{url}panbinder/changes.zip", follow_redirects=False, raise_error=False)
    assert refused.code in (302, 403)  # the server's own authentication
