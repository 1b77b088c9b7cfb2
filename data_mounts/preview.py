"""HDF5/NeXus preview for a dataset card: the file's tree as JSON-able data, and PNG thumbnails.

Neither function loads a large dataset. `tree` reads metadata, attributes and only tiny values.
`thumbnail` reads a strided selection of at most `max_read_elements` values that touches a
bounded number of chunks, and reduces it with numpy. External links are described, never
followed, and missing virtual-dataset sources are found before any read, because HDF5 silently
returns fill values for them.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from panbinder.data_mounts.png import colourise, encode_png, line_plot
from panbinder.errors import PanbinderError

MAX_LIST_ITEMS = 20  # longer attribute arrays are cut, with a "... N more" marker
MAX_TEXT = 2000  # longer strings are cut, with a marker
MAX_ATTRIBUTE_BYTES = 1 << 20  # larger attributes are described, not read
MAX_VALUE_STRING_BYTES = 256  # fixed-length string datasets up to this size are shown in the tree
MAX_NODES = 50_000  # whole-tree cap, on top of max_children and max_depth
MAX_CHUNKS = 4096  # a thumbnail read touches at most this many chunks ...
MAX_CHUNK_BYTES = 256 << 20  # ... holding at most this many uncompressed bytes (at least one chunk)
MAX_SPARSE_SCAN = 65_536  # allocated chunks listed to detect a sparsely written dataset


# ---------------------------------------------------------------- opening files and values


def _file_not_found(path: Path) -> PanbinderError:
    return PanbinderError(
        f"The file {path.name} does not exist any more; check the dataset's storage location "
        "or contact the facility",
        reason="file-not-found",
        log_message=f"preview: {path} not found",
        status_code=404,
    )


def _open(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except FileNotFoundError:
        raise _file_not_found(path) from None
    except OSError as error:
        raise PanbinderError(
            f"{path.name} is not a readable HDF5/NeXus file, so it has no preview; download it instead",
            reason="not-hdf5",
            log_message=f"preview: cannot open {path}: {error}",
            status_code=422,
        ) from None


def _text(raw: bytes | str) -> str:
    """Text decoded as UTF-8, else Latin-1 (also under h5py's surrogate escapes), cut when long."""
    if isinstance(raw, str) and any("\udc80" <= ch <= "\udcff" for ch in raw):
        try:
            raw = raw.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            raw = raw.encode("utf-8", "replace")
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raw = raw.decode("latin-1")
    if len(raw) > MAX_TEXT:
        return f"{raw[:MAX_TEXT]}... ({len(raw) - MAX_TEXT} more characters)"
    return raw


def jsonable(value: Any) -> Any:
    """An attribute or small dataset value as JSON data: text decoded, numpy unwrapped, lists cut."""
    if isinstance(value, bytes | str):
        return _text(value)
    if isinstance(value, h5py.Empty):
        return None
    if isinstance(value, h5py.Reference | h5py.RegionReference):
        return "<object reference>" if value else "<null reference>"
    if isinstance(value, np.ndarray):
        if value.size == 1:
            return jsonable(value.reshape(-1)[0])
        items = [jsonable(item) for item in value.reshape(-1)[:MAX_LIST_ITEMS]]
        if value.size > MAX_LIST_ITEMS:
            items.append(f"... ({value.size - MAX_LIST_ITEMS} more)")
        return items
    if isinstance(value, np.void) and value.dtype.names:
        return {name: jsonable(value[name]) for name in value.dtype.names}
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "nan", "inf": JSON has no spelling for them
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, bytes | str):
        return _text(value)
    return str(value)


def _attributes(obj: h5py.HLObject) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name in obj.attrs:
        try:
            attr = obj.attrs.get_id(name)
            if attr.get_storage_size() > MAX_ATTRIBUTE_BYTES:
                result[name] = f"<{attr.get_storage_size()} bytes of {attr.dtype}, not shown>"
            else:
                result[name] = jsonable(obj.attrs[name])
        except Exception as error:  # an unusual type must not hide the rest of the file
            result[name] = f"<unreadable: {type(error).__name__}>"
    return result


