"""Reading a virtual dataset from its sources here, so HDF5 never opens or decodes them itself.

When HDF5 reads a virtual dataset it finds each source file by its own rules and inflates the
sources' chunks without a bound. Here each mapping that a read touches is resolved through
h5confine (confined to the dataset's location), its source dataset read with the caller's
bounded reader, and the values placed into the result. Mappings are handled when each side is
one block (the usual frame stacks and detector-module tilings: `layout[i] = source`); for any
other pattern `read_virtual` returns None and the caller decides.
"""

from __future__ import annotations

from collections.abc import Callable

import h5py
import numpy as np

from .h5confine import VDS_PREFIX, Files, lookup, mappings

Block = list[tuple[int, int]]  # (start, length) per axis


def read_virtual(
    files: Files,
    ds: h5py.Dataset,
    selection: tuple,
    read: Callable[[h5py.Dataset, tuple], np.ndarray],
    fill: float,
) -> np.ndarray | None:
    """`ds[selection]` (one integer or slice per axis) as floats, assembled from the sources.

    Each source is read with `read(source, selection_in_source)`; unmapped places keep `fill`.
    None when a touched mapping is not one block on each side, or maps onto a virtual source.
    """
    picks = [_indices(item, n) for item, n in zip(selection, ds.shape, strict=True)]
    out = np.full([len(p) for p in picks], fill, dtype=np.float64)
    for mapping in mappings(ds):
        vblock = _block(mapping.vspace, ds.shape)
        if vblock is None:
            return None
        inside = [
            (p >= start) & (p < start + length) for p, (start, length) in zip(picks, vblock, strict=True)
        ]
        if not all(m.any() for m in inside):
            continue
        source = lookup(files, files.resolve(mapping.file_name, ds.file, VDS_PREFIX), mapping.dset_name)
        if not isinstance(source, h5py.Dataset) or source.is_virtual:
            return None
        sblock = _block(mapping.src_space, source.shape)
        wanted = _source_selection(picks, inside, vblock, sblock)
        if wanted is None:
            return None
        values = np.asarray(read(source, wanted))
        target = np.ix_(*(np.nonzero(m)[0] for m in inside))
        out[target] = values.reshape([int(m.sum()) for m in inside])
    fixed = tuple(0 if isinstance(item, int | np.integer) else slice(None) for item in selection)
    return out[fixed]


def _indices(item: int | slice, length: int) -> np.ndarray:
    return np.arange(*item.indices(length)) if isinstance(item, slice) else np.array([item])


def _block(space: h5py.h5s.SpaceID, shape: tuple[int, ...] | None) -> Block | None:
    """The selection as one block, or None when it is scattered (points, strided blocks)."""
    kind = space.get_select_type()
    if kind == h5py.h5s.SEL_ALL and shape is not None:
        return [(0, n) for n in shape]
    if kind != h5py.h5s.SEL_HYPERSLABS or not space.is_regular_hyperslab():
        return None
    start, stride, count, block = space.get_regular_hyperslab()
    if any(c != 1 and s != b for s, c, b in zip(stride, count, block, strict=True)):
        return None
    return [(int(s), int(c * b)) for s, c, b in zip(start, count, block, strict=True)]


def _source_selection(
    picks: list[np.ndarray], inside: list[np.ndarray], vblock: Block, sblock: Block | None
) -> tuple | None:
    """The source selection matching the picked places, axes of length 1 left out on each side."""
    if sblock is None:
        return None
    vaxes = [k for k, (_, length) in enumerate(vblock) if length != 1]
    saxes = [k for k, (_, length) in enumerate(sblock) if length != 1]
    if [vblock[k][1] for k in vaxes] != [sblock[k][1] for k in saxes]:
        return None
    wanted: list[int | slice] = [start for start, _ in sblock]
    for v, s in zip(vaxes, saxes, strict=True):
        places = picks[v][inside[v]] - vblock[v][0] + sblock[s][0]
        step = int(places[1] - places[0]) if len(places) > 1 else 1
        wanted[s] = slice(int(places[0]), int(places[-1]) + 1, step)
    return tuple(wanted)
