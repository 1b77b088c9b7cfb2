"""Crafted HDF5 files in a public dataset, previewed anonymously through a real portal.

The files name the portal's own secrets as external raw storage, and reach an embargoed
neighbour dataset through external links and virtual-dataset sources, by absolute and relative
names, through a symbolic link in the folder, a soft link, a virtual source in the same file and
a nested virtual dataset; others hold gzip chunks that inflate to a gigabyte. Each request is
refused with a 4xx and no byte of a secret or of the embargoed data in any response, while
links inside the dataset keep working and the scan lists what it did not read.
"""

from __future__ import annotations

import json
import time
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import h5py
import numpy as np
import pytest

from .conftest import catalogue_of, cli
from .test_publications import get

pytestmark = [pytest.mark.docker, pytest.mark.hub, pytest.mark.slow]

EMBARGOED = 987654321  # every value of the neighbour's data
OPEN, NEIGHBOUR = "local:attack-open", "local:attack-embargoed"


def _zeros_stream(size: int) -> bytes:
    stream = zlib.compressobj(9)
    return b"".join(stream.compress(bytes(1 << 20)) for _ in range(size >> 20)) + stream.flush()


def _write_attacks(folder: Path, neighbour: Path, secrets: list[Path]) -> None:
    with h5py.File(folder / "own.h5", "w") as f:
        f["data"] = np.arange(64.0)
    (folder / "inside.dat").symlink_to(neighbour)  # no HDF5 suffix: the scan ignores it
    with h5py.File(folder / "attack.nxs", "w") as f:
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        entry.create_dataset("title", shape=(1,), dtype="S64", external=[(str(secrets[0]), 0, 64)])
        for index, secret in enumerate(secrets):
            size = secret.stat().st_size
            f.create_dataset(f"stored{index}", shape=(size,), dtype="u1", external=[(str(secret), 0, size)])
            f.create_dataset(f"text{index}", shape=(1,), dtype=f"S{size}", external=[(str(secret), 0, size)])
        links = f.create_group("links")
        links["absolute"] = h5py.ExternalLink(str(neighbour), "/data")
        links["relative"] = h5py.ExternalLink("../attack-embargoed/data.h5", "/data")
        links["symlinked"] = h5py.ExternalLink("inside.dat", "/data")
        links["root"] = h5py.ExternalLink(str(neighbour), "/")
        links["through_soft"] = h5py.SoftLink("/links/root/data")
        links["own"] = h5py.ExternalLink("own.h5", "/data")
        virtual = f.create_group("virtual")
        for name, source_file, source in (
            ("absolute", str(neighbour), "data"),
            ("relative", "../attack-embargoed/data.h5", "data"),
            ("symlinked", "inside.dat", "data"),
            ("same_file", ".", "/links/absolute"),
            ("nested", ".", "/virtual/absolute"),
            ("own", "own.h5", "data"),
        ):
            layout = h5py.VirtualLayout(shape=(64,), dtype="f8")
            layout[:] = h5py.VirtualSource(source_file, source, shape=(64,), dtype="f8")
            virtual.create_virtual_dataset(name, layout, fillvalue=-1)
    with h5py.File(folder / "bombs.h5", "w") as f:
        gib = _zeros_stream(1 << 30)
        big = f.create_dataset("big", shape=(2**27,), dtype="f8", chunks=(2**27,), compression="gzip")
        big.id.write_direct_chunk((0,), gib)
        small = f.create_dataset("small", shape=(4096,), dtype="f8", chunks=(1024,), compression="gzip")
        for offset in range(0, 4096, 1024):
            small.id.write_direct_chunk((offset,), gib)


@pytest.fixture(scope="module")
def attacks(portal, storage_root) -> dict:
    """A public dataset of crafted files next to an embargoed one; what must never leak."""
    folder, embargoed = storage_root / "attack-open", storage_root / "attack-embargoed"
    folder.mkdir()
    embargoed.mkdir()
    with h5py.File(embargoed / "data.h5", "w") as f:
        f["data"] = np.full((64,), float(EMBARGOED))
        f["title"] = np.array([b"EMBARGOED-NEIGHBOUR"])
    secrets = sorted(p for p in (portal.state / "secrets").iterdir() if p.is_file() and p.stat().st_size)
    assert secrets, "the portal keeps its secrets in its state folder"
    _write_attacks(folder, embargoed / "data.h5", secrets)
    scan = cli(portal, "datasets", "scan", str(storage_root), check=False)
    cat = catalogue_of(portal, storage_root)
    with cat.session() as s:
        for pid, public in ((OPEN, True), (NEIGHBOUR, False)):
            ds = cat.get_dataset(s, pid)
            assert ds is not None, scan.stderr
            ds.is_public, ds.release_date = (
                public,
                None if public else datetime.now(UTC) + timedelta(days=365),
            )
        title = cat.get_dataset(s, OPEN).title
    cat.close()
    markers = [p.read_bytes().strip() for p in secrets] + [b"EMBARGOED-NEIGHBOUR", str(EMBARGOED).encode()]
    markers += [", ".join(str(b) for b in p.read_bytes()[:8]).encode() for p in secrets]  # as JSON numbers
    return {"markers": markers, "scan": scan, "title": title, "secrets": secrets}


