"""What an HDF5 file may reach: other HDF5 files inside its dataset's location, nothing else.

Dataset files are written by facility users, and HDF5 lets a file name other files in three
ways. External raw storage makes a dataset's bytes those of any named file, read as they are:
a tree once showed /etc/passwd and the service's secrets as a dataset's value, so a dataset
with external storage is never read. External links and virtual-dataset sources name HDF5
files: each name is resolved the way HDF5 resolves it (`candidates`), symbolic links followed,
and the file is used only when it lies inside the dataset's location (the `Scope`); otherwise
it is refused without being opened. Links are followed here, one path component at a time
(`lookup`), never by HDF5, so HDF5 only opens files this module has checked, and a virtual
dataset is read only after each source it maps into the read has passed (`check_sources`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import h5py
from h5py._hl.vds import VDSmap

MAX_HOPS = 16  # soft and external links followed for one name (HDF5's own default limit)
MAX_OPEN_FILES = 256  # linked and source files opened for one preview
MAX_VIRTUAL_DEPTH = 4  # virtual datasets whose sources are virtual datasets in turn
MAX_MAPPINGS = 100_000  # a virtual dataset mapping more sources is not read
ELINK_PREFIX = "HDF5_EXT_PREFIX"  # the environment variables HDF5 searches first
VDS_PREFIX = "HDF5_VDS_PREFIX"


class Refused(Exception):
    """An object that reaches outside the dataset's location, or stores its bytes in another file."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class TooCostly(Exception):
    """Reading these values would need memory or time that cannot be bounded beforehand."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class Missing(Exception):
    """An object, linked file or source that is not there (`file`: the linked file, when that is it)."""

    def __init__(self, what: str = "", file: str | None = None) -> None:
        super().__init__(what)
        self.what, self.file = what, file


@dataclass(frozen=True)
class Scope:
    """The dataset's location, resolved: a folder, or the file itself for a one-file dataset."""

    location: Path
    is_folder: bool

    @classmethod
    def of(cls, path: str | os.PathLike[str], within: str | os.PathLike[str] | None = None) -> Scope:
        """The scope for previewing `path`: `within` (the dataset's location), else the file's folder."""
        location = Path(os.path.realpath(within if within is not None else Path(path).absolute().parent))
        return cls(location, location.is_dir())

    def allows(self, path: str | os.PathLike[str]) -> bool:
        real = Path(os.path.realpath(path))
        return real == self.location or (self.is_folder and real.is_relative_to(self.location))

    def shown(self, path: str | os.PathLike[str]) -> str:
        """A file's name for messages: relative to the dataset's folder, never an absolute path."""
        real = Path(os.path.realpath(path))
        if self.is_folder and real.is_relative_to(self.location):
            return real.relative_to(self.location).as_posix()
        return real.name


def candidates(name: str, folder: Path, variable: str) -> list[Path]:
    """Where HDF5 looks for a linked or source file named `name` in a file in `folder`, in order.

    An absolute name first as written; then (with only its last component when absolute) under
    each folder of the `variable` environment prefix (``${ORIGIN}`` is the linking file's
    folder), in the linking file's folder, and last from the working directory.
    """
    rest = name
    found: list[Path] = []
    if os.path.isabs(name):
        found.append(Path(name))
        rest = os.path.basename(name)
    for prefix in filter(None, os.environ.get(variable, "").split(":")):
        found.append(Path(prefix.replace("${ORIGIN}", str(folder))) / rest)
    found.append(folder / rest)
    found.append(Path.cwd() / rest)
    return found


def resolve_file(name: str | bytes, folder: Path, scope: Scope, variable: str) -> Path:
    """The file HDF5 would open for `name`, if inside `scope`; Refused or Missing otherwise.

    The first existing candidate decides: outside the scope it is refused (never opened), inside
    it is used when it is an HDF5 file (HDF5 goes on to the next candidate when it is not). A name
    found nowhere is refused when it points outside the scope, and missing otherwise.
    """
    text = os.fsdecode(name)
    if not text or "\0" in text:
        raise Missing(text)
    for candidate in candidates(text, folder, variable):
        if not os.path.isfile(candidate):
            continue
        if not scope.allows(candidate):
            raise Refused(f"{text} is outside this dataset's folder")
        if h5py.is_hdf5(candidate):
            return Path(os.path.realpath(candidate))
    written = Path(os.path.normpath(folder / text))
    if not (written == scope.location or (scope.is_folder and written.is_relative_to(scope.location))):
        raise Refused(f"{text} is outside this dataset's folder")
    raise Missing(text)


def external_storage(ds: h5py.Dataset) -> bool:
    """Whether the dataset keeps its raw bytes in other files (then it is never read)."""
    try:
        return ds.id.get_create_plist().get_external_count() > 0
    except Exception:  # an unreadable creation property list: assume the worst
        return True


def refuse_external_storage(ds: h5py.Dataset) -> None:
    if external_storage(ds):
        raise Refused(f"{ds.name} keeps its values in another file (external storage), which is never read")


