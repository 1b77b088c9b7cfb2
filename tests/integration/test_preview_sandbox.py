"""The portal's previews run in the sandbox (data_mounts/sandbox.py), seen from outside: its
worker holds no secrets, each preview runs as the preview user chrooted to its dataset, and a
crafted public file reads neither the portal's secrets nor an embargoed dataset."""

from __future__ import annotations

import asyncio
import os
import pwd
import time
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest

from .conftest import catalogue_of, cli
from .test_publications import get

pytestmark = [pytest.mark.docker, pytest.mark.hub, pytest.mark.slow]

EMBARGOED_TITLE = "scan with value 5"  # write_scan's title of the embargoed dataset


@pytest.fixture(scope="module")
def crafted(portal, publications, storage_root) -> Path:
    """A public dataset of crafted files: the signing key as external storage, links and
    virtual sources into the embargoed dataset, a gzip bomb, and a slow-to-list tree."""
    folder = storage_root / "crafted-scan"
    folder.mkdir()
    key = portal.state / "secrets" / "launch-signing-key"
    embargoed = storage_root / "embargoed-scan" / "scan.nxs"
    with h5py.File(folder / "crafted.nxs", "w") as f:
        entry = f.create_group("entry")
        entry.create_dataset("leak", shape=(64,), dtype="u1", external=[(str(key), 0, 64)])
        entry["linked"] = h5py.ExternalLink(str(embargoed), "/entry/title")
        entry["linked_counts"] = h5py.ExternalLink(str(embargoed), "/entry/data/counts")
        layout = h5py.VirtualLayout(shape=(100,), dtype="i8")
        layout[:] = h5py.VirtualSource(str(embargoed), "/entry/data/counts", shape=(100,))
        entry.create_virtual_dataset("virtual", layout, fillvalue=-1)
        entry["counts"] = np.arange(100)
    with h5py.File(folder / "bomb.nxs", "w") as f:
        shape = (1 << 15, 1 << 13)  # float32: 1 GiB in one chunk, 1 MB compressed
        ds = f.create_dataset("data", shape=shape, dtype="f4", chunks=shape, compression="gzip")
        compressor = zlib.compressobj(9)
        zeros = b"".join(compressor.compress(bytes(1 << 20)) for _ in range(1 << 10)) + compressor.flush()
        ds.id.write_direct_chunk((0, 0), zeros, filter_mask=0)
    with h5py.File(folder / "many.nxs", "w") as f:  # about 2 s to list: time to watch the child
        for g in range(50):
            group = f.create_group(f"g{g:02d}")
            for d in range(200):
                group.create_dataset(f"d{d:03d}", data=d)
    cli(portal, "datasets", "scan", str(storage_root), check=False)
    cat = catalogue_of(portal, storage_root)
    with cat.session() as s:
        ds = cat.get_dataset(s, "local:crafted-scan")
        assert ds is not None
        ds.is_public = True
    return folder


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def _identities(pids: list[int]) -> dict[int, tuple[list[int], str]]:
    """(real, effective, saved, filesystem uid) and root folder of each process still there."""
    found = {}
    for pid in pids:
        try:
            uids = Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[:4]
            found[pid] = ([int(u) for u in uids], os.readlink(f"/proc/{pid}/root"))
        except (OSError, IndexError):
            continue
    return found


def _worker(portal) -> int:
    for pid in _children(portal.proc.pid):
        if b"preview_worker" in Path(f"/proc/{pid}/cmdline").read_bytes():
            return pid
    raise AssertionError("the portal has no preview worker")


def _rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0])


def test_the_worker_holds_no_secrets(portal, publications):
    assert "preview sandbox: not enforced" not in (portal.state / "portal.log").read_text()
    pid = _worker(portal)
    environment = Path(f"/proc/{pid}/environ").read_bytes()
    secrets = [p.read_text().strip() for p in (portal.state / "secrets").iterdir()]
    assert secrets and not any(s.encode() in environment for s in secrets)
    opened = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
    assert not any("secrets" in target or target.startswith("socket:") for target in opened), opened


async def test_a_crafted_public_file_reads_neither_secrets_nor_embargoed_data(portal, crafted):
    key = (portal.state / "secrets" / "launch-signing-key").read_text().strip()
    url = f"{portal.url}/api/preview"
    tree = await get(f"{url}/tree/local:crafted-scan?file=crafted.nxs")
    assert tree.code == 200, tree.body
    assert key[:16].encode() not in tree.body and EMBARGOED_TITLE.encode() not in tree.body
    for name in ("leak", "linked_counts", "virtual"):
        thumb = await get(f"{url}/thumbnail/local:crafted-scan?file=crafted.nxs&path=/entry/{name}")
        assert thumb.code in (403, 404, 409, 422), (name, thumb.code, thumb.body)
        assert key[:16].encode() not in thumb.body
    counts = await get(f"{url}/thumbnail/local:crafted-scan?file=crafted.nxs&path=/entry/counts")
    assert counts.code == 200 and counts.body.startswith(b"\x89PNG")


async def test_each_preview_runs_as_the_preview_user_chrooted_to_its_dataset(portal, crafted):
    worker = _worker(portal)
    request = asyncio.ensure_future(get(f"{portal.url}/api/preview/tree/local:crafted-scan?file=many.nxs"))
    seen: dict[int, tuple[list[int], str]] = {}
    while not request.done():
        seen.update(_identities(_children(worker)))  # the last look at each child counts
        await asyncio.sleep(0.01)
    assert (await request).code == 200
    preview_uid = {pwd.getpwnam(name).pw_uid for name in ("panbinder-preview", "nobody") if _exists(name)}
    confined = [(uids, root) for uids, root in seen.values() if root != "/"]
    assert confined, f"no preview child seen: {seen}"
    for uids, root in confined:
        assert len(set(uids)) == 1 and uids[0] in preview_uid and uids[0] != 0
        assert root == str(crafted.resolve())


async def test_a_gzip_bomb_leaves_the_portal_small(portal, crafted):
    before = _rss_kib(portal.proc.pid)
    started = time.monotonic()
    thumb = await get(f"{portal.url}/api/preview/thumbnail/local:crafted-scan?file=bomb.nxs&path=/data")
    assert thumb.code in (413, 422), thumb.body
    assert time.monotonic() - started < 10
    assert _rss_kib(portal.proc.pid) - before < 50 << 10


def _exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
