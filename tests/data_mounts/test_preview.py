"""HDF5/NeXus preview (data_mounts/preview.py, data_mounts/png.py).

Runs tree() and thumbnail() on the seven real facility files in ../shared/data/nexus (copied to a
temporary folder: the Diamond file's virtual dataset must stay without its source), and on small
files written here with h5py, including one of terabyte shape with only a few chunks written.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import time
import tracemalloc
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest

from panbinder.data_mounts import preview
from panbinder.data_mounts.plot_labels import band
from panbinder.data_mounts.png import LINE_COLOUR, SIGNATURE, encode_png
from panbinder.errors import PanbinderError
from tests.shared_data import NEXUS as SHARED_NEXUS

NEXUS = SHARED_NEXUS
EXPECTED = json.loads((NEXUS / "expected.json").read_text())["files"]
DIAMOND = "DLS_i03_i04_NXmx_Therm_6_2.nxs"


# ---------------------------------------------------------------- helpers


def decode_png(data: bytes) -> np.ndarray:
    """A strict little PNG reader for what encode_png writes: checks every CRC, returns pixels."""
    assert data[:8] == SIGNATURE
    chunks, position = [], 8
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        tag = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        (crc,) = struct.unpack(">I", data[position + 8 + length : position + 12 + length])
        assert zlib.crc32(tag + body) == crc, f"bad CRC in {tag!r}"
        chunks.append((tag, body))
        position += 12 + length
    assert position == len(data)
    assert chunks[0][0] == b"IHDR" and chunks[-1] == (b"IEND", b"")
    width, height, depth, colour_type, compression, filtering, interlace = struct.unpack(
        ">IIBBBBB", chunks[0][1]
    )
    assert (depth, compression, filtering, interlace) == (8, 0, 0, 0)
    channels = {0: 1, 2: 3}[colour_type]
    raw = zlib.decompress(b"".join(body for tag, body in chunks if tag == b"IDAT"))
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(height, 1 + width * channels)
    pixels = np.zeros((height, width * channels), dtype=np.uint8)
    previous = np.zeros(width * channels, dtype=np.uint8)
    for y in range(height):
        kind, line = rows[y, 0], rows[y, 1:]
        assert kind in (0, 2), f"filter {kind} not expected"
        pixels[y] = line if kind == 0 else line + previous
        previous = pixels[y]
    return pixels.reshape(height, width, channels) if channels == 3 else pixels


def luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(float) @ np.array([0.299, 0.587, 0.114])


def nodes(tree: dict) -> dict[str, dict]:
    found = {tree["path"]: tree}
    for child in tree.get("children", []):
        found.update(nodes(child))
    return found


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Every thumbnail read, as (selection, shape of what came back)."""
    seen: list[tuple] = []
    real = preview._read

    def counting(ds, selection, dtype):
        values = real(ds, selection, dtype)
        seen.append((selection, values.shape))
        return values

    monkeypatch.setattr(preview, "_read", counting)
    return seen


@pytest.fixture(scope="module")
def nexus_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("nexus")
    for name in EXPECTED:
        shutil.copyfile(NEXUS / name, folder / name)
    return folder


# ---------------------------------------------------------------- PNG


@pytest.mark.parametrize("shape", [(5, 7), (3, 4, 3), (1, 1)])
def test_encode_png_round_trips(shape):
    pixels = np.random.default_rng(1).integers(0, 256, size=shape, dtype=np.uint8)
    png = encode_png(pixels)
    width, height = struct.unpack(">II", png[16:24])
    assert (height, width) == shape[:2]
    assert np.array_equal(decode_png(png), pixels)


@pytest.mark.parametrize(
    "bad", [np.zeros((4, 4), np.float32), np.zeros((4, 4, 4), np.uint8), np.zeros((0, 4), np.uint8)]
)
def test_encode_png_refuses_what_it_cannot_write(bad):
    with pytest.raises(ValueError):
        encode_png(bad)


