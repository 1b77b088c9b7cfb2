"""HDF5/NeXus preview for a dataset card: the file's tree as JSON-able data, and PNG thumbnails.

Neither function loads a large dataset. `tree` (h5tree.py) reads metadata, attributes and only
tiny values. `thumbnail` reads a strided selection of at most `max_read_elements` values that
touches a bounded number of chunks (sampling.py), and draws it with numpy (thumbnails.py).

Confinement: a preview reaches only files inside the dataset's location (`within`: its folder,
or the file itself for a one-file dataset; the file's own folder when not given). External
links and virtual-dataset sources are resolved as HDF5 resolves them and followed only when
they stay inside; otherwise they are described as refused (tree) or refused with a 403
(thumbnail), and never opened. A dataset with external raw storage is never read. Links are
followed by h5confine.py, not by HDF5. Missing virtual-dataset sources are found before any
read, because HDF5 silently returns fill values for them.

Bounds: compressed chunks are decoded by h5chunks.py, never inflating past a chunk's own size,
and a chunk above MAX_ONE_CHUNK_BYTES uncompressed is refused before it is read.
`ThumbnailCache` keeps thumbnails on disk.

The bounded read stays in this module: the tests wrap `_read` and the tests and benchmarks
lower `MAX_SPARSE_SCAN` here.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from panbinder.errors import PanbinderError

from .h5chunks import MAX_ONE_CHUNK_BYTES, TooCostly, check_readable, filters, read_bounded
from .h5confine import Files, Missing, Refused, Scope, check_sources, external_storage, lookup
from .h5files import dtype_name, file_not_found, jsonable, open_file
from .h5tree import tree
from .h5virtual import read_virtual
from .preview_plot import default_plot, getter, labels
from .sampling import chunk_selection, chunk_steps, chunks_touched, element_steps
from .thumbnails import nothing_to_draw, render

__all__ = [
    "MAX_CHUNKS",
    "MAX_CHUNK_BYTES",
    "MAX_ONE_CHUNK_BYTES",
    "MAX_SPARSE_SCAN",
    "ThumbnailCache",
    "jsonable",
    "thumbnail",
    "tree",
]

MAX_CHUNKS = 4096  # a thumbnail read touches at most this many chunks ...
MAX_CHUNK_BYTES = 256 << 20  # ... holding at most this many uncompressed bytes (at least one chunk)
MAX_SPARSE_SCAN = 65_536  # allocated chunks listed to detect a sparsely written dataset


def thumbnail(
    path: str | Path,
    dataset_path: str,
    *,
    size: int = 256,
    max_read_elements: int = 4_000_000,
    within: str | Path | None = None,
) -> bytes:
    """A PNG thumbnail of a numeric dataset, at most `size` pixels wide and high.

    `dataset_path` may name a group ("/", an NXentry, an NXdata): NeXus's default plot below it
    is drawn (preview_plot.py). A default plot's signal is framed by its axis labels, units and
    end values (from 128 pixels up).

    1-D data becomes a line plot (min/max per pixel column, log scale over > 3 decades). 2-D
    data, or the 2-D slice of N-D data at the middle index of the leading axes, becomes a viridis
    image scaled between the 1st and 99th percentile. Axes of length 1 do not count. At most
    `max_read_elements` values are read, with strides; missing virtual sources are reported
    (PanbinderError 409) instead of drawing their fill values. Links, sources and storage
    outside `within` (the dataset's location; default: the file's folder) are refused (403).
    """
    if not 16 <= size <= 4096 or max_read_elements < 1:
        raise PanbinderError(
            "Ask for a thumbnail between 16 and 4096 pixels wide",
            reason="bad-thumbnail-size",
            log_message=f"thumbnail: size={size} max_read_elements={max_read_elements}",
            status_code=400,
        )
    path = Path(path)
    scope = Scope.of(path, within)
    shown = scope.shown(path)
    with open_file(path) as file, Files(file, scope) as files:
        get = getter(files, file)
        plot = default_plot(get, dataset_path)
        ds = _dataset(files, file, plot.signal if plot else dataset_path, shown)
        axes = _drawable_axes(ds)
        fixed = [None if i in axes else n // 2 for i, n in enumerate(ds.shape)]
        _require_bounded(files, ds, shown, fixed)
        dtype = np.float64 if len(axes) == 1 else np.float32
        try:
            if ds.is_virtual:
                values = _read_virtual_sampled(files, ds, shown, fixed, axes, max_read_elements, dtype)
            else:
                values = _read_sampled(ds, axes, fixed, max_read_elements, dtype)
        except TooCostly as costly:  # found chunk by chunk: a chunk inflating beyond its size
            raise _too_costly(ds.name, shown, costly) from None
        except Refused as refused:  # a source changed since it was checked
            raise _outside(ds.name, shown, refused) from None
        except (OSError, Missing) as error:
            raise PanbinderError(
                f"{ds.name} in {shown} could not be read; download the file or contact the facility",
                reason="read-failed",
                log_message=f"thumbnail: reading {ds.name} in {path}: {error}",
                status_code=422,
            ) from None
        lengths = [ds.shape[i] for i in axes]
        name = ds.name  # h5py forgets it once the file is closed
        text = labels(get, plot, axes) if plot else None
    return render(values, lengths, name, size, text)


def _read(ds: h5py.Dataset, selection: tuple, dtype: type[np.floating]) -> np.ndarray:
    """Every thumbnail read goes through here (the tests wrap it to count what is read)."""
    if filters(ds):  # compressed: decoded chunk by chunk, bounded (h5chunks.py)
        return np.asarray(read_bounded(ds, selection), dtype=dtype)
    if ds.dtype.kind in "iuf" and h5py.check_enum_dtype(ds.dtype) is None:
        return np.asarray(ds.astype(dtype)[selection])  # HDF5 converts while reading: no copy
    return np.asarray(ds[selection], dtype=dtype)


def _dataset(files: Files, file: h5py.File, dataset_path: str, shown: str) -> h5py.Dataset:
    name = "/" + dataset_path.strip("/")
    try:
        obj = lookup(files, file, name)
    except Refused as refused:
        raise _outside(name, shown, refused) from None
    except Missing as gone:
        if gone.file:
            message = (
                f"{name} in {shown} {gone.what}; ask the facility for that file, or preview another dataset"
            )
            raise PanbinderError(message, reason="external-link-missing", status_code=404) from None
        obj = None
    except Exception:
        obj = None
    if isinstance(obj, h5py.Dataset):
        return obj
    if obj is not None:
        message = (
            f"{name} in {shown} is a group, not a dataset, and NeXus names no default plot "
            "(@default, NXdata @signal) below it; pick a dataset from the file's tree"
        )
        raise PanbinderError(message, reason="not-a-dataset", status_code=400)
    message = f"There is no dataset {name} in {shown}; pick a dataset from the file's tree"
    raise PanbinderError(message, reason="dataset-not-found", status_code=404)


def _outside(name: str, shown: str, refused: Refused) -> PanbinderError:
    return PanbinderError(
        f"{name} in {shown} cannot be previewed: {refused.what}. A preview reads only this "
        "dataset's own files; ask the facility to keep linked data inside the dataset",
        reason="outside-dataset",
        log_message=f"preview: {shown}:{name} refused: {refused.what}",
        status_code=403,
    )


def _require_bounded(files: Files, ds: h5py.Dataset, shown: str, fixed: list[int | None]) -> None:
    """Refuse, before any read, what reaches outside the dataset or cannot be read within bounds."""
    if external_storage(ds):
        what = "its values are kept in another file (external storage), which is never read"
        raise _outside(ds.name, shown, Refused(what))
    try:
        check_readable(ds)
    except TooCostly as costly:
        raise _too_costly(ds.name, shown, costly) from None
    if ds.is_virtual:
        _require_sources(files, ds, shown, fixed)


def _unfiltered(source: h5py.Dataset) -> None:
    """HDF5 decodes a virtual dataset's sources itself, unbounded: it reads only unfiltered ones."""
    if filters(source):
        raise TooCostly(f"its source {source.name} is compressed, and sources are only read uncompressed")


