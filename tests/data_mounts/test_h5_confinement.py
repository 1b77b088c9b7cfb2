"""Crafted HDF5 files attack the preview, the NeXus reader and the scan (data_mounts/h5confine.py).

Each file is written here with h5py into a dataset folder under a storage root. Next to it sits
an embargoed-looking neighbour folder, and outside the root a "secret" file standing for the
service's token. External raw storage, external links and virtual-dataset sources try to reach
them; none of their bytes may come back, and nothing outside the folder may even be opened.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np
import pytest

from panbinder.data_mounts import preview
from panbinder.data_mounts.h5confine import Refused, Scope, candidates, resolve_file
from panbinder.data_mounts.nexus import read_nexus
from panbinder.errors import PanbinderError

SECRET = b"hub-service-token-0123456789abcdef-do-not-leak\n" * 4
EMBARGOED = 4242  # every value of the neighbour's data


@pytest.fixture
def storage(tmp_path: Path) -> Path:
    return tmp_path / "storage"


@pytest.fixture
def site(tmp_path: Path, storage: Path) -> dict[str, Path]:
    """A dataset folder, an embargoed neighbour and a secret outside the storage root."""
    folder, neighbour, state = storage / "open", storage / "embargoed", tmp_path / "state"
    for path in (folder, neighbour, state):
        path.mkdir(parents=True)
    (state / "secret").write_bytes(SECRET)
    with h5py.File(neighbour / "data.h5", "w") as f:
        f["data"] = np.full((64,), EMBARGOED, dtype="i8")
        f["title"] = np.array([b"EMBARGOED-TITLE"])
    return {"folder": folder, "neighbour": neighbour / "data.h5", "secret": state / "secret"}


def leaked(text: str | bytes) -> bool:
    """Whether any part of the secret or of the embargoed values is in `text`."""
    raw = text if isinstance(text, bytes) else text.encode()
    secret_codes = ", ".join(str(b) for b in SECRET[:8])  # the bytes as a JSON list of numbers
    return any(marker in raw for marker in (SECRET[:16], b"EMBARGOED", str(EMBARGOED).encode())) or (
        secret_codes.encode() in raw
    )


def nodes(tree: dict) -> dict[str, dict]:
    found = {tree["path"]: tree}
    for child in tree.get("children", []):
        found.update(nodes(child))
    return found


def refusal(path: Path, dataset: str, **kwargs) -> PanbinderError:
    with pytest.raises(PanbinderError) as caught:
        preview.thumbnail(path, dataset, **kwargs)
    return caught.value


# ---------------------------------------------------------------- external raw storage


def _external_storage_file(folder: Path, secret: Path) -> Path:
    path = folder / "raw.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset(
            "text", shape=(1,), dtype=f"S{len(SECRET)}", external=[(str(secret), 0, len(SECRET))]
        )
        f.create_dataset("bytes", shape=(len(SECRET),), dtype="u1", external=[(str(secret), 0, len(SECRET))])
        relative = os.path.relpath(secret, folder)  # HDF5 takes it from the working directory
        f.create_dataset("relative", shape=(1,), dtype="S16", external=[(relative, 0, 16)])
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        entry.create_dataset("title", shape=(1,), dtype="S32", external=[(str(secret), 0, 32)])
    return path


def test_external_storage_is_never_read_by_the_tree(site, monkeypatch):
    path = _external_storage_file(site["folder"], site["secret"])
    monkeypatch.chdir(site["folder"])
    tree = preview.tree(path)
    assert not leaked(json.dumps(tree))
    found = nodes(tree)
    for name in ("/text", "/bytes", "/relative", "/entry/title"):
        assert "value" not in found[name] and "refused" in found[name]["external_storage"]


@pytest.mark.parametrize("dataset", ["/bytes", "/text"])
def test_external_storage_is_refused_by_thumbnails(site, dataset):
    path = _external_storage_file(site["folder"], site["secret"])
    error = refusal(path, dataset)
    assert error.status_code in (400, 403)
    if dataset == "/bytes":  # numbers: refused as external storage, before any read
        assert error.status_code == 403 and "external storage" in error.message and "raw.h5" in error.message
    assert str(site["folder"]) not in error.message and not leaked(error.message)


def test_external_storage_is_not_read_as_nexus_metadata_and_the_scan_reports_it(site, cat, storage):
    _external_storage_file(site["folder"], site["secret"])
    info = read_nexus(site["folder"] / "raw.h5")
    assert info.title is None and info.refused == ("/entry/title",)
    report = cat.scan(str(storage))
    assert report.refused == ("open/raw.h5: /entry/title",)
    with cat.session() as s:
        titles = [cat.get_dataset(s, pid).title for pid in report.pids]
    assert not any(leaked(title or "") for title in titles)


# ---------------------------------------------------------------- external links


def _links_file(folder: Path, neighbour: Path) -> Path:
    (folder / "inside.h5").symlink_to(neighbour)  # a symlink in the folder, leading out
    with h5py.File(folder / "own.h5", "w") as f:
        f["data"] = np.arange(64.0)
    path = folder / "links.h5"
    with h5py.File(path, "w") as f:
        f["absolute"] = h5py.ExternalLink(str(neighbour), "/data")
        f["relative"] = h5py.ExternalLink("../embargoed/data.h5", "/data")
        f["symlinked"] = h5py.ExternalLink("inside.h5", "/data")
        f["group"] = h5py.ExternalLink(str(neighbour), "/")
        f["through_soft"] = h5py.SoftLink("/group/data")  # a soft link crossing the external one
        f["own"] = h5py.ExternalLink("own.h5", "/data")
        f["moved"] = h5py.ExternalLink("/beamline/raw/2024/own.h5", "/data")  # as HDF5: found here
    return path


OUTSIDE_LINKS = ["/absolute", "/relative", "/symlinked", "/through_soft", "/group/data"]


def test_external_links_out_of_the_folder_are_described_as_refused(site):
    path = _links_file(site["folder"], site["neighbour"])
    tree = preview.tree(path)
    assert not leaked(json.dumps(tree))
    found = nodes(tree)
    for name in ("/absolute", "/relative", "/symlinked", "/group"):
        assert found[name]["kind"] == "external_link" and "outside" in found[name]["refused"], name
    assert found["/through_soft"]["missing"] is True and "refused" in found["/through_soft"]
    assert found["/own"]["missing"] is False and "refused" not in found["/own"]
    assert found["/moved"]["missing"] is False


@pytest.mark.parametrize("dataset", OUTSIDE_LINKS)
def test_external_links_out_of_the_folder_are_refused_by_thumbnails(site, dataset):
    path = _links_file(site["folder"], site["neighbour"])
    error = refusal(path, dataset)
    assert error.status_code == 403 and error.reason == "outside-dataset"
    assert "outside this dataset" in error.message and str(site["folder"]) not in error.message


def test_external_links_inside_the_folder_are_followed(site):
    path = _links_file(site["folder"], site["neighbour"])
    assert preview.thumbnail(path, "/own", size=32).startswith(b"\x89PNG")
    assert preview.thumbnail(path, "/moved", size=32).startswith(b"\x89PNG")


def test_prefix_variable_and_working_directory_are_searched_as_hdf5_does(site, monkeypatch):
    """HDF5_EXT_PREFIX comes before the file's folder: a same-named file there is outside."""
    path = _links_file(site["folder"], site["neighbour"])
    (site["folder"] / "data.h5").symlink_to("own.h5")
    with h5py.File(path, "a") as f:
        f["plain"] = h5py.ExternalLink("data.h5", "/data")
        f["elsewhere"] = h5py.ExternalLink("not-here.h5", "/data")
    assert preview.thumbnail(path, "/plain", size=32).startswith(b"\x89PNG")
    monkeypatch.setenv("HDF5_EXT_PREFIX", str(site["neighbour"].parent))
    assert refusal(path, "/plain").status_code == 403
    monkeypatch.delenv("HDF5_EXT_PREFIX")
    monkeypatch.chdir(site["neighbour"].parent)
    (site["neighbour"].parent / "not-here.h5").symlink_to(site["neighbour"])
    assert refusal(path, "/elsewhere").status_code == 403  # the last place HDF5 looks


