"""Reading dataset values with the memory bounded before anything is decompressed.

HDF5 decompresses whole chunks, and its filters size their output from the data they are given:
deflate grows its buffer until the compressed stream ends, whatever the chunk's shape says. A
4.7 MB file holding one 1 GiB chunk of zeros raised the portal from 127 MB to 1.19 GB on one
thumbnail request, and an 8 KiB chunk whose stream inflates to 1 GiB does the same (four such
chunks: 4.1 GB). So filtered chunks are never handed to HDF5's filters: a chunk larger than
MAX_ONE_CHUNK_BYTES uncompressed is refused, and the others are read raw (`read_direct_chunk`)
and decoded here (shuffle, deflate, Fletcher-32), inflating no further than the chunk's own
size. The detector plugins (bitshuffle, Blosc, LZ4, Zstandard; h5plugins.py) state each
chunk's decoded size in a header: that header is checked here, then HDF5 decodes the one chunk.
Other filters (szip, n-bit, scale-offset, LZF, bzip2...) take their output size from the file,
so their datasets are refused; a filter not installed is refused by its id and name.
Unfiltered data needs no care: HDF5 reads only the selection.
"""

from __future__ import annotations

import itertools
import math
import zlib

import h5py
import numpy as np

from . import h5plugins
from .h5confine import TooCostly
from .h5files import dtype_name, is_vlen

__all__ = ["MAX_ONE_CHUNK_BYTES", "TooCostly", "check_readable", "filters", "read_bounded"]

MAX_ONE_CHUNK_BYTES = 64 << 20  # a filtered chunk larger than this, uncompressed, is not read
MAX_CHUNKS_PER_READ = 65_536  # chunks one read may decode (a time bound; memory is per chunk)
DECODED = {
    h5py.h5z.FILTER_SHUFFLE: "shuffle",
    h5py.h5z.FILTER_DEFLATE: "deflate",
    h5py.h5z.FILTER_FLETCHER32: "fletcher32",
}


def filters(ds: h5py.Dataset) -> list[int]:
    """The dataset's filter ids in the order they were applied when writing."""
    plist = ds.id.get_create_plist()
    return [plist.get_filter(index)[0] for index in range(plist.get_nfilters())]


def check_readable(ds: h5py.Dataset) -> list[int]:
    """The dataset's filters, once its chunks are known to be decodable within the bound."""
    pipeline = filters(ds)
    if not pipeline:
        return pipeline
    for filter_id in pipeline:
        if filter_id not in DECODED and not h5plugins.available(filter_id):
            raise h5plugins.FilterUnavailable(filter_id)
    unknown = [f for f in pipeline if f not in DECODED]
    if unknown and _plugin_position(pipeline) is None:
        raise TooCostly(
            f"it is compressed with {h5plugins.describe(unknown[0])}, which the preview does not "
            "decode within its memory bound"
        )
    if is_vlen(ds.dtype):
        raise TooCostly(f"its {dtype_name(ds.dtype)} values are compressed")
    chunk_bytes = math.prod(ds.chunks) * ds.dtype.itemsize
    if chunk_bytes > MAX_ONE_CHUNK_BYTES:
        raise TooCostly(
            f"each of its chunks holds {chunk_bytes >> 20} MiB uncompressed, more than the preview's "
            f"{MAX_ONE_CHUNK_BYTES >> 20} MiB"
        )
    return pipeline


def _plugin_position(pipeline: list[int]) -> int | None:
    """Where the one size-stating plugin is: last but for Fletcher-32, only shuffle before it."""
    plugins = [i for i, f in enumerate(pipeline) if f not in DECODED]
    if len(plugins) != 1 or pipeline[plugins[0]] not in h5plugins.SIZED:
        return None
    before, after = pipeline[: plugins[0]], pipeline[plugins[0] + 1 :]
    if any(f != h5py.h5z.FILTER_SHUFFLE for f in before):
        return None
    if any(f != h5py.h5z.FILTER_FLETCHER32 for f in after):
        return None
    return plugins[0]


