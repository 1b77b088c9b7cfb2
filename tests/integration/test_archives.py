"""Code that lives in an archive: builds from a Zenodo-shaped record and from a Software Heritage
vault tarball served on 127.0.0.1 (tests/archive_server.py), through the shared portal, and a
publication registered with an archive DOI that launches with its dataset.

The records reuse the paper repository's requirements (conftest ``publications``), so the build
engine's layer cache makes each build a code-only one. Record ids are new on every run: the
registry outlives a session, and a cached image would prove no build.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import time
from urllib.parse import quote

import pytest
from tornado.httpclient import AsyncHTTPClient

from tests.archive_server import zip_of
from tests.support import read_stream, run_code

from .conftest import cli

pytestmark = [pytest.mark.docker, pytest.mark.hub, pytest.mark.slow]

CODE = {
    "requirements.txt": b"h5py==3.16.0\n",
    "figure.ipynb": b"{}",
    "README.md": b"paper code\n",
}
RUN = int(time.time() * 10) % 10**9 * 10  # record ids of this run


def files(value: int) -> dict[str, bytes]:
    return {**CODE, "values.txt": f"{value}\n".encode()}


async def test_zenodo_concept_doi_builds_its_latest_version(portal, publications, archive_server):
    """/v2/zenodo/<concept DOI>: resolved to the latest version's record id (the image's tag),
    its single zip unpacked; the same request again finds the image."""
    concept, version = RUN + 1, RUN + 2
    archive_server.zenodo(version, {"paper-v2.zip": zip_of(files(2), top="paper-v2")}, concept=concept)
    url = f"{portal.url}/build/zenodo/10.5281/zenodo.{concept}?build_only=true"
    s = await read_stream(url, timeout=900)
    assert s.last["phase"] == "ready", s.log()
    image = s.last["imageName"]
    assert "-zenodo-zenodo-" in image and image.endswith(f":{version}")
    assert f"Resolved {concept} to {version}" in s.log()
    again = await read_stream(url, timeout=120)
    assert again.last["imageName"] == image and "Found built image" in again.log()


async def test_swhid_revision_launches_its_directory(portal, publications, archive_server):
    """/v2/swh/<revision SWHID>: resolved to its directory, cooked by the vault, launched; the
    server's working folder holds the archived files."""
    directory = hashlib.sha1(f"dir{RUN}".encode()).hexdigest()
    revision = hashlib.sha1(f"rev{RUN}".encode()).hexdigest()
    archive_server.swh(directory, files(3), revision=revision)
    s = await read_stream(f"{portal.url}/build/swh/swh:1:rev:{revision}", timeout=900)
    assert s.last["phase"] == "ready", s.log()
    built = next(e for e in s.events if e["phase"] == "built")  # a launch's ready event names the server
    assert built["imageName"].endswith(f":{directory}"), built
    assert s.last["binder_persistent_request"] == f"v2/swh/swh:1:dir:{directory}"
    out = await run_code(s.last["url"], s.last["token"], "print(open('values.txt').read().strip())")
    assert out.strip() == "3"


async def test_publication_with_an_archive_doi_launches(portal, publications, archive_server, tmp_path):
    """``publications add --repo zenodo:<DOI>`` pins the record's version; /v2/doi/ launches that
    version's image with the publication's dataset under /data; ``archive`` and ``restore`` work
    for it."""
    record = RUN + 3
    archive_server.zenodo(record, files(4), listed=True)
    doi = f"10.5555/panbinder.archived.{RUN}"
    cli(
        portal,
        "publications",
        "add",
        f"--doi={doi}",
        f"--repo=zenodo:10.5281/zenodo.{record}",
        "--dataset=local:open-scan",
    )
    with publications.session() as session:
        pub = publications.get_publication(session, doi)
        assert (pub.repo_url, pub.resolved_sha) == (f"zenodo:{record}", str(record))
    s = await read_stream(f"{portal.url}/build/doi/{quote(doi, safe='/')}", timeout=900)
    assert s.last["phase"] == "ready", s.log()
    assert "-zenodo-zenodo-" in s.last["image"]
    code = "import os, json\nprint(open('values.txt').read().strip(), json.load(open('/data/MANIFEST.json'))['datasets'][0]['pid'])"
    out = await run_code(s.last["url"], s.last["token"], code)
    assert out.split() == ["4", "local:open-scan"]

    # archived as a git publication is: the image, and the record's files as a bundle
    out = cli(portal, "archive", doi, f"--to={tmp_path}").stdout.strip().splitlines()[-1]
    bag = tmp_path / out.rsplit("/", 1)[-1]
    described = json.loads((bag / "data" / "archive.json").read_text())
    assert (described["provider"], described["repo_url"], described["sha"]) == (
        "zenodo",
        f"zenodo:{record}",
        str(record),
    )
    clone = ["git", "clone", "--quiet", str(bag / "data" / "repo.bundle"), str(tmp_path / "c")]
    await asyncio.to_thread(subprocess.run, clone, check=True)
    assert (tmp_path / "c" / "values.txt").read_text() == "4\n"
    assert "every file matches" in cli(portal, "restore", "--verify-only", str(bag)).stdout
    assert "already registered" in cli(portal, "restore", str(bag)).stdout


async def test_bad_archive_input_names_what_to_change(portal, archive_server):
    client = AsyncHTTPClient()
    resp = await client.fetch(f"{portal.url}/build/swh/swh:1:cnt:{'0' * 40}", raise_error=False)
    assert resp.code == 400 and "swh:1:dir:<40 hex digits>" in json.loads(resp.body)["message"]
    resp = await client.fetch(f"{portal.url}/build/zenodo/10.1234/other.5", raise_error=False)
    assert resp.code == 400 and "10.5281/zenodo." in json.loads(resp.body)["message"]
    s = await read_stream(f"{portal.url}/build/zenodo/{RUN + 9}", timeout=60)
    assert s.last["phase"] == "failed" and s.last["status_code"] == 404
    assert "check the DOI" in s.last["message"]
    proc = cli(
        portal,
        "publications",
        "add",
        "--doi=10.5555/panbinder.nothing",
        f"--repo=zenodo:{RUN + 9}",
        check=False,
    )
    assert proc.returncode == 2 and "Zenodo has no record" in proc.stderr