def test_candidates_follow_hdf5s_order(tmp_path, monkeypatch):
    monkeypatch.setenv("HDF5_VDS_PREFIX", "${ORIGIN}/sub:/prefix")
    monkeypatch.chdir(tmp_path)
    assert candidates("/a/b/f.h5", Path("/data/ds"), "HDF5_VDS_PREFIX") == [
        Path("/a/b/f.h5"),
        Path("/data/ds/sub/f.h5"),
        Path("/prefix/f.h5"),
        Path("/data/ds/f.h5"),
        tmp_path / "f.h5",
    ]


def test_a_one_file_dataset_reaches_no_other_file(site):
    path = _links_file(site["folder"], site["neighbour"])
    assert refusal(path, "/own", within=path).status_code == 403
    found = nodes(preview.tree(path, within=path))
    assert "refused" in found["/own"]
    with pytest.raises(Refused):
        resolve_file("own.h5", site["folder"], Scope.of(path, within=path), "HDF5_EXT_PREFIX")


# ---------------------------------------------------------------- virtual-dataset sources


def _virtual_file(folder: Path, neighbour: Path, secret: Path) -> Path:
    with h5py.File(folder / "frames.h5", "w") as f:
        f["own"] = np.arange(64, dtype="i8")
        f.create_dataset("stored_elsewhere", shape=(64,), dtype="u1", external=[(str(secret), 0, 64)])
        f["linked_out"] = h5py.ExternalLink(str(neighbour), "/data")
        f.create_dataset("packed", data=np.arange(64, dtype="i8"), chunks=(8,), compression="gzip")
    path = folder / "virtual.h5"
    with h5py.File(path, "w") as f:
        for name, source_file, source in (
            ("absolute", str(neighbour), "data"),
            ("relative", "../embargoed/data.h5", "data"),
            ("symlinked", "inside.h5", "data"),
            ("storage", "frames.h5", "stored_elsewhere"),
            ("through_link", "frames.h5", "linked_out"),
            ("own", "frames.h5", "own"),
            ("compressed", "frames.h5", "packed"),
        ):
            dtype = "u1" if name == "storage" else "i8"
            layout = h5py.VirtualLayout(shape=(64,), dtype=dtype)
            layout[:] = h5py.VirtualSource(source_file, source, shape=(64,), dtype=dtype)
            f.create_virtual_dataset(name, layout, fillvalue=-1 if dtype == "i8" else 0)
        f["link_to_outside"] = h5py.ExternalLink(str(neighbour), "/data")
        layout = h5py.VirtualLayout(shape=(64,), dtype="i8")
        layout[:] = h5py.VirtualSource(".", "link_to_outside", shape=(64,))
        f.create_virtual_dataset("same_file", layout, fillvalue=-1)
        layout = h5py.VirtualLayout(shape=(64,), dtype="i8")
        layout[:] = h5py.VirtualSource(".", "absolute", shape=(64,))
        f.create_virtual_dataset("nested", layout, fillvalue=-1)  # a virtual source, virtual in turn
    (folder / "inside.h5").symlink_to(neighbour)
    return path


