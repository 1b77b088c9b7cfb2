"""The group/dataset tree of an HDF5/NeXus file as JSON-able data, for a dataset card.

Reads metadata, attributes and only tiny values; external links are described, never followed.
Linked and source files outside the dataset's location are described as `refused`; a dataset
with external raw storage is described (`external_storage`), its value never read; compressed
tiny values are decoded with the bound of h5chunks.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py

from . import h5plugins
from .h5chunks import DECODED, TooCostly, filters, read_bounded
from .h5confine import ELINK_PREFIX, Files, Missing, Refused, Scope, external_storage, lookup
from .h5files import decode_text, dtype_name, is_vlen, jsonable, open_file, read_attributes, virtual_sources

MAX_VALUE_STRING_BYTES = 256  # fixed-length string datasets up to this size are shown in the tree
MAX_NODES = 50_000  # whole-tree cap, on top of max_children and max_depth
MAX_VALUE_ITEM_BYTES = 64 << 10  # a one-value dataset of a larger type (array, compound) is not read


def tree(
    path: str | Path, *, max_children: int = 200, max_depth: int = 12, within: str | Path | None = None
) -> dict:
    """The group/dataset tree of an HDF5 file, as JSON-able data (the root group's node).

    Every node has name, path, kind (group, dataset, datatype, external_link, soft_link or
    missing) and attributes, plus NX_class when set. Datasets add shape, dtype, chunks,
    compression, is_virtual and `value` when tiny; virtual ones list their sources, each with a
    `missing` flag, and are `missing` themselves when any source is.
    A group or object reached again through a hard link names its first path in `same_as`, and
    a group's `truncated` counts children cut by max_children, max_depth or the node cap.
    Links and sources leaving `within` (the dataset's location; default: the file's folder) are
    `refused`, with why; so is the value of a dataset with `external_storage`.
    """
    path = Path(path)
    with open_file(path) as file, Files(file, Scope.of(path, within)) as files:
        walker = _TreeWalker(files, file, max_children, max_depth)
        root = walker.group(file["/"], "/", "/", 0)
    root["file"] = path.name
    return root


class _TreeWalker:
    def __init__(self, files: Files, file: h5py.File, max_children: int, max_depth: int) -> None:
        self.files, self.file = files, file
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
            node = {
                "name": name,
                "path": path,
                "kind": "external_link",
                "file": decode_text(link.filename),
                "target": decode_text(link.path),
            }
            return node | self._reachable(lambda: self.files.locate(link.filename, parent.file, ELINK_PREFIX))
        if isinstance(link, h5py.SoftLink):
            node = {"name": name, "path": path, "kind": "soft_link", "target": link.path}
            target = link.path if link.path.startswith("/") else f"{parent.name.rstrip('/')}/{link.path}"
            return node | self._reachable(lambda: lookup(self.files, parent.file, target))
        try:
            obj = parent[name]
        except Exception as error:
            return {"name": name, "path": path, "kind": "missing", "error": type(error).__name__}
        if isinstance(obj, h5py.Group):
            return self.group(obj, name, path, depth)
        if isinstance(obj, h5py.Dataset):
            return self.dataset(obj, name, path)
        node = self._object(obj, name, path, "datatype")
        node["dtype"] = dtype_name(obj.dtype)
        return node

    def dataset(self, ds: h5py.Dataset, name: str, path: str) -> dict:
        node = self._object(ds, name, path, "dataset")
        node.update(
            shape=None if ds.shape is None else list(ds.shape),  # None: an HDF5 null dataspace
            dtype=dtype_name(ds.dtype),
            chunks=list(ds.chunks) if ds.chunks else None,
            compression=ds.compression,
            is_virtual=ds.is_virtual,
        )
        if ds.compression == "unknown":  # a plugin filter: say which, and whether it is installed
            plugins = [f for f in filters(ds) if f not in DECODED]
            node["compression"] = ", ".join(h5plugins.describe(f) for f in plugins)
            missing = [h5plugins.describe(f) for f in plugins if not h5plugins.available(f)]
            if missing:
                node["compression_unavailable"] = f"not available on this server: {', '.join(missing)}"
        if external_storage(ds):
            node["external_storage"] = "refused: its values are kept in another file, which is never read"
        elif ds.is_virtual:
            sources = virtual_sources(self.files, ds)
            node["missing"] = any(source["missing"] for source in sources)
            if any("refused" in source for source in sources):
                node["refused"] = "a source file is outside this dataset's folder"
            node["virtual_sources"] = sources[: self.max_children]
            if len(sources) > self.max_children:
                node["virtual_sources_truncated"] = len(sources) - self.max_children
        elif _is_tiny(ds):
            try:
                node["value"] = jsonable(read_bounded(ds, ()))
            except TooCostly as costly:
                node["value_error"] = f"not shown: {costly.why}"
            except Exception as error:
                node["value_error"] = type(error).__name__
        return node

    @staticmethod
    def _reachable(resolve: Callable[[], object]) -> dict:
        """`missing` (and `refused`, with why) for a link, from resolving it confined."""
        try:
            resolve()
        except Refused as refused:
            return {"missing": True, "refused": refused.what}
        except Missing:
            return {"missing": True}
        except Exception:
            return {"missing": True}
        return {"missing": False}

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
        attributes = read_attributes(obj)
        if isinstance(attributes.get("NX_class"), str):
            node["NX_class"] = attributes["NX_class"]
        node["attributes"] = attributes
        return node


def _is_tiny(ds: h5py.Dataset) -> bool:
    if ds.size is None:  # a null dataspace reads as h5py.Empty: shown as null
        return True
    if ds.size == 1:  # one value, of a bounded type (a variable-length one is at most the file's size)
        return is_vlen(ds.dtype) or ds.dtype.itemsize <= MAX_VALUE_ITEM_BYTES
    if ds.size == 0:
        return False
    info = h5py.check_string_dtype(ds.dtype)
    return info is not None and info.length is not None and ds.size * info.length <= MAX_VALUE_STRING_BYTES
