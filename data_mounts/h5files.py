"""Opening HDF5/NeXus files for a preview, and describing what is in them as JSON data.

Shared by the tree (h5tree.py) and the thumbnails (preview.py): opening with errors a user can
act on, attribute and small values as JSON-able data, and virtual-dataset sources with a
`missing` flag. Linked and source files are looked for where HDF5 would look; links are never
followed.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from panbinder.errors import PanbinderError

MAX_LIST_ITEMS = 20  # longer attribute arrays are cut, with a "... N more" marker
MAX_TEXT = 2000  # longer strings are cut, with a marker
MAX_ATTRIBUTE_BYTES = 1 << 20  # larger attributes are described, not read


def file_not_found(path: Path) -> PanbinderError:
    return PanbinderError(
        f"The file {path.name} does not exist any more; check the dataset's storage location "
        "or contact the facility",
        reason="file-not-found",
        log_message=f"preview: {path} not found",
        status_code=404,
    )


def open_file(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except FileNotFoundError:
        raise file_not_found(path) from None
    except OSError as error:
        raise PanbinderError(
            f"{path.name} is not a readable HDF5/NeXus file, so it has no preview; download it instead",
            reason="not-hdf5",
            log_message=f"preview: cannot open {path}: {error}",
            status_code=422,
        ) from None


def decode_text(raw: bytes | str) -> str:
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
        return decode_text(value)
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
        return decode_text(value)
    return str(value)


def read_attributes(obj: h5py.HLObject) -> dict[str, Any]:
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


def dtype_name(dtype: np.dtype) -> str:
    info = h5py.check_string_dtype(dtype)
    if info is not None and info.length is None:
        return f"vlen {info.encoding} string"
    return str(dtype)


def beside(folder: Path, file_name: str | bytes) -> Path:
    """Where HDF5 looks for a linked file: absolute, or relative to the linking file's folder.

    (HDF5 also honours HDF5_EXT_PREFIX / HDF5_VDS_PREFIX and the working directory; a service
    previewing files from a catalogue does not set those.)
    """
    name = os.fsdecode(file_name)
    return Path(name) if os.path.isabs(name) else folder / name


def virtual_sources(
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
        source: dict[str, Any] = {
            "file": decode_text(mapping.file_name),
            "dataset": decode_text(mapping.dset_name),
        }
        if mapping.file_name == ".":
            link = file.get(mapping.dset_name, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                source["external_file"] = decode_text(link.filename)
                source["missing"] = not beside(folder, link.filename).is_file()
            else:
                source["missing"] = link is None
            if deep and not source["missing"]:
                source["missing"] = file.get(mapping.dset_name) is None
        else:
            target = beside(folder, mapping.file_name)
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