def _too_costly(name: str, shown: str, costly: TooCostly) -> PanbinderError:
    return PanbinderError(
        f"{name} in {shown} has no thumbnail: {costly.why}. Download the file to look at it",
        reason=getattr(costly, "reason", "too-costly"),
        log_message=f"thumbnail: {shown}:{name}: {costly.why}",
        status_code=422,
    )


def _drawable_axes(ds: h5py.Dataset) -> list[int]:
    """The one or two axes to draw: the last two axes longer than 1."""
    if ds.dtype.kind not in "biuf":
        raise nothing_to_draw(ds.name, f"it holds {dtype_name(ds.dtype)} values, not numbers")
    if ds.shape is None or ds.size == 0:  # None: an HDF5 null dataspace
        raise nothing_to_draw(ds.name, "it is empty")
    axes = [i for i, n in enumerate(ds.shape) if n > 1]
    if not axes:
        raise nothing_to_draw(ds.name, "it holds a single value")
    return axes[-2:]


def _require_sources(
    files: Files,
    ds: h5py.Dataset,
    shown: str,
    fixed: list[int | None],
    check: Callable[[h5py.Dataset], None] | None = None,
) -> None:
    region = [
        (0, n - 1) if index is None else (index, index) for index, n in zip(fixed, ds.shape, strict=True)
    ]
    try:
        missing = check_sources(files, ds, region, check=check)
    except Refused as refused:
        raise _outside(ds.name, shown, refused) from None
    except TooCostly as costly:
        raise _too_costly(ds.name, shown, costly) from None
    if missing:
        names = ", ".join(sorted(set(missing))[:5]) + (" and more" if len(set(missing)) > 5 else "")
        raise PanbinderError(
            f"The virtual dataset {ds.name} in {shown} cannot be previewed: its source file {names} "
            "is missing. Ask the facility to restore it next to the file, or preview another dataset",
            reason="virtual-source-missing",
            log_message=f"thumbnail: {shown}:{ds.name} missing virtual sources {sorted(set(missing))}",
            status_code=409,
        )