def _dtype_name(dtype: np.dtype) -> str:
    info = h5py.check_string_dtype(dtype)
    if info is not None and info.length is None:
        return f"vlen {info.encoding} string"
    return str(dtype)


# ---------------------------------------------------------------- tree


def tree(path: str | Path, *, max_children: int = 200, max_depth: int = 12) -> dict:
    """The group/dataset tree of an HDF5 file, as JSON-able data (the root group's node).

    Every node has name, path, kind (group, dataset, datatype, external_link, soft_link or
    missing) and attributes, plus NX_class when set. Datasets add shape, dtype, chunks,
    compression, is_virtual and `value` when tiny; virtual ones list their sources, each with a
    `missing` flag, and are `missing` themselves when any source is.
    A group or object reached again through a hard link names its first path in `same_as`, and
    a group's `truncated` counts children cut by max_children, max_depth or the node cap.
    """
    path = Path(path)
    with _open(path) as file:
        walker = _TreeWalker(file, path.absolute().parent, max_children, max_depth)
        root = walker.group(file["/"], "/", "/", 0)
    root["file"] = path.name
    return root


class _TreeWalker:
    def __init__(self, file: h5py.File, folder: Path, max_children: int, max_depth: int) -> None:
        self.file, self.folder = file, folder
        self.max_children, self.max_depth = max_children, max_depth
        self.seen: dict[int, str] = {}  # object identity (equal for hard links) -> first path
        self.nodes = 0

    def group(self, group: h5py.Group, name: str, path: str, depth: int) -> dict:
        node = self._object(group, name, path, "group")
        if "same_as" in node:
            return node
        total = len(group)
        children: list[dict] = []
        if depth < self.max_depth:
            for child in group:
                if len(children) >= self.max_children or self.nodes >= MAX_NODES:
                    break
                children.append(self.child(group, child, f"{path.rstrip('/')}/{child}", depth + 1))
        node["children"] = children
        if total > len(children):
            node["truncated"] = total - len(children)
        return node

    def child(self, parent: h5py.Group, name: str, path: str, depth: int) -> dict:
        self.nodes += 1
        try:
            link = parent.get(name, getlink=True)
        except Exception:
            link = None
        if isinstance(link, h5py.ExternalLink):
            target = _beside(self.folder, link.filename)
            return {
                "name": name,
                "path": path,
                "kind": "external_link",
                "file": _text(link.filename),
                "target": _text(link.path),
                "missing": not target.is_file(),
            }
        if isinstance(link, h5py.SoftLink):
            missing = parent.get(link.path, getlink=True) is None
            return {"name": name, "path": path, "kind": "soft_link", "target": link.path, "missing": missing}
        try:
            obj = parent[name]
        except Exception as error:
            return {"name": name, "path": path, "kind": "missing", "error": type(error).__name__}
        if isinstance(obj, h5py.Group):
            return self.group(obj, name, path, depth)
        if isinstance(obj, h5py.Dataset):
            return self.dataset(obj, name, path)
        node = self._object(obj, name, path, "datatype")
        node["dtype"] = _dtype_name(obj.dtype)
        return node

    def dataset(self, ds: h5py.Dataset, name: str, path: str) -> dict:
        node = self._object(ds, name, path, "dataset")
        node.update(
            shape=None if ds.shape is None else list(ds.shape),  # None: an HDF5 null dataspace
            dtype=_dtype_name(ds.dtype),
            chunks=list(ds.chunks) if ds.chunks else None,
            compression=ds.compression,
            is_virtual=ds.is_virtual,
        )
        if ds.is_virtual:
            sources = _virtual_sources(self.file, ds, self.folder)
            node["missing"] = any(source["missing"] for source in sources)
            node["virtual_sources"] = sources[: self.max_children]
            if len(sources) > self.max_children:
                node["virtual_sources_truncated"] = len(sources) - self.max_children
        elif _is_tiny(ds):
            try:
                node["value"] = jsonable(ds[()])
            except Exception as error:
                node["value_error"] = type(error).__name__
        return node

    def _object(self, obj: h5py.HLObject, name: str, path: str, kind: str) -> dict:
        node: dict[str, Any] = {"name": name, "path": path, "kind": kind}
        first = self.seen.setdefault(hash(obj.id), path)
        if first != path:
            node["same_as"] = first
            if kind == "group":  # described once; this also stops hard-link cycles
                nx_class = obj.attrs.get("NX_class")
                if nx_class is not None:
                    node["NX_class"] = jsonable(nx_class)
                return node
        attributes = _attributes(obj)
        if isinstance(attributes.get("NX_class"), str):
            node["NX_class"] = attributes["NX_class"]
        node["attributes"] = attributes
        return node