# ---------------------------------------------------------------- the seven facility files


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_tree_matches_expected(nexus_copy, name):
    expected = EXPECTED[name]
    tree = preview.tree(nexus_copy / name)
    json.dumps(tree, allow_nan=False).encode("utf-8")  # JSON-able, and no lone surrogates
    found = nodes(tree)
    assert tree["kind"] == "group" and tree["file"] == name
    for key, value in expected["root_attributes"].items():
        assert tree["attributes"][key] == value
    for entry in expected["entries"]:
        assert found[f"/{entry}"]["NX_class"] == "NXentry"
    for entry, details in expected["entry_details"].items():
        for field in ("title", "start_time", "end_time"):
            if details[field] is not None:
                assert found[f"/{entry}/{field}"]["value"] == details[field]
        for group in details["instruments"] + details["samples"]:
            if group["name"] is not None:
                assert found[group["path"] + "/name"]["value"] == group["name"]
        for path, nxdata in details["nxdata"].items():
            assert found[path]["NX_class"] == "NXdata"
            for dataset in [nxdata["signal"], *(nxdata["axes"] or [])]:
                node = found[dataset["path"]]
                assert (node["kind"], node["shape"], node["dtype"]) == (
                    "dataset",
                    dataset["shape"],
                    dataset["dtype"],
                )
    for image in expected["detector_images"]:
        node = found[image["path"]]
        assert (node["shape"], node["dtype"]) == (image["shape"], image["dtype"])
    for path in expected["virtual_datasets"]:
        assert found[path]["is_virtual"] is True
    for link in expected["links"]["external"]:
        node = found[link["path"]]
        assert node["kind"] == "external_link"
        assert (node["file"], node["target"], node["missing"]) == (
            link["file"],
            link["target"],
            not link["target_available"],
        )
    for paths in expected["links"]["hard_linked_paths"]:
        present = [found[path] for path in paths if path in found]
        originals = [node for node in present if "same_as" not in node]
        assert len(originals) == 1, paths
        assert all(node["same_as"] in paths for node in present if "same_as" in node)


def test_tree_decodes_latin1_units_and_nexus_v1_signal(nexus_copy):
    found = nodes(preview.tree(nexus_copy / "scan101.nxs"))
    assert found["/com_05551/SIXS/Monochromator/wavelength"]["attributes"]["units"] == "Å"
    units = {node["attributes"].get("units") for node in found.values() if "attributes" in node}
    assert {"°", "Å"} <= units
    assert found["/com_05551/scan_data/data_01"]["attributes"]["signal"] == 1
    sinq = nodes(preview.tree(nexus_copy / "sans2009n012333.hdf"))
    assert sinq["/entry1/data1/counts"]["attributes"]["signal"] == "1"


def test_diamond_virtual_dataset_is_described_not_read(nexus_copy, reads):
    found = nodes(preview.tree(nexus_copy / DIAMOND))
    node = found["/entry/data/data"]
    assert node["shape"] == [488, 4362, 4148] and node["is_virtual"] is True and node["missing"] is True
    assert node["virtual_sources"] == [
        {
            "file": ".",
            "dataset": "/entry/data/data_000001",
            "external_file": "Therm_6_2_000001.h5",
            "missing": True,
        }
    ]
    assert "value" not in node
    assert found["/entry/sample/beam"]["same_as"] == "/entry/instrument/beam"
    with pytest.raises(PanbinderError) as caught:
        preview.thumbnail(nexus_copy / DIAMOND, "/entry/data/data")
    assert caught.value.status_code == 409
    assert "Therm_6_2_000001.h5" in caught.value.message and "missing" in caught.value.message
    assert reads == []  # refused before reading a single value
    with pytest.raises(PanbinderError) as caught:
        preview.thumbnail(nexus_copy / DIAMOND, "/entry/data/data_000001")
    assert caught.value.status_code == 404 and "Therm_6_2_000001.h5" in caught.value.message


