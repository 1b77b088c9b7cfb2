"""Opening HDF5/NeXus files for a preview, and describing what is in them as JSON data.

Shared by the tree (h5tree.py) and the thumbnails (preview.py): opening with errors a user can
act on, attribute and small values as JSON-able data, and virtual-dataset sources with a
`missing` flag (and `refused` when outside the dataset's location). Linked and source files are
looked for where HDF5 would look and confined by h5confine.py. Attributes are bounded before
they are read: fixed-size ones by their stored bytes, variable-length ones by their count.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from panbinder.errors import PanbinderError

from .h5confine import ELINK_PREFIX, MAX_MAPPINGS, VDS_PREFIX, Files, Missing, Refused, link_of, mappings

MAX_LIST_ITEMS = 20  # longer attribute arrays are cut, with a "... N more" marker
MAX_TEXT = 2000  # longer strings are cut, with a marker
MAX_ATTRIBUTE_BYTES = 1 << 20  # larger attributes are described, not read
MAX_VLEN_ITEMS = MAX_LIST_ITEMS  # variable-length attributes with more items are described, not read


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
            too_large = attribute_too_large(attr)
            result[name] = too_large if too_large else jsonable(obj.attrs[name])
        except Exception as error:  # an unusual type must not hide the rest of the file
            result[name] = f"<unreadable: {type(error).__name__}>"
    return result


def attribute_too_large(attr: h5py.h5a.AttrID) -> str | None:
    """A description instead of the value when reading the attribute is not bounded; else None.

    The stored size of a variable-length attribute counts only its references, so its items are
    counted instead (each one is at most as long as the file).
    """
    if attr.get_storage_size() > MAX_ATTRIBUTE_BYTES:
        return f"<{attr.get_storage_size()} bytes of {dtype_name(attr.dtype)}, not shown>"
    count = math.prod(attr.shape or ())
    if is_vlen(attr.dtype) and count > MAX_VLEN_ITEMS:
        return f"<{count} values of {dtype_name(attr.dtype)}, not shown>"
    return None


def is_vlen(dtype: np.dtype) -> bool:
    """Whether values of this type live outside the object (variable-length), at any depth."""
    if dtype.kind == "O":  # h5py's variable-length strings and sequences
        return True
    if dtype.names:
        return any(is_vlen(dtype.fields[name][0]) for name in dtype.names)
    return dtype.subdtype is not None and is_vlen(dtype.subdtype[0])


def dtype_name(dtype: np.dtype) -> str:
    info = h5py.check_string_dtype(dtype)
    if info is not None and info.length is None:
        return f"vlen {info.encoding} string"
    return str(dtype)


def virtual_sources(files: Files, ds: h5py.Dataset, *, limit: int = 1000) -> list[dict]:
    """One entry per distinct (file, dataset) source (at most `limit`), for the tree.

    A source is `missing` when its file is not found; a source in this same file (".") is
    missing when its link is not there (an external link there is checked like a file). A file
    outside the dataset's location is also `refused`, with why; no source file is opened.
    """
    sources: dict[tuple[str, str], dict] = {}
    for mapping in mappings(ds, MAX_MAPPINGS):
        key = (mapping.file_name, mapping.dset_name)
        if key in sources:
            continue
        if len(sources) >= limit:
            break
        source: dict[str, Any] = {
            "file": decode_text(mapping.file_name),
            "dataset": decode_text(mapping.dset_name),
            "missing": False,
        }
        try:
            if mapping.file_name == ".":
                parent, _, link = link_of(files, ds.file, mapping.dset_name)
                if isinstance(link, h5py.ExternalLink):
                    source["external_file"] = decode_text(link.filename)
                    files.locate(link.filename, parent.file, ELINK_PREFIX)
                elif link is None:
                    raise Missing()
            else:
                files.locate(mapping.file_name, ds.file, VDS_PREFIX)
        except Refused as refused:
            source.update(missing=True, refused=refused.what)
        except Missing:
            source["missing"] = True
        sources[key] = source
    return list(sources.values())