@pytest.mark.parametrize(
    "dataset", ["absolute", "relative", "symlinked", "storage", "through_link", "same_file", "nested"]
)
def test_virtual_sources_out_of_the_folder_are_refused(site, dataset):
    path = _virtual_file(site["folder"], site["neighbour"], site["secret"])
    error = refusal(path, dataset)
    assert error.status_code == 403 and error.reason == "outside-dataset", error.message
    assert not leaked(error.message) and str(site["folder"]) not in error.message


def test_virtual_sources_in_the_tree(site):
    path = _virtual_file(site["folder"], site["neighbour"], site["secret"])
    tree = preview.tree(path)
    assert not leaked(json.dumps(tree))
    found = nodes(tree)
    for name in ("/absolute", "/relative", "/symlinked", "/same_file"):
        assert found[name]["missing"] is True and "outside" in found[name]["refused"], name
        assert all("refused" in source for source in found[name]["virtual_sources"])
    assert found["/own"]["missing"] is False and "refused" not in found["/own"]


def test_virtual_sources_inside_the_folder_are_read_here_with_the_bound(site):
    path = _virtual_file(site["folder"], site["neighbour"], site["secret"])
    assert preview.thumbnail(path, "own", size=32).startswith(b"\x89PNG")
    assert preview.thumbnail(path, "compressed", size=32).startswith(b"\x89PNG")  # decoded here
    with h5py.File(site["folder"] / "frames.h5", "a") as f:  # a source chunk inflating past its size
        f["packed"].id.write_direct_chunk((0,), _zeros_stream(64 << 20))
    error = refusal(path, "compressed")
    assert error.status_code == 422 and "no thumbnail" in error.message