def _leaks(body: bytes, markers: list[bytes]) -> list[bytes]:
    return [marker for marker in markers if marker and marker in body]


async def _preview(portal, kind: str, file: str, path: str = "") -> tuple[int, bytes]:
    url = f"{portal.url}/api/preview/{kind}/{OPEN}?file={file}" + (f"&path={path}" if path else "")
    resp = await get(url)
    return resp.code, resp.body


async def test_the_neighbour_is_embargoed(portal, attacks):
    resp = await get(f"{portal.url}/api/preview/tree/{NEIGHBOUR}?file=data.h5")
    assert resp.code == 403 and not _leaks(resp.body, attacks["markers"])


async def test_the_tree_shows_no_secret_and_marks_what_it_refused(portal, attacks):
    code, body = await _preview(portal, "tree", "attack.nxs")
    assert code == 200, body
    assert _leaks(body, attacks["markers"]) == []
    tree = json.loads(body)
    found = {}
    stack = [tree]
    while stack:
        node = stack.pop()
        found[node["path"]] = node
        stack += node.get("children", [])
    for index in range(len(attacks["secrets"])):
        for name in (f"/stored{index}", f"/text{index}"):
            assert "value" not in found[name] and "refused" in found[name]["external_storage"]
    # refused, or not even there when the sandbox shows the preview only the dataset's folder
    for name in ("/links/absolute", "/links/relative", "/links/root", "/links/symlinked"):
        assert found[name]["missing"] is True, name
    for name in ("/virtual/absolute", "/virtual/relative", "/virtual/same_file", "/virtual/symlinked"):
        assert found[name]["missing"] is True, name
    assert found["/links/own"]["missing"] is False and found["/virtual/own"]["missing"] is False


@pytest.mark.parametrize(
    "path",
    [
        "/stored0",
        "/links/absolute",
        "/links/relative",
        "/links/symlinked",
        "/links/through_soft",
        "/links/root/data",
        "/virtual/absolute",
        "/virtual/relative",
        "/virtual/symlinked",
        "/virtual/same_file",
        "/virtual/nested",
    ],
)
async def test_thumbnails_outside_the_dataset_are_refused(portal, attacks, path):
    code, body = await _preview(portal, "thumbnail", "attack.nxs", path)
    assert code in (403, 404, 409), body  # 404, 409: the sandbox does not even show the file
    assert not body.startswith(b"\x89PNG") and _leaks(body, attacks["markers"]) == []
    message = json.loads(body)["message"]
    assert "Traceback" not in message and str(attacks["secrets"][0].parent) not in message


async def test_external_storage_is_refused_by_name(portal, attacks):
    for index in range(len(attacks["secrets"])):
        code, body = await _preview(portal, "thumbnail", "attack.nxs", f"/stored{index}")
        assert code == 403 and "external storage" in json.loads(body)["message"], body


async def test_links_inside_the_dataset_still_work(portal, attacks):
    for path in ("/links/own", "/virtual/own"):
        code, body = await _preview(portal, "thumbnail", "attack.nxs", path)
        assert code == 200 and body.startswith(b"\x89PNG"), body


@pytest.mark.parametrize("path", ["/big", "/small"])
async def test_gigabyte_chunks_are_refused_at_once(portal, attacks, path):
    start = time.monotonic()
    code, body = await _preview(portal, "thumbnail", "bombs.h5", path)
    assert code in (413, 422), body
    assert "no thumbnail" in json.loads(body)["message"] or "too large" in json.loads(body)["message"]
    assert time.monotonic() - start < 10


def test_the_scan_lists_what_it_did_not_read(attacks):
    assert "attack-open/attack.nxs: /entry/title keeps its values in another file" in attacks["scan"].stderr
    assert not _leaks((attacks["title"] or "").encode(), attacks["markers"])
