"""A signed-in user registers a file of ~/work as a derived dataset with panbinder-publish, run
inside the server: the portal copies and hashes it, registers it closed and owned by the user,
and links it to the publication's dataset and image; a path outside the workspace is refused
with a message saying what to do.

One portal of its own (its own workspace volume prefix, as test_workspaces.py); the image is a
copy of the session's analysis repository (its cached layers: a short build).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest
from tornado.httpclient import AsyncHTTPClient
from tornado.simple_httpclient import HTTPTimeoutError

from tests.integration.conftest import ANALYSIS_FILES, catalogue_of, cli, workspace_portal_config, write_scan
from tests.support import read_stream, run_code, session_prefix, unmount_under

pytestmark = [pytest.mark.docker, pytest.mark.hub, pytest.mark.slow]
PREFIX = session_prefix("panbinder-dd")
VOLUMES = f"pbtest-derived-{os.getpid()}-"
WORK = "/home/jovyan/work"
DOI = "10.5555/panbinder.derived"
SOURCE = "local:dd-scan"
RESULT = b"fitted peak at 42\n"


@pytest.fixture(scope="module")
def dd_portal(portal_factory, tmp_path_factory, git_server):
    storage = tmp_path_factory.mktemp("dd-storage")
    config = workspace_portal_config(storage, "dd-testers", VOLUMES)
    state = tmp_path_factory.mktemp("dd-state")
    try:
        with portal_factory("dd", config, prefix=PREFIX, start=False, state=state) as p:
            write_scan(storage / "dd-scan", 3)
            p.start(timeout=300)
            cli(p, "datasets", "scan", str(storage))
            cat = catalogue_of(p, storage)
            with cat.session() as session:
                cat.get_dataset(session, SOURCE).is_public = True  # the publication launches for anyone
            cat.close()
            git_server.commit("dd-analysis", ANALYSIS_FILES)
            repo = git_server.url("dd-analysis")
            cli(
                p,
                "publications",
                "add",
                f"--doi={DOI}",
                f"--repo={repo}",
                "--ref=main",
                f"--dataset={SOURCE}",
            )
            yield p, storage
    finally:  # once the portal stopped and its servers are gone: the workspace and its volume
        unmount_under(state / "workspaces")
        names = subprocess.run(
            ["/usr/bin/docker", "volume", "ls", "-q", "--filter", f"name={VOLUMES}"],
            capture_output=True,
            text=True,
        ).stdout.split()
        if names:
            subprocess.run(["/usr/bin/docker", "volume", "rm", "-f", *names], capture_output=True)


PUBLISH = """
import json, subprocess
open('{work}/result.txt', 'wb').write({result!r})
for args in (['{work}/result.txt', '--title', 'Fitted peaks', '--description', 'from the scan'],
             ['/data/MANIFEST.json', '--title', 'Not mine'],
             ['{work}/result.txt', '--title', ' ']):
    p = subprocess.run(['panbinder-publish', *args], capture_output=True, text=True)
    print(json.dumps([p.returncode, p.stdout, p.stderr]))
"""


async def code(url: str, token: str, source: str) -> str:
    """``run_code`` with one more try when the kernel's websocket does not connect in time (a
    loaded machine): the code is sent only once connected, so it never runs twice."""
    try:
        return await run_code(url, token, source, timeout=180)
    except HTTPTimeoutError:
        return await run_code(url, token, source, timeout=180)


async def test_a_file_of_the_workspace_becomes_a_closed_derived_dataset_with_its_lineage(dd_portal):
    p, storage = dd_portal
    alice = {"Authorization": f"token {p.user_token('alice')}"}
    s = await read_stream(f"{p.url}/build/doi/{DOI}", headers=alice)
    assert s.last["phase"] == "ready", s.log()
    out = await code(s.last["url"], s.last["token"], PUBLISH.format(work=WORK, result=RESULT))
    lines = [json.loads(line) for line in out.strip().splitlines()]  # [exit status, stdout, stderr]
    (ok, stdout, _), (outside, _, outside_err), (untitled, _, untitled_err) = lines
    assert ok == 0, lines
    pid = stdout.split("Registered derived dataset ", 1)[1].split()[0]
    assert f"/datasets/{quote(pid)}" in stdout and hashlib.sha256(RESULT).hexdigest() in stdout
    assert outside == 1 and "outside your workspace" in outside_err and f"copy it into {WORK}" in outside_err
    assert "Traceback" not in outside_err
    assert untitled == 1 and "Give the dataset a title" in untitled_err

    client = AsyncHTTPClient()
    url = f"{p.url}/api/datasets/{quote(pid, safe='')}"
    card = json.loads((await client.fetch(url, headers=alice)).body)
    assert card["data_type"] == "derived" and card["accessible"] and not card["open"]
    assert card["files"] == [
        {"path": "result.txt", "size": len(RESULT), "sha256": hashlib.sha256(RESULT).hexdigest()}
    ]
    assert [d["pid"] for d in card["derived_from"]] == [SOURCE]
    assert card["origin"]["publication"]["doi"] == DOI and card["origin"]["image"] == s.last["image"]
    assert card["origin"]["registered_by"] == "alice"
    anonymous = json.loads((await client.fetch(url)).body)
    assert not anonymous["accessible"] and anonymous["files"] is None
    source = json.loads((await client.fetch(f"{p.url}/api/datasets/{quote(SOURCE, safe='')}")).body)
    assert [d["pid"] for d in source["derived_datasets"]] == [pid]
    found = json.loads(
        (await client.fetch(f"{p.url}/api/search/datasets?data_type=derived", headers=alice)).body
    )
    assert [c["pid"] for c in found["items"]] == [pid]

    cat = catalogue_of(p, storage)
    try:
        with cat.session() as session:
            ds = cat.get_dataset(session, pid)
            assert ds.owners == ["alice"] and not ds.is_public and ds.release_date is None
            location = ds.location
    finally:
        cat.close()
    assert await asyncio.to_thread(Path(location, "result.txt").read_bytes) == RESULT