class Files:
    """The HDF5 files opened to follow links and sources for one preview, closed together."""

    def __init__(self, first: h5py.File, scope: Scope) -> None:
        self.scope = scope
        self.opened: dict[str, h5py.File] = {os.path.realpath(first.filename): first}
        self._stack = ExitStack()

    def __enter__(self) -> Files:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def open(self, path: Path) -> h5py.File:
        key = os.path.realpath(path)
        if key in self.opened:
            return self.opened[key]
        if len(self.opened) >= MAX_OPEN_FILES:
            raise Refused(f"more than {MAX_OPEN_FILES} linked files are needed")
        try:
            file = self._stack.enter_context(h5py.File(key, "r"))  # as HDF5 opens sources
        except OSError:
            raise Missing(self.scope.shown(key)) from None
        self.opened[key] = file
        return file

    def locate(self, name: str | bytes, file: h5py.File, variable: str) -> Path:
        """Where the file named by a link or source in `file` is, once confined (not opened)."""
        return resolve_file(name, Path(file.filename).parent, self.scope, variable)

    def resolve(self, name: str | bytes, file: h5py.File, variable: str) -> h5py.File:
        """The file named by a link or source in `file`, opened once confined."""
        if name in (".", b"."):
            return file
        return self.open(self.locate(name, file, variable))


def lookup(files: Files, file: h5py.File, name: str) -> h5py.HLObject:
    """The object at `name` in `file`, links followed here (confined) instead of by HDF5."""
    return _lookup(files, file, name, [0])


def link_of(files: Files, file: h5py.File, name: str) -> tuple[h5py.Group, str, object]:
    """(parent group, last component, link) for `name`, the parent reached through `lookup`."""
    parent_name, _, last = name.rstrip("/").rpartition("/")
    parent = lookup(files, file, parent_name or "/")
    if not isinstance(parent, h5py.Group) or not last:
        raise Missing()
    return parent, last, _link(parent, last)


def _link(group: h5py.Group, part: str) -> object:
    try:
        return group.get(part, getlink=True)  # one component: HDF5 traverses no link to answer
    except Exception:
        return None


def _lookup(files: Files, file: h5py.File, name: str, hops: list[int]) -> h5py.HLObject:
    obj: h5py.HLObject = file["/"]
    for part in (p for p in name.split("/") if p not in ("", ".")):
        if not isinstance(obj, h5py.Group):
            raise Missing()
        link = _link(obj, part)
        if isinstance(link, h5py.HardLink):
            obj = obj[part]
            continue
        hops[0] += 1
        if hops[0] > MAX_HOPS:
            raise Refused(f"{name} goes through more than {MAX_HOPS} links")
        if isinstance(link, h5py.SoftLink):
            target = link.path if link.path.startswith("/") else f"{obj.name.rstrip('/')}/{link.path}"
            obj = _lookup(files, obj.file, target, hops)
        elif isinstance(link, h5py.ExternalLink):
            try:
                linked = files.resolve(link.filename, obj.file, ELINK_PREFIX)
            except Missing:
                what = f"links to {link.filename}, which is missing (or lacks {link.path})"
                raise Missing(what, file=os.fsdecode(link.filename)) from None
            obj = _lookup(files, linked, link.path, hops)
        else:
            raise Missing()
    return obj


def mapping_count(ds: h5py.Dataset) -> int:
    return ds.id.get_create_plist().get_virtual_count()


def mappings(ds: h5py.Dataset, limit: int = MAX_MAPPINGS) -> Iterator[VDSmap]:
    """The first `limit` mappings of a virtual dataset, read one at a time (h5py lists them all)."""
    plist = ds.id.get_create_plist()
    for index in range(min(plist.get_virtual_count(), limit)):
        yield VDSmap(
            plist.get_virtual_vspace(index),
            plist.get_virtual_filename(index),
            plist.get_virtual_dsetname(index),
            plist.get_virtual_srcspace(index),
        )


def check_sources(
    files: Files,
    ds: h5py.Dataset,
    region: list[tuple[int, int]] | None = None,
    *,
    check: Callable[[h5py.Dataset], None] | None = None,
    depth: int = 0,
) -> list[str]:
    """Names of the missing sources mapped into `region`; Refused when one reaches outside.

    Each source is found as HDF5 will find it when the virtual dataset is read, and must be a
    dataset without external storage that passes `check`; a virtual source is checked the same
    way, whole.
    """
    if depth > MAX_VIRTUAL_DEPTH:
        raise Refused(f"{ds.name} nests virtual datasets more than {MAX_VIRTUAL_DEPTH} deep")
    if mapping_count(ds) > MAX_MAPPINGS:
        raise TooCostly(f"it maps {mapping_count(ds)} sources, more than the preview's {MAX_MAPPINGS}")
    missing: list[str] = []
    seen: set[tuple[str, str]] = set()
    for mapping in mappings(ds):
        key = (mapping.file_name, mapping.dset_name)
        if key in seen or (region is not None and not overlaps(mapping.vspace, region)):
            continue
        seen.add(key)
        try:
            source = lookup(files, files.resolve(mapping.file_name, ds.file, VDS_PREFIX), mapping.dset_name)
        except Missing as gone:
            missing.append(_missing_name(mapping.file_name, mapping.dset_name, gone))
            continue
        if not isinstance(source, h5py.Dataset):
            missing.append(_missing_name(mapping.file_name, mapping.dset_name, Missing()))
            continue
        refuse_external_storage(source)
        if source.is_virtual:
            missing += check_sources(files, source, None, check=check, depth=depth + 1)
        elif check is not None:
            check(source)
    return missing


def _missing_name(file_name: str, dset_name: str, gone: Missing) -> str:
    return file_name if file_name != "." else gone.file or dset_name


def overlaps(space: h5py.h5s.SpaceID, region: list[tuple[int, int]]) -> bool:
    try:
        start, end = space.get_select_bounds()
    except Exception:
        return True  # an unusual (e.g. unlimited) mapping: assume it is read
    return all(s <= hi and e >= lo for s, e, (lo, hi) in zip(start, end, region, strict=False))
