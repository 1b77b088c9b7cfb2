"""Compressed detector data (data_mounts/h5plugins.py, h5chunks.py): the hdf5plugin codecs that
Eiger, Jungfrau and AGIPD files use preview like uncompressed data; a chunk whose header states
more than its own size is refused before the plugin allocates it; a filter that is not installed,
or not decodable within the bound, is named in the refusal."""

from __future__ import annotations

import struct
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np
import pytest

from panbinder.data_mounts import h5plugins, preview
from panbinder.errors import PanbinderError

IMAGE = (np.arange(96 * 80, dtype=np.uint16).reshape(96, 80) % 251) * 7
CODECS = {
    "bitshuffle_lz4": hdf5plugin.Bitshuffle(cname="lz4"),
    "bitshuffle_zstd": hdf5plugin.Bitshuffle(cname="zstd"),
    "bitshuffle_plain": hdf5plugin.Bitshuffle(cname="none"),
    "blosc": hdf5plugin.Blosc(cname="lz4", shuffle=hdf5plugin.Blosc.SHUFFLE),
    "blosc_zstd": hdf5plugin.Blosc(cname="zstd", shuffle=hdf5plugin.Blosc.BITSHUFFLE),
    "lz4": hdf5plugin.LZ4(),
    "zstd": hdf5plugin.Zstd(),
}
UNREGISTERED = 60123  # no plugin provides it


@pytest.fixture
def detector(tmp_path: Path) -> Path:
    return write_detector_file(tmp_path / "detector.h5")


def write_detector_file(path: Path) -> Path:
    """The same image plain, through each codec, with an unregistered filter and as a forged chunk."""
    with h5py.File(path, "w") as f:
        f["plain"] = IMAGE
        for name, codec in CODECS.items():
            f.create_dataset(name, data=IMAGE, chunks=(32, 40), **codec)
        f.create_dataset("shuffled_blosc", data=IMAGE, chunks=(32, 40), shuffle=True, **CODECS["blosc"])
        f.create_dataset("bzip2", data=IMAGE, chunks=(32, 40), **hdf5plugin.BZip2())
        unknown = f.create_dataset(
            "unknown",
            shape=(4, 4),
            dtype="u2",
            chunks=(4, 4),
            compression=UNREGISTERED,
            allow_unknown_filter=True,
        )
        unknown.id.write_direct_chunk((0, 0), b"\x00" * 32)
        bomb = f.create_dataset("bomb", data=IMAGE, chunks=(32, 40), **CODECS["blosc"])
        mask, raw = bomb.id.read_direct_chunk((0, 0))
        forged = bytearray(raw)
        struct.pack_into("<I", forged, 4, 1 << 31)  # states 2 GiB decoded for a 2.5 KB chunk
        bomb.id.write_direct_chunk((0, 0), bytes(forged), mask)
    return path


@pytest.mark.parametrize("name", [*CODECS, "shuffled_blosc"])
def test_plugin_compressed_chunks_preview_like_plain_data(detector, name):
    assert preview.thumbnail(detector, f"/{name}", size=64) == preview.thumbnail(detector, "/plain", size=64)


def test_a_filter_no_plugin_provides_is_named(detector):
    with pytest.raises(PanbinderError) as caught:
        preview.thumbnail(detector, "/unknown")
    error = caught.value
    assert (error.status_code, error.reason) == (422, "filter-unavailable")
    assert f"HDF5 filter {UNREGISTERED} (not a registered filter)" in error.message
    assert "not available on this server" in error.message


def test_an_unavailable_registered_filter_says_its_name(monkeypatch, detector):
    monkeypatch.setattr(h5plugins, "available", lambda filter_id: filter_id != h5plugins.BLOSC)
    with pytest.raises(PanbinderError) as caught:
        preview.thumbnail(detector, "/blosc")
    assert "HDF5 filter 32001 (Blosc), which is not available on this server" in caught.value.message


def test_a_filter_that_sizes_its_output_from_the_file_is_refused_by_name(detector):
    with pytest.raises(PanbinderError) as caught:
        preview.thumbnail(detector, "/bzip2")
    assert caught.value.reason == "too-costly"
    assert "HDF5 filter 307 (bzip2), which the preview does not decode" in caught.value.message


def test_a_chunk_stating_more_than_its_size_is_refused_before_decoding(detector):
    with pytest.raises(PanbinderError) as caught:
        preview.thumbnail(detector, "/bomb")
    assert caught.value.status_code == 422
    assert f"states {1 << 31} bytes decoded instead of its {32 * 40 * 2}" in caught.value.message


@pytest.mark.parametrize(
    ("header", "size"),
    [
        (bytes([0x28, 0xB5, 0x2F, 0xFD, 0x20, 0x40]), 0x40),  # single segment, 1-byte size
        (bytes([0x28, 0xB5, 0x2F, 0xFD, 0x40, 0x00, 0x10, 0x00]), 0x10 + 256),  # window byte, 2-byte size
        (bytes([0x28, 0xB5, 0x2F, 0xFD, 0x80, 0x00]) + (5000).to_bytes(4, "little"), 5000),
    ],
)
def test_zstandard_frame_sizes_are_read_from_the_header(header, size):
    assert h5plugins.stated_size(h5plugins.ZSTD, (), header) == size


def test_a_zstandard_frame_without_its_size_is_not_decoded():
    with pytest.raises(h5plugins.NotStated):
        h5plugins.stated_size(h5plugins.ZSTD, (), bytes([0x28, 0xB5, 0x2F, 0xFD, 0x00, 0x00, 0x00]))


def test_the_tree_names_plugin_filters_and_says_which_are_missing(detector):
    found = {node["path"]: node for node in preview.tree(detector)["children"]}
    assert found["/bitshuffle_lz4"]["compression"] == "HDF5 filter 32008 (bitshuffle)"
    assert "compression_unavailable" not in found["/bitshuffle_lz4"]
    assert found["/plain"]["compression"] is None
    unknown = found["/unknown"]
    assert unknown["compression"] == f"HDF5 filter {UNREGISTERED} (not a registered filter)"
    assert unknown["compression_unavailable"] == f"not available on this server: {unknown['compression']}"
