"""Compressed detector data (Eiger, Jungfrau, AGIPD...): HDF5 filter plugins, names and bounds.

Detector files use filter plugins (bitshuffle with LZ4 or Zstandard, Blosc, LZ4, Zstandard)
that `hdf5plugin` registers when it is imported (the preview worker imports it before its
children chroot; preview_worker.preload). Unlike deflate, these codecs write the size of what
they decode in a header at the start of each chunk, and the plugin allocates exactly that
before decoding. So a chunk is decoded by HDF5 only after its header has been read here and
states the chunk's own size (h5chunks.read_bounded); a chunk stating more is refused. The
plugin must be the last filter applied (only shuffle before it, Fletcher-32 after it).

A dataset whose filter is not available names the filter in its refusal (id and name), so a
reader or operator knows what is missing.
"""

from __future__ import annotations

import struct

import h5py

from .h5confine import TooCostly

# registered HDF5 filter ids (https://github.com/HDFGroup/hdf5_plugins/blob/master/docs/RegisteredFilterPlugins.md)
NAMES = {
    1: "deflate",
    2: "shuffle",
    3: "Fletcher-32",
    4: "szip",
    5: "n-bit",
    6: "scale-offset",
    307: "bzip2",
    32000: "LZF",
    32001: "Blosc",
    32004: "LZ4",
    32008: "bitshuffle",
    32013: "zfp",
    32015: "Zstandard",
    32017: "SZ",
    32018: "FCIDECOMP",
    32024: "SZ3",
    32026: "Blosc2",
}
BLOSC, LZ4, BITSHUFFLE, ZSTD = 32001, 32004, 32008, 32015
SIZED = (BLOSC, LZ4, BITSHUFFLE, ZSTD)  # plugins whose chunks state their decoded size
ZSTD_MAGIC = 0xFD2FB528


class FilterUnavailable(TooCostly):
    """The dataset's filter is not installed here: the refusal names it."""

    reason = "filter-unavailable"

    def __init__(self, filter_id: int) -> None:
        super().__init__(
            f"it is compressed with {describe(filter_id)}, which is not available on this server "
            "(the operator can install hdf5plugin, or the filter's plugin)"
        )
        self.filter_id = filter_id


class NotStated(ValueError):
    """A chunk header that does not say (or cannot say) how large the chunk decodes."""


def describe(filter_id: int) -> str:
    """'filter 32001 (Blosc)': the id and, when registered, the name."""
    name = NAMES.get(filter_id)
    return (
        f"HDF5 filter {filter_id} ({name})" if name else f"HDF5 filter {filter_id} (not a registered filter)"
    )


def available(filter_id: int) -> bool:
    try:
        return bool(h5py.h5z.filter_avail(filter_id))
    except Exception:  # h5py raises for ids outside HDF5's range
        return False


def stated_size(filter_id: int, options: tuple[int, ...], raw: bytes) -> int:
    """The decoded size a chunk's header states, which the plugin allocates before decoding."""
    if filter_id == BLOSC:
        if len(raw) < 16:
            raise NotStated("a Blosc chunk is shorter than its header")
        return struct.unpack_from("<I", raw, 4)[0]
    if filter_id == LZ4 or (filter_id == BITSHUFFLE and len(options) > 4 and options[4] in (2, 3)):
        if len(raw) < 12:
            raise NotStated("a chunk is shorter than its header")
        return struct.unpack_from(">Q", raw, 0)[0]
    if filter_id == BITSHUFFLE:  # no compression: decodes to as many bytes as it stores
        return len(raw)
    if filter_id == ZSTD:
        return _zstd_content_size(raw)
    raise NotStated(f"{describe(filter_id)} is not decoded by the preview")


def _zstd_content_size(raw: bytes) -> int:
    """The frame content size of a Zstandard frame header (RFC 8878, 3.1.1.1)."""
    if len(raw) < 6 or struct.unpack_from("<I", raw, 0)[0] != ZSTD_MAGIC:
        raise NotStated("a chunk is not a Zstandard frame")
    descriptor = raw[4]
    size_flag, single_segment, dict_flag = descriptor >> 6, (descriptor >> 5) & 1, descriptor & 3
    position = 5 + (0 if single_segment else 1) + (0, 1, 2, 4)[dict_flag]
    width = (1 if single_segment else 0, 2, 4, 8)[size_flag]
    if width == 0:
        raise NotStated("a Zstandard chunk does not state its size")
    if len(raw) < position + width:
        raise NotStated("a Zstandard chunk is shorter than its header")
    value = int.from_bytes(raw[position : position + width], "little")
    return value + 256 if width == 2 else value