def _is_tiny(ds: h5py.Dataset) -> bool:
    if ds.size is None or ds.size == 1:  # a null dataspace reads as h5py.Empty: shown as null
        return True
    if ds.size == 0:
        return False
    info = h5py.check_string_dtype(ds.dtype)
    return info is not None and info.length is not None and ds.size * info.length <= MAX_VALUE_STRING_BYTES


def _beside(folder: Path, file_name: str | bytes) -> Path:
    """Where HDF5 looks for a linked file: absolute, or relative to the linking file's folder.

    (HDF5 also honours HDF5_EXT_PREFIX / HDF5_VDS_PREFIX and the working directory; a service
    previewing files from a catalogue does not set those.)
    """
    name = os.fsdecode(file_name)
    return Path(name) if os.path.isabs(name) else folder / name


def _virtual_sources(
    file: h5py.File,
    ds: h5py.Dataset,
    folder: Path,
    *,
    region: list[tuple[int, int]] | None = None,
    deep: bool = False,
) -> list[dict]:
    """One entry per distinct (file, dataset) source, optionally only those mapped into `region`.

    A source is missing when its file does not exist; a source in this same file (".") is
    missing when its path does not resolve without leaving the file (an external link there is
    checked like a file). With `deep`, existing source files are opened and the dataset looked up.
    """
    sources: dict[tuple[str, str], dict] = {}
    for mapping in ds.virtual_sources():
        key = (mapping.file_name, mapping.dset_name)
        if key in sources or (region is not None and not _overlaps(mapping.vspace, region)):
            continue
        source: dict[str, Any] = {"file": _text(mapping.file_name), "dataset": _text(mapping.dset_name)}
        if mapping.file_name == ".":
            link = file.get(mapping.dset_name, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                source["external_file"] = _text(link.filename)
                source["missing"] = not _beside(folder, link.filename).is_file()
            else:
                source["missing"] = link is None
            if deep and not source["missing"]:
                source["missing"] = file.get(mapping.dset_name) is None
        else:
            target = _beside(folder, mapping.file_name)
            source["missing"] = not target.is_file() or (deep and not _has_dataset(target, mapping.dset_name))
        sources[key] = source
    return list(sources.values())


def _has_dataset(path: Path, name: str) -> bool:
    try:
        with h5py.File(path, "r") as source:
            return isinstance(source.get(name), h5py.Dataset)
    except OSError:
        return False


def _overlaps(space: h5py.h5s.SpaceID, region: list[tuple[int, int]]) -> bool:
    try:
        start, end = space.get_select_bounds()
    except Exception:
        return True  # an unusual (e.g. unlimited) mapping: assume it is read
    return all(s <= hi and e >= lo for s, e, (lo, hi) in zip(start, end, region, strict=False))


# ---------------------------------------------------------------- thumbnails


def thumbnail(
    path: str | Path, dataset_path: str, *, size: int = 256, max_read_elements: int = 4_000_000
) -> bytes:
    """A PNG thumbnail of a numeric dataset, at most `size` pixels wide and high.

    1-D data becomes a line plot (min/max per pixel column, log scale over > 3 decades). 2-D
    data, or the 2-D slice of N-D data at the middle index of the leading axes, becomes a viridis
    image scaled between the 1st and 99th percentile. Axes of length 1 do not count. At most
    `max_read_elements` values are read, with strides; missing virtual sources are reported
    (PanbinderError 409) instead of drawing their fill values.
    """
    if not 16 <= size <= 4096 or max_read_elements < 1:
        raise PanbinderError(
            "Ask for a thumbnail between 16 and 4096 pixels wide",
            reason="bad-thumbnail-size",
            log_message=f"thumbnail: size={size} max_read_elements={max_read_elements}",
            status_code=400,
        )
    path = Path(path)
    with _open(path) as file:
        ds = _dataset(file, dataset_path, path.name)
        axes = _drawable_axes(ds)
        fixed = [None if i in axes else n // 2 for i, n in enumerate(ds.shape)]
        if ds.is_virtual:
            _require_sources(file, ds, path, fixed)
        dtype = np.float64 if len(axes) == 1 else np.float32
        try:
            values = _read_sampled(ds, axes, fixed, max_read_elements, dtype)
        except OSError as error:
            raise PanbinderError(
                f"{ds.name} in {path.name} could not be read; download the file or contact the facility",
                reason="read-failed",
                log_message=f"thumbnail: reading {ds.name} in {path}: {error}",
                status_code=422,
            ) from None
        lengths = [ds.shape[i] for i in axes]
    values[~np.isfinite(values)] = np.nan
    if values.ndim == 1:
        plot = _normalise(values, ds.name, percentiles=False)
        return encode_png(line_plot(plot, width=size, height=max(32, size * 3 // 4)))
    image = _normalise(_reduce(values, lengths, size), ds.name, percentiles=True)
    repeat = size // max(image.shape)
    if repeat > 1:
        image = image.repeat(repeat, axis=0).repeat(repeat, axis=1)
    return encode_png(colourise(image))


def _read(ds: h5py.Dataset, selection: tuple, dtype: type[np.floating]) -> np.ndarray:
    """Every thumbnail read goes through here (the tests wrap it to count what is read)."""
    if ds.dtype.kind in "iuf" and h5py.check_enum_dtype(ds.dtype) is None:
        return np.asarray(ds.astype(dtype)[selection])  # HDF5 converts while reading: no copy
    return np.asarray(ds[selection], dtype=dtype)


def _dataset(file: h5py.File, dataset_path: str, file_name: str) -> h5py.Dataset:
    name = "/" + dataset_path.strip("/")
    try:
        obj = file.get(name)
        link = None if obj is not None else file.get(name, getlink=True)
    except Exception:
        obj = link = None
    if isinstance(obj, h5py.Dataset):
        return obj
    if obj is not None:
        message = f"{name} in {file_name} is a group, not a dataset; pick a dataset from the file's tree"
        raise PanbinderError(message, reason="not-a-dataset", status_code=400)
    if isinstance(link, h5py.ExternalLink):
        message = (
            f"{name} in {file_name} links to {link.filename}, which is missing (or lacks {link.path}); "
            "ask the facility for that file, or preview another dataset"
        )
        raise PanbinderError(message, reason="external-link-missing", status_code=404)
    message = f"There is no dataset {name} in {file_name}; pick a dataset from the file's tree"
    raise PanbinderError(message, reason="dataset-not-found", status_code=404)


def _nothing_to_draw(name: str, why: str) -> PanbinderError:
    return PanbinderError(
        f"There is nothing to draw for {name}: {why}. For a thumbnail, pick a numeric dataset "
        "with one or two axes longer than 1",
        reason="nothing-to-draw",
        status_code=400,
    )


def _drawable_axes(ds: h5py.Dataset) -> list[int]:
    """The one or two axes to draw: the last two axes longer than 1."""
    if ds.dtype.kind not in "biuf":
        raise _nothing_to_draw(ds.name, f"it holds {_dtype_name(ds.dtype)} values, not numbers")
    if ds.shape is None or ds.size == 0:  # None: an HDF5 null dataspace
        raise _nothing_to_draw(ds.name, "it is empty")
    axes = [i for i, n in enumerate(ds.shape) if n > 1]
    if not axes:
        raise _nothing_to_draw(ds.name, "it holds a single value")
    return axes[-2:]


def _require_sources(file: h5py.File, ds: h5py.Dataset, path: Path, fixed: list[int | None]) -> None:
    region = [
        (0, n - 1) if index is None else (index, index) for index, n in zip(fixed, ds.shape, strict=True)
    ]
    sources = _virtual_sources(file, ds, path.absolute().parent, region=region, deep=True)
    missing = [
        s.get("external_file") or (s["file"] if s["file"] != "." else s["dataset"])
        for s in sources
        if s["missing"]
    ]
    if missing:
        names = ", ".join(sorted(set(missing))[:5]) + (" and more" if len(set(missing)) > 5 else "")
        raise PanbinderError(
            f"The virtual dataset {ds.name} in {path.name} cannot be previewed: its source file {names} "
            "is missing. Ask the facility to restore it next to the file, or preview another dataset",
            reason="virtual-source-missing",
            log_message=f"thumbnail: {path}:{ds.name} missing virtual sources {sorted(set(missing))}",
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
    steps = _element_steps(lengths, budget)
    if ds.chunks is not None:
        chunk_sizes = [ds.chunks[i] for i in axes]
        chunk_bytes = math.prod(ds.chunks) * ds.dtype.itemsize
        allowed = max(1, min(MAX_CHUNKS, MAX_CHUNK_BYTES // chunk_bytes))
        if _chunks_touched(lengths, steps, chunk_sizes) > allowed:
            written = _written_chunks(ds, axes, fixed, steps)
            if written is not None and len(written) <= allowed:
                shape = tuple(math.ceil(n / s) for n, s in zip(lengths, steps, strict=True))
                values = np.full(shape, float(ds.fillvalue), dtype=dtype)
                for source, target in written:
                    values[target] = _read(ds, source, dtype)
                return values
            steps = _chunk_steps(lengths, steps, chunk_sizes, allowed)
    selection = tuple(
        slice(None, None, steps[axes.index(i)]) if f is None else f for i, f in enumerate(fixed)
    )
    return _read(ds, selection, dtype)


def _element_steps(lengths: list[int], budget: int) -> list[int]:
    """Steps so that the product of samples per axis is at most budget (short axes kept whole)."""
    steps = [1] * len(lengths)
    remaining = budget
    order = sorted(range(len(lengths)), key=lambda k: lengths[k])
    for rank, k in enumerate(order):
        per_axis = max(1, math.floor(remaining ** (1 / (len(lengths) - rank))))
        steps[k] = max(1, math.ceil(lengths[k] / per_axis))
        remaining = max(1, remaining // math.ceil(lengths[k] / steps[k]))
    return steps


def _chunks_touched(lengths: list[int], steps: list[int], chunks: list[int]) -> int:
    return math.prod(min(-(-n // s), -(-n // c)) for n, s, c in zip(lengths, steps, chunks, strict=True))


def _chunk_steps(lengths: list[int], steps: list[int], chunks: list[int], allowed: int) -> list[int]:
    steps = list(steps)
    while _chunks_touched(lengths, steps, chunks) > allowed:
        k = max(range(len(steps)), key=lambda j: min(-(-lengths[j] // steps[j]), -(-lengths[j] // chunks[j])))
        steps[k] = max(steps[k] + 1, math.ceil(steps[k] * 1.25), chunks[k] if steps[k] < chunks[k] else 0)
    return steps


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
    found = (_chunk_selection(ds, offset, axes, fixed, steps) for offset in offsets)
    return [pair for pair in found if pair is not None]


def _chunk_selection(
    ds: h5py.Dataset, offset: tuple[int, ...], axes: list[int], fixed: list[int | None], steps: list[int]
) -> tuple[tuple, tuple] | None:
    source: list[int | slice] = []
    target: list[slice] = []
    for i, (start, chunk, n) in enumerate(zip(offset, ds.chunks, ds.shape, strict=True)):
        end = min(start + chunk, n)
        index = fixed[i]
        if index is not None:
            if not start <= index < end:
                return None
            source.append(index)
            continue
        step = steps[axes.index(i)]
        first = -(-start // step) * step
        if first >= end:
            return None
        source.append(slice(first, end, step))
        target.append(slice(first // step, (end - 1) // step + 1))
    return tuple(source), tuple(target)


def _thumbnail_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """Fit in size x size keeping the aspect ratio, but no side thinner than size/8 when avoidable."""
    factor = max(1, math.ceil(max(height, width) / size))
    thinnest = max(1, size // 8)
    fy, fx = (min(factor, max(1, n // thinnest)) for n in (height, width))
    return math.ceil(height / fy), math.ceil(width / fx)


def _reduce(values: np.ndarray, lengths: list[int], size: int) -> np.ndarray:
    """Block means (NaN ignored) down to the thumbnail shape."""
    out_h, out_w = _thumbnail_shape(lengths[0], lengths[1], size)
    if values.shape[0] <= out_h and values.shape[1] <= out_w:
        return values
    # block starts: out_h (out_w) blocks of nearly equal size, so the result has that shape
    rows, cols = (
        (np.arange(min(n, m)) * n) // min(n, m) for n, m in zip(values.shape, (out_h, out_w), strict=True)
    )
    finite = np.isfinite(values)
    sums = np.add.reduceat(np.where(finite, values, 0), rows, axis=0, dtype=np.float64)
    sums = np.add.reduceat(sums, cols, axis=1)
    counts = np.add.reduceat(np.add.reduceat(finite, rows, axis=0, dtype=np.int64), cols, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (sums / counts).astype(np.float32)


def _normalise(values: np.ndarray, name: str, *, percentiles: bool) -> np.ndarray:
    """Values mapped to [0, 1]: log10 when positive over > 3 decades; robust limits for images."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise _nothing_to_draw(name, "it holds no finite numbers (only NaN or infinity)")
    low, high = float(finite.min()), float(finite.max())
    if low > 0 and high / low > 1e3:
        values, finite, low, high = np.log10(values), np.log10(finite), math.log10(low), math.log10(high)
    if percentiles:
        p1, p99 = (float(p) for p in np.percentile(finite, [1, 99]))
        if p99 > p1:
            low, high = p1, p99
    if high <= low:
        return np.where(np.isfinite(values), 0.5, np.nan)
    return (values - low) / (high - low)


# ---------------------------------------------------------------- cache


class ThumbnailCache:
    """Thumbnails on disk, named by a hash of (absolute path, file size, mtime_ns, dataset, size).

    A changed file gets new names, so entries never go stale; old ones can be deleted at will.
    Files are written to a temporary name and renamed, so readers never see half a PNG.
    """

    def __init__(self, cache_dir: str | Path, *, max_read_elements: int = 4_000_000) -> None:
        self.cache_dir = Path(cache_dir)
        self.max_read_elements = max_read_elements

    def key(self, path: str | Path, dataset_path: str, size: int) -> str:
        path = Path(path).absolute()
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise _file_not_found(path) from None
        dataset = "/" + dataset_path.strip("/")
        identity = [str(path), stat.st_size, stat.st_mtime_ns, dataset, size, self.max_read_elements]
        return hashlib.sha256(json.dumps(identity).encode()).hexdigest()

    def get_or_make(self, path: str | Path, dataset_path: str, size: int = 256) -> bytes:
        target = self.cache_dir / f"{self.key(path, dataset_path, size)}.png"
        try:
            return target.read_bytes()
        except FileNotFoundError:
            pass
        png = thumbnail(path, dataset_path, size=size, max_read_elements=self.max_read_elements)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=self.cache_dir, prefix=".tmp-", suffix=".png")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(png)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return png