def test_virtual_mappings_read_here_match_hdf5(tmp_path):
    """Frames stacked, modules tiled and one strided mapping (left to HDF5, uncompressed only)."""
    from panbinder.data_mounts.h5confine import Files, Scope
    from panbinder.data_mounts.h5virtual import read_virtual

    rng = np.random.default_rng(1)
    tiles = rng.integers(0, 1000, size=(4, 3, 40, 30)).astype("f4")
    with h5py.File(tmp_path / "src.h5", "w") as f:
        f.create_dataset("tiles", data=tiles, chunks=(1, 1, 16, 16), compression="gzip")
        f["odd"] = np.arange(10.0)
    stack = h5py.VirtualLayout(shape=(4, 80, 90), dtype="f4")
    for frame in range(4):
        for row in range(2):
            for col in range(3):
                if (row, col) != (1, 2):  # one gap: the fill value
                    source = h5py.VirtualSource("src.h5", "tiles", shape=(4, 3, 40, 30))
                    stack[frame, row * 40 : row * 40 + 40, col * 30 : col * 30 + 30] = source[frame, col]
    strided = h5py.VirtualLayout(shape=(20,), dtype="f8")
    strided[::2] = h5py.VirtualSource("src.h5", "odd", shape=(10,))
    with h5py.File(tmp_path / "v.h5", "w") as f:
        f.create_virtual_dataset("stack", stack, fillvalue=-5)
        f.create_virtual_dataset("strided", strided, fillvalue=0)
    with h5py.File(tmp_path / "v.h5", "r") as f, Files(f, Scope.of(tmp_path / "v.h5")) as files:
        for selection in [(2, slice(None, None, 3), slice(1, None, 7)), (slice(None), 45, slice(None))]:
            mine = read_virtual(files, f["stack"], selection, lambda ds, sel: ds[sel].astype("f8"), -5.0)
            assert np.array_equal(mine, f["stack"][selection]), selection
        assert read_virtual(files, f["strided"], (slice(None),), lambda ds, sel: ds[sel], 0.0) is None
    assert preview.thumbnail(tmp_path / "v.h5", "strided", size=32).startswith(b"\x89PNG")


# ---------------------------------------------------------------- nothing outside is opened


WATCHER = """
import os, sys, time
path, seen = sys.argv[1], 0
while True:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)  # fails while nobody has it open to read
    except OSError:
        time.sleep(0.002)
        continue
    seen += 1
    print("opened", flush=True)
    os.write(fd, b"not an HDF5 file")
    os.close(fd)
"""