def _read_sampled(
    ds: h5py.Dataset, axes: list[int], fixed: list[int | None], budget: int, dtype: type[np.floating]
) -> np.ndarray:
    """Read every step-th value along the drawn axes, with steps chosen for the element budget.

    A chunked dataset is read touching at most MAX_CHUNKS chunks (HDF5 allocates per chunk
    touched), unless few of its chunks are written: then only those chunks are read, and the
    rest is the fill value.
    """
    lengths = [ds.shape[i] for i in axes]
    steps = element_steps(lengths, budget)
    if ds.chunks is not None:
        chunk_sizes = [ds.chunks[i] for i in axes]
        chunk_bytes = math.prod(ds.chunks) * ds.dtype.itemsize
        allowed = max(1, min(MAX_CHUNKS, MAX_CHUNK_BYTES // chunk_bytes))
        if chunks_touched(lengths, steps, chunk_sizes) > allowed:
            written = _written_chunks(ds, axes, fixed, steps)
            if written is not None and len(written) <= allowed:
                shape = tuple(math.ceil(n / s) for n, s in zip(lengths, steps, strict=True))
                values = np.full(shape, float(ds.fillvalue), dtype=dtype)
                for source, target in written:
                    values[target] = _read(ds, source, dtype)
                return values
            steps = chunk_steps(lengths, steps, chunk_sizes, allowed)
    return _read(ds, _selection(axes, fixed, steps), dtype)


def _selection(axes: list[int], fixed: list[int | None], steps: list[int]) -> tuple:
    return tuple(slice(None, None, steps[axes.index(i)]) if f is None else f for i, f in enumerate(fixed))


def _read_virtual_sampled(
    files: Files,
    ds: h5py.Dataset,
    shown: str,
    fixed: list[int | None],
    axes: list[int],
    budget: int,
    dtype: type,
) -> np.ndarray:
    """A virtual dataset's samples read from its sources here (h5virtual.py), each read bounded.

    Only when a mapping is not a plain block does HDF5 read it, and then only if every source
    it touches is uncompressed (HDF5 would inflate them without a bound).
    """
    selection = _selection(axes, fixed, element_steps([ds.shape[i] for i in axes], budget))
    fill = float(ds.fillvalue)
    values = read_virtual(files, ds, selection, lambda source, wanted: _read(source, wanted, dtype), fill)
    if values is not None:
        return values.astype(dtype)
    _require_sources(files, ds, shown, fixed, check=_unfiltered)
    return _read(ds, selection, dtype)


def _written_chunks(
    ds: h5py.Dataset, axes: list[int], fixed: list[int | None], steps: list[int]
) -> list[tuple[tuple, tuple]] | None:
    """(source, target) selections for the written chunks holding samples; None if too many."""
    offsets: list[tuple[int, ...]] = []

    def visit(info: Any) -> bool | None:
        offsets.append(info.chunk_offset)
        return True if len(offsets) > MAX_SPARSE_SCAN else None

    try:
        ds.id.chunk_iter(visit)
    except Exception:  # HDF5 before 1.12.3 cannot list chunks: read densely
        return None
    if len(offsets) > MAX_SPARSE_SCAN:
        return None
    found = (chunk_selection(ds, offset, axes, fixed, steps) for offset in offsets)
    return [pair for pair in found if pair is not None]


# ---------------------------------------------------------------- cache


class ThumbnailCache:
    """Thumbnails on disk, named by a hash of (absolute path, file size, mtime_ns, dataset, size).

    A changed file gets new names, so entries never go stale; old ones can be deleted at will.
    Files are written to a temporary name and renamed, so readers never see half a PNG.
    """

    def __init__(self, cache_dir: str | Path, *, max_read_elements: int = 4_000_000) -> None:
        self.cache_dir = Path(cache_dir)
        self.max_read_elements = max_read_elements

    def key(self, path: str | Path, dataset_path: str, size: int, within: str | Path | None = None) -> str:
        path = Path(path).absolute()
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise file_not_found(path) from None
        dataset = "/" + dataset_path.strip("/")
        scope = str(Scope.of(path, within).location)
        identity = [str(path), stat.st_size, stat.st_mtime_ns, dataset, size, self.max_read_elements, scope]
        return hashlib.sha256(json.dumps(identity).encode()).hexdigest()

    def file_for(
        self, path: str | Path, dataset_path: str, size: int = 256, within: str | Path | None = None
    ) -> Path:
        """Where the thumbnail of this (file state, dataset, size, location) is kept."""
        return self.cache_dir / f"{self.key(path, dataset_path, size, within)}.png"

    @staticmethod
    def store(target: Path, png: bytes) -> None:
        """Write to a temporary name and rename, so readers never see half a PNG."""
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".png")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(png)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def get_or_make(
        self, path: str | Path, dataset_path: str, size: int = 256, *, within: str | Path | None = None
    ) -> bytes:
        """In-process variant (tests, benchmarks); the portal draws through the sandbox."""
        target = self.file_for(path, dataset_path, size, within)
        try:
            return target.read_bytes()
        except FileNotFoundError:
            pass
        png = thumbnail(
            path, dataset_path, size=size, max_read_elements=self.max_read_elements, within=within
        )
        self.store(target, png)
        return png