def _drawable_datasets() -> list[tuple[str, str]]:
    found = set()
    for name, expected in EXPECTED.items():
        for details in expected["entry_details"].values():
            for nxdata in details["nxdata"].values():
                found.add((name, nxdata["signal"]["path"]))
        for image in expected["detector_images"]:
            found.add((name, image["path"]))
    return sorted(item for item in found if item[0] != DIAMOND)


@pytest.mark.parametrize(("name", "dataset"), _drawable_datasets())
def test_thumbnail_of_every_signal_and_detector_image(nexus_copy, reads, name, dataset):
    png = preview.thumbnail(nexus_copy / name, dataset, size=128)
    pixels = decode_png(png)
    assert pixels.ndim == 3 and max(pixels.shape[:2]) <= 128 and min(pixels.shape[:2]) >= 1
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 2  # something was drawn
    assert sum(np.prod(shape) for _, shape in reads) <= 4_000_000


def test_real_images_keep_their_orientation(nexus_copy):
    side = band()  # default plots get labels below and on the left (test_preview_plot.py)
    scan = decode_png(preview.thumbnail(nexus_copy / "scan101.nxs", "/com_05551/scan_data/data_01"))
    assert scan.shape == (192 + side, 112 + side, 3)  # 960 x 560, the leading axis of length 1 dropped
    sans = decode_png(preview.thumbnail(nexus_copy / "sans2009n012333.hdf", "/entry1/SANS/detector/counts"))
    assert sans.shape == (256, 256, 3)  # 128 x 128, shown twice as large (not an NXdata: no labels)
    chopper = decode_png(preview.thumbnail(nexus_copy / "chopper.nxs", "/entry/data/data"))
    assert chopper.shape == (37 + side, 188 + side, 3)  # 148 x 750, aspect kept


def test_shared_files_are_untouched(nexus_copy):
    for name in EXPECTED:
        assert (nexus_copy / name).read_bytes() == (NEXUS / name).read_bytes()


# ---------------------------------------------------------------- written fixtures


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    path = tmp_path / "sample.nxs"
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        entry = f.create_group("entry")
        entry.attrs.update(NX_class="NXentry", default="data")
        spectrum = np.zeros(1_000_000)
        spectrum[123_457] = 50.0
        entry["spectrum"] = spectrum
        entry["decades"] = np.logspace(0, 6, 1000)
        image = rng.random((512, 512)).astype(np.float32)
        image[100:200, 300:400] = 100.0
        entry.create_dataset("image", data=image, chunks=(64, 64), compression="gzip")
        stack = np.zeros((5, 64, 32), dtype=np.uint16)
        stack[:, :, 16:] = 1000
        stack[2] = 0
        stack[2, :, :16] = 1000  # only the middle frame is bright on the left
        entry["stack"] = stack
        entry["title"] = np.array([b"Vesicles at 800 bar"])
        entry["notes"] = "\u00b0C and \u00c5"
        entry["empty"] = np.zeros((0,), dtype=np.float32)
        entry["scalar"] = 3.5
        entry["null"] = h5py.Empty("f4")
        entry["nan_image"] = np.full((8, 8), np.nan)
        entry["table"] = np.array([(1, 2.0)] * 4, dtype=[("a", "i4"), ("b", "f8")])
        entry["gone"] = h5py.ExternalLink("never_written.h5", "/data")
        entry["dangling"] = h5py.SoftLink("/entry/nowhere")
        entry["alias"] = h5py.SoftLink("/entry/title")
        attrs = entry["image"].attrs
        attrs["units"] = np.bytes_(b"\xc5")
        attrs["count"] = np.int64(7)
        attrs["one"] = np.array([2.5])
        attrs["long"] = np.arange(100)
        attrs["bad"] = np.float64("nan")
        attrs.create("vlen", np.array([b"\xb0C"], dtype=h5py.string_dtype("utf-8")))
        many = f.create_group("many")
        for i in range(250):
            many[f"d{i:03d}"] = i
        deep = f
        for level in range(20):
            deep = deep.create_group(f"level{level}")
        f["entry/again"] = entry["title"]  # a hard link
        f["entry/loop"] = entry  # a hard link back to an ancestor
    return path