@contextmanager
def watched_fifo(path: Path) -> Iterator[list[str]]:
    """A named pipe at `path`; the list tells, afterwards, how often anything opened it to read.

    The watcher is another process: h5py holds the GIL while HDF5 waits in open().
    """
    os.mkfifo(path)
    opened: list[str] = []
    watcher = subprocess.Popen([sys.executable, "-c", WATCHER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        yield opened
    finally:
        time.sleep(0.1)
        watcher.kill()
        opened += watcher.communicate()[0].split()


def test_files_outside_are_never_opened(site):
    outside = site["neighbour"].parent / "watched.h5"
    path = site["folder"] / "probe.h5"
    with h5py.File(path, "w") as f:
        f["link"] = h5py.ExternalLink(str(outside), "/data")
        f["soft"] = h5py.SoftLink("/link/deeper")
        layout = h5py.VirtualLayout(shape=(8,), dtype="i8")
        layout[:] = h5py.VirtualSource(str(outside), "data", shape=(8,))
        f.create_virtual_dataset("virtual", layout, fillvalue=-1)
        f.attrs["NX_class"] = "NXroot"
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        entry["title"] = h5py.SoftLink("/link/title")
    with watched_fifo(outside) as opened:
        preview.tree(path)
        for dataset in ("/link", "/soft", "/virtual"):
            with pytest.raises(PanbinderError):
                preview.thumbnail(path, dataset)
        read_nexus(path)
    assert opened == []


# ---------------------------------------------------------------- bounded reads


def _zeros_stream(size: int) -> bytes:
    """`size` zero bytes, deflated without ever holding them (about size/1000 bytes)."""
    stream, block = __import__("zlib").compressobj(9), bytes(1 << 20)
    parts = [stream.compress(block) for _ in range(size >> 20)]
    return b"".join(parts) + stream.flush()


@pytest.fixture(scope="module")
def bombs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bombs") / "bombs.h5"
    gib = _zeros_stream(1 << 30)
    with h5py.File(path, "w") as f:
        # one 1 GiB chunk, as written by h5py (only its compressed megabyte is stored)
        big = f.create_dataset(
            "one_big_chunk", shape=(2**27,), dtype="f8", chunks=(2**27,), compression="gzip"
        )
        big.id.write_direct_chunk((0,), gib)
        # 8 KiB chunks whose streams inflate to 1 GiB each
        small = f.create_dataset("inflating", shape=(4096,), dtype="f8", chunks=(1024,), compression="gzip")
        for offset in range(0, 4096, 1024):
            small.id.write_direct_chunk((offset,), gib)
        # 512 KiB chunks holding a 256 MiB stream: stored smaller than the chunk, inflating past it
        over = f.create_dataset(
            "overflowing", shape=(262144,), dtype="f8", chunks=(65536,), compression="gzip"
        )
        over.id.write_direct_chunk((0,), _zeros_stream(256 << 20))
        one = f.create_dataset("one_value", shape=(1,), dtype="S8", chunks=(1,), compression="gzip")
        one.id.write_direct_chunk((0,), gib)
        f.create_dataset("wide_type", shape=(1,), dtype=np.dtype(("f8", (2**24,))))
        f.attrs.create("many", np.array([b"x" * 100] * 1000, dtype=h5py.string_dtype()))
    assert path.stat().st_size < 10 << 20
    return path


def _peak_rise_mib(script: str) -> float:
    """How far a fresh interpreter's peak RSS rises while `script` runs (it defines `run()`)."""
    code = (
        "import resource\n"
        f"{script}\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "run()\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return float(done.stdout.split()[-1])


@pytest.mark.parametrize("dataset", ["one_big_chunk", "inflating", "overflowing"])
def test_decompression_is_bounded_before_it_happens(bombs, dataset):
    error = refusal(bombs, dataset)
    assert error.status_code == 422
    rise = _peak_rise_mib(
        "from panbinder.data_mounts import preview\n"
        "def run():\n"
        "    try:\n"
        f"        preview.thumbnail({str(bombs)!r}, {dataset!r})\n"
        "    except Exception:\n"
        "        pass\n"
        f"    preview.tree({str(bombs)!r})\n"
    )
    assert rise < 100, f"{rise:.0f} MiB"


def test_tree_values_and_attributes_are_bounded(bombs):
    found = nodes(preview.tree(bombs))
    assert "value" not in found["/one_value"] and "not shown" in found["/one_value"]["value_error"]
    assert "value" not in found["/wide_type"]
    assert found["/"]["attributes"]["many"].startswith("<1000 values")


@pytest.mark.parametrize(
    ("dtype", "options"),
    [
        (">f4", {"compression": "gzip", "shuffle": True, "fletcher32": True}),
        ("<i2", {"compression": "gzip", "fillvalue": -3}),
        ("<u8", {"compression": 9, "shuffle": True}),
    ],
)
def test_chunks_decoded_here_match_hdf5(tmp_path, dtype, options):
    """The bounded decoder (shuffle, deflate, Fletcher-32, unwritten chunks, edges) reads what HDF5 reads."""
    from panbinder.data_mounts.h5chunks import read_bounded

    with h5py.File(tmp_path / "c.h5", "w") as f:
        ds = f.create_dataset("x", shape=(1000, 37), dtype=dtype, chunks=(30, 7), **options)
        ds[100:700, 3:30] = np.arange(600 * 27).reshape(600, 27) % 1000
        f.create_dataset("s", data=np.array([b"hello"]), chunks=(1,), compression="gzip")
    with h5py.File(tmp_path / "c.h5", "r") as f:
        for selection in [
            (slice(None, None, 7), slice(1, None, 3)),
            (500, slice(None)),
            (slice(3, 900, 50), 5),
            (),
        ]:
            assert np.array_equal(read_bounded(f["x"], selection), f["x"][selection]), selection
        assert read_bounded(f["s"], ()).tolist() == [b"hello"]


# ---------------------------------------------------------------- loops and counts


def test_link_loops_and_mapping_counts_are_bounded(site, monkeypatch):
    from panbinder.data_mounts import h5confine

    path = site["folder"] / "loops.h5"
    with h5py.File(path, "w") as f:
        f["a"] = h5py.SoftLink("/b")
        f["b"] = h5py.SoftLink("/a")
        f["self"] = h5py.ExternalLink("loops.h5", "/self")  # an external link to itself
        f["data"] = np.arange(16.0)
        layout = h5py.VirtualLayout(shape=(16,), dtype="f8")
        for index in range(4):
            layout[index * 4 : index * 4 + 4] = h5py.VirtualSource(".", "data", shape=(16,))[
                index * 4 : index * 4 + 4
            ]
        f.create_virtual_dataset("many", layout, fillvalue=-1)
    start = time.monotonic()
    for dataset in ("/a", "/self"):
        assert refusal(path, dataset).status_code == 403  # more than MAX_HOPS links
    found = nodes(preview.tree(path))
    assert found["/a"]["missing"] is True and found["/self"]["missing"] is False  # the file is there
    assert preview.thumbnail(path, "/many", size=16).startswith(b"\x89PNG")
    monkeypatch.setattr(h5confine, "MAX_MAPPINGS", 3)
    error = refusal(path, "/many")
    assert error.status_code == 422 and "maps 4 sources" in error.message
    assert time.monotonic() - start < 5