def read_bounded(ds: h5py.Dataset, selection: tuple) -> np.ndarray:
    """`ds[selection]` (integers and slices, one per axis, or () for all), decompression bounded.

    The caller bounds how many chunks the selection touches; each is decoded on its own.
    """
    pipeline = check_readable(ds)
    if not pipeline:
        return np.asarray(ds[selection])
    shape = ds.shape
    picks = [
        _indices(item, n) for item, n in zip(selection or (slice(None),) * len(shape), shape, strict=True)
    ]
    out = np.full([len(p) for p in picks], ds.fillvalue, dtype=ds.dtype)
    per_axis = [np.unique(p // c) for p, c in zip(picks, ds.chunks, strict=True)]
    if math.prod(len(chunks) for chunks in per_axis) > MAX_CHUNKS_PER_READ:
        raise TooCostly(f"the values asked for lie in more than {MAX_CHUNKS_PER_READ} compressed chunks")
    for index in itertools.product(*per_axis):
        offset = tuple(int(i) * c for i, c in zip(index, ds.chunks, strict=True))
        block = _decode(ds, offset, pipeline)
        if block is None:
            continue  # never written: the fill value
        inside = [(p >= o) & (p < o + c) for p, o, c in zip(picks, offset, ds.chunks, strict=True)]
        target = np.ix_(*(np.nonzero(m)[0] for m in inside))
        source = np.ix_(*(p[m] - o for p, m, o in zip(picks, inside, offset, strict=True)))
        out[target] = block[source]
    fixed = tuple(0 if isinstance(item, int | np.integer) else slice(None) for item in selection)
    return out[fixed] if fixed else out


def _indices(item: int | slice, length: int) -> np.ndarray:
    if isinstance(item, slice):
        return np.arange(*item.indices(length))
    return np.array([item])


def _decode(ds: h5py.Dataset, offset: tuple[int, ...], pipeline: list[int]) -> np.ndarray | None:
    """One chunk, decoded here; None when it was never written."""
    chunk_bytes = math.prod(ds.chunks) * ds.dtype.itemsize
    info = ds.id.get_chunk_info_by_coord(offset)
    if info.byte_offset is None:
        return None
    if info.size > chunk_bytes + chunk_bytes // 100 + 1024:  # more than deflate ever adds
        raise TooCostly(f"a chunk claims {info.size} stored bytes for {chunk_bytes} of values")
    mask, raw = ds.id.read_direct_chunk(offset)
    plugin = _plugin_position(pipeline)
    if plugin is not None:
        return _decode_by_plugin(ds, offset, pipeline[plugin], plugin, mask, raw, chunk_bytes)
    for position in reversed(range(len(pipeline))):
        if mask & (1 << position):
            continue  # this filter was skipped for this chunk
        if pipeline[position] == h5py.h5z.FILTER_FLETCHER32:
            raw = raw[:-4]
        elif pipeline[position] == h5py.h5z.FILTER_DEFLATE:
            raw = _inflate(raw, chunk_bytes)
        else:
            raw = _unshuffle(raw, ds.dtype.itemsize)
    if len(raw) != chunk_bytes:
        raise TooCostly(f"a chunk decodes to {len(raw)} bytes instead of {chunk_bytes}")
    return np.frombuffer(raw, dtype=ds.dtype).reshape(ds.chunks)


def _decode_by_plugin(
    ds: h5py.Dataset, offset: tuple[int, ...], plugin: int, position: int, mask: int, raw: bytes, size: int
) -> np.ndarray:
    """One chunk decoded by HDF5's plugin, once its header states no more than `size` bytes."""
    if not mask & (1 << position):  # the plugin ran on this chunk: check what it will allocate
        options = ds.id.get_create_plist().get_filter(position)[2]
        try:
            stated = h5plugins.stated_size(plugin, tuple(options), raw)
        except h5plugins.NotStated as error:
            raise TooCostly(str(error)) from None
        if stated != size:
            raise TooCostly(f"a chunk states {stated} bytes decoded instead of its {size}")
    region = tuple(slice(o, min(o + c, n)) for o, c, n in zip(offset, ds.chunks, ds.shape, strict=True))
    block = np.full(ds.chunks, ds.fillvalue, dtype=ds.dtype)
    values = ds[region]
    block[tuple(slice(0, n) for n in values.shape)] = values
    return block


def _inflate(raw: bytes, limit: int) -> bytes:
    stream = zlib.decompressobj()
    try:
        out = stream.decompress(raw, limit)
        more = stream.decompress(stream.unconsumed_tail, 1) if stream.unconsumed_tail else b""
    except zlib.error as error:
        raise TooCostly(f"a chunk is not valid deflate data ({error})") from None
    if more:
        raise TooCostly("a chunk inflates to more than its own size")
    return out


def _unshuffle(raw: bytes, itemsize: int) -> bytes:
    """HDF5's shuffle undone: byte k of every element was stored together; leftover bytes stay."""
    count = len(raw) // itemsize
    if itemsize <= 1 or count <= 1:
        return raw
    body = np.frombuffer(raw, dtype=np.uint8, count=count * itemsize).reshape(itemsize, count)
    return body.T.tobytes() + raw[count * itemsize :]