def test_tree_of_written_file(sample):
    tree = preview.tree(sample)
    json.dumps(tree, allow_nan=False).encode("utf-8")
    found = nodes(tree)
    image = found["/entry/image"]
    assert (image["shape"], image["dtype"], image["chunks"], image["compression"]) == (
        [512, 512],
        "float32",
        [64, 64],
        "gzip",
    )
    assert "value" not in image and "value" not in found["/entry/spectrum"]
    assert image["attributes"] == {
        "units": "Å",
        "count": 7,
        "one": 2.5,
        "long": [*range(20), "... (80 more)"],
        "bad": "nan",
        "vlen": "°C",
    }
    assert found["/entry/title"]["value"] == "Vesicles at 800 bar"
    assert (
        found["/entry/notes"]["value"] == "°C and Å" and found["/entry/notes"]["dtype"] == "vlen utf-8 string"
    )
    assert found["/entry/scalar"]["value"] == 3.5
    assert found["/entry/null"]["value"] is None
    assert found["/entry"]["NX_class"] == "NXentry"
    assert found["/entry/gone"] == {
        "name": "gone",
        "path": "/entry/gone",
        "kind": "external_link",
        "file": "never_written.h5",
        "target": "/data",
        "missing": True,
    }
    assert found["/entry/dangling"]["kind"] == "soft_link" and found["/entry/dangling"]["missing"] is True
    assert found["/entry/alias"]["missing"] is False
    assert found["/entry/title"]["same_as"] == "/entry/again"  # names are visited in order
    assert found["/entry/again"]["value"] == "Vesicles at 800 bar"
    assert found["/entry/loop"]["same_as"] == "/entry" and "children" not in found["/entry/loop"]
    assert len(found["/many"]["children"]) == 200 and found["/many"]["truncated"] == 50
    deepest = max((path for path in found if path.startswith("/level0")), key=len)
    assert deepest.count("/") == 12 and found[deepest]["truncated"] == 1


def test_tree_limits_are_parameters(sample):
    found = nodes(preview.tree(sample, max_children=3, max_depth=1))
    assert len(found["/many"]["children"]) == 0 and found["/many"]["truncated"] == 250
    assert len(found["/"]["children"]) == 3


def test_line_plot_keeps_a_one_sample_spike(sample, reads):
    pixels = decode_png(preview.thumbnail(sample, "/entry/spectrum", size=200))
    assert pixels.shape == (150, 200, 3)
    line = np.all(pixels == LINE_COLOUR, axis=2)
    rows, cols = np.nonzero(line)
    assert rows.min() <= 10  # the spike reaches the top of the frame ...
    assert np.ptp(cols[rows <= 10]) <= 2  # ... in one narrow place
    assert reads == [((slice(None, None, 1),), (1_000_000,))]


def test_line_plot_uses_log_scale_over_many_decades(sample):
    pixels = decode_png(preview.thumbnail(sample, "/entry/decades", size=200))
    rows, cols = np.nonzero(np.all(pixels == LINE_COLOUR, axis=2))
    middle = rows[cols == (cols.min() + cols.max()) // 2].mean()
    assert abs(middle - (rows.min() + rows.max()) / 2) < 4  # a straight line on a log axis


def test_image_shows_the_bright_square(sample):
    pixels = decode_png(preview.thumbnail(sample, "/entry/image", size=256))
    assert pixels.shape == (256, 256, 3)
    light = luminance(pixels)
    square = light[50:100, 150:200]  # data rows 100:200, columns 300:400, halved
    outside = np.concatenate([light[:40].ravel(), light[120:].ravel()])
    assert square.min() > 200 and outside.mean() < 120


def test_stack_draws_the_middle_frame(sample, reads):
    pixels = decode_png(preview.thumbnail(sample, "/entry/stack", size=256))
    assert pixels.shape == (256, 128, 3)  # 64 x 32, four times as large
    light = luminance(pixels)
    assert light[:, :64].mean() > light[:, 64:].mean() + 100
    assert [selection[0] for selection, _ in reads] == [2]


@pytest.mark.parametrize(
    ("dataset", "status", "words"),
    [
        ("/entry/title", 400, "nothing to draw"),
        ("/entry/notes", 400, "nothing to draw"),
        ("/entry/empty", 400, "empty"),
        ("/entry/scalar", 400, "single value"),
        ("/entry/null", 400, "nothing to draw"),
        ("/entry/table", 400, "nothing to draw"),
        ("/entry/nan_image", 400, "no finite numbers"),
        ("/entry", 400, "is a group"),
        ("/entry/missing", 404, "no dataset"),
        ("/entry/gone", 404, "never_written.h5"),
        ("/entry/dangling", 404, "no dataset"),
    ],
)
def test_thumbnail_refusals_say_why(sample, dataset, status, words):
    with pytest.raises(PanbinderError) as caught:
        preview.thumbnail(sample, dataset)
    assert caught.value.status_code == status
    assert words in caught.value.message


def test_unreadable_files_are_refused(tmp_path):
    with pytest.raises(PanbinderError) as caught:
        preview.tree(tmp_path / "absent.h5")
    assert caught.value.status_code == 404
    (tmp_path / "notes.txt").write_text("not HDF5")
    with pytest.raises(PanbinderError) as caught:
        preview.thumbnail(tmp_path / "notes.txt", "/data")
    assert caught.value.status_code == 422


def test_nan_and_infinity_are_ignored_for_scaling(tmp_path):
    data = np.arange(64.0).reshape(8, 8)
    data[0, 0], data[0, 1], data[0, 2] = np.nan, np.inf, -np.inf
    with h5py.File(tmp_path / "nan.h5", "w") as f:
        f["d"] = data
    pixels = decode_png(preview.thumbnail(tmp_path / "nan.h5", "d", size=16))
    assert pixels.shape == (16, 16, 3)
    assert (pixels[0, 0] == 255).all()  # NaN is white
    assert luminance(pixels[-1, -1:]).item() > luminance(pixels[2, 2:3]).item()


# ---------------------------------------------------------------- virtual datasets


def _write_vds(folder: Path) -> Path:
    for index in range(3):
        with h5py.File(folder / f"frame{index}.h5", "w") as f:
            f["data"] = np.full((16, 16), 10 * (index + 1), dtype=np.int32)
    layout = h5py.VirtualLayout(shape=(3, 16, 16), dtype=np.int32)
    for index in range(3):
        layout[index] = h5py.VirtualSource(f"frame{index}.h5", "data", shape=(16, 16))
    with h5py.File(folder / "master.h5", "w") as f:
        f.create_virtual_dataset("stack", layout, fillvalue=-1)
    return folder / "master.h5"


def test_virtual_dataset_reads_its_sources_relative_to_the_file(tmp_path, monkeypatch):
    master = _write_vds(tmp_path)
    monkeypatch.chdir("/")
    sources = nodes(preview.tree(master))["/stack"]["virtual_sources"]
    assert [(s["file"], s["missing"]) for s in sources] == [(f"frame{i}.h5", False) for i in range(3)]
    assert nodes(preview.tree(master))["/stack"]["missing"] is False
    assert decode_png(preview.thumbnail(master, "stack", size=16)).shape == (16, 16, 3)


def test_virtual_dataset_missing_source_is_reported_only_when_shown(tmp_path, reads):
    master = _write_vds(tmp_path)
    (tmp_path / "frame0.h5").unlink()
    sources = nodes(preview.tree(master))["/stack"]["virtual_sources"]
    assert [s["missing"] for s in sources] == [True, False, False]
    assert nodes(preview.tree(master))["/stack"]["missing"] is True
    preview.thumbnail(master, "stack", size=16)  # the middle frame's source is there
    (tmp_path / "frame1.h5").unlink()
    reads.clear()
    with pytest.raises(PanbinderError) as caught:
        preview.thumbnail(master, "stack", size=16)
    assert caught.value.status_code == 409 and "frame1.h5" in caught.value.message
    assert "frame0.h5" not in caught.value.message and reads == []


# ---------------------------------------------------------------- terabyte shape


@pytest.fixture(scope="module")
def huge(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("huge") / "huge.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset(
            "data", shape=(1_000_000, 1_000_000), dtype="f4", chunks=(256, 256), compression="gzip"
        )
        block = np.ones((256, 256), dtype=np.float32)
        for row in (0, 500_000, 999_744):
            ds[row : row + 256, 500_000 : 500_000 + 256] = block
    assert path.stat().st_size < 10_000_000
    return path


def _bounded_thumbnail(path: Path) -> tuple[bytes, float, int]:
    tracemalloc.start()
    start = time.perf_counter()
    try:
        png = preview.thumbnail(path, "/data", size=256)
        return png, time.perf_counter() - start, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_terabyte_shaped_dataset_is_previewed_quickly(huge, reads):
    node = nodes(preview.tree(huge))["/data"]
    assert node["shape"] == [1_000_000, 1_000_000] and node["chunks"] == [256, 256]
    png, seconds, peak = _bounded_thumbnail(huge)
    assert decode_png(png).shape == (256, 256, 3)
    assert seconds < 5 and peak < 200 * 2**20
    assert sum(np.prod(shape) for _, shape in reads) <= 4_000_000
    # only written chunks holding a sample (every 500th row and column) were read
    assert [selection for selection, _ in reads] == [
        (slice(0, 256, 500), slice(500_000, 500_224, 500)),
        (slice(500_000, 500_224, 500), slice(500_000, 500_224, 500)),
    ]


def test_terabyte_shaped_dataset_read_densely_touches_few_chunks(huge, reads, monkeypatch):
    monkeypatch.setattr(preview, "MAX_SPARSE_SCAN", 0)  # as if too many chunks were written
    png, seconds, peak = _bounded_thumbnail(huge)
    assert 128 < decode_png(png).shape[0] <= 256
    assert seconds < 5 and peak < 200 * 2**20
    [(selection, shape)] = reads
    assert all(axis.step >= 256 for axis in selection)  # each sample in its own chunk ...
    assert np.prod(shape) <= preview.MAX_CHUNKS  # ... and few chunks


# ---------------------------------------------------------------- cache


def test_thumbnail_cache(sample, tmp_path, monkeypatch):
    cache = preview.ThumbnailCache(tmp_path / "cache")
    made: list[str] = []
    real = preview.thumbnail

    def counting(path, dataset_path, **kwargs):
        made.append(dataset_path)
        return real(path, dataset_path, **kwargs)

    monkeypatch.setattr(preview, "thumbnail", counting)
    first = cache.get_or_make(sample, "/entry/image", 64)
    assert cache.get_or_make(sample, "entry/image", 64) == first
    assert made == ["/entry/image"]
    assert [p.suffix for p in (tmp_path / "cache").iterdir()] == [".png"]  # no temporary files left
    cache.get_or_make(sample, "/entry/image", 32)
    stat = sample.stat()
    os.utime(sample, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    cache.get_or_make(sample, "/entry/image", 64)
    assert len(made) == 3
    with pytest.raises(PanbinderError):
        cache.get_or_make(sample, "/entry/title", 64)
    with pytest.raises(PanbinderError) as caught:
        cache.get_or_make(tmp_path / "absent.h5", "/data", 64)
    assert caught.value.status_code == 404
