"""Read NeXus metadata from an HDF5 file with h5py (pure; never reads dataset contents).

Only attributes and small string datasets (``/entry/title``, ``start_time``, instrument and
source ``name``) are read. External links to other files are never followed, soft links are
followed inside the file only (h5confine.lookup), virtual datasets never read, so a missing
source file or a terabyte-shaped dataset costs nothing. A string dataset with external raw
storage (its bytes in any other file) is never read: its path is listed in ``refused``.
Compressed values are decoded with h5chunks' bound, and large attributes are not read.
Strings are decoded as UTF-8 with a Latin-1 fallback, and length-1 arrays are unwrapped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np

from panbinder.errors import PanbinderError

from . import nexus_plot, nexus_techniques
from .h5chunks import TooCostly, read_bounded
from .h5confine import Files, Missing, Refused, Scope, external_storage, lookup
from .h5files import attribute_too_large
from .nexus_techniques import probe_of

SMALL = 16  # at most this many string elements are read from a dataset


@dataclass(frozen=True)
class InstrumentInfo:
    path: str
    name: str | None = None
    short_name: str | None = None  # the NXinstrument group's short_name attribute
    source_name: str | None = None
    source_kind: tuple[str, ...] = ()  # the NXsource's probe, radiation (canSAS) and type texts


@dataclass(frozen=True)
class SampleInfo:
    path: str
    name: str | None = None


@dataclass(frozen=True)
class EntryInfo:
    name: str
    title: str | None = None
    start_time: str | None = None
    end_time: str | None = None
    instruments: tuple[InstrumentInfo, ...] = ()
    samples: tuple[SampleInfo, ...] = ()
    definitions: tuple[str, ...] = ()  # application definitions (NXmx, NXcanSAS...)
    plot: nexus_plot.Plot | None = None  # the default plot (entry@default -> NXdata@signal, @axes)
    measured: bool = False  # an NXinstrument holds an NXdetector
    reduced: bool = False  # the entry holds an NXprocess group

    @property
    def signal(self) -> str | None:
        """The default plot's signal dataset."""
        return self.plot.signal if self.plot else None


@dataclass(frozen=True)
class NexusInfo:
    entries: tuple[EntryInfo, ...] = ()
    default_entry: str | None = None
    default_entry_from: str | None = None
    root_attributes: dict[str, str] = field(default_factory=dict)
    refused: tuple[str, ...] = ()  # objects not read: their values are kept in another file

    @property
    def entry(self) -> EntryInfo | None:
        return next((e for e in self.entries if e.name == self.default_entry), None)

    @property
    def title(self) -> str | None:
        return self.entry.title if self.entry else None

    @property
    def start_time(self) -> str | None:
        return self.entry.start_time if self.entry else None

    @property
    def instrument(self) -> str | None:
        """Instrument ``name`` field, else its ``short_name`` attribute, else the root ``instrument``."""
        for inst in self.entry.instruments if self.entry else ():
            if inst.name or inst.short_name:
                return inst.name or inst.short_name
        return self.root_attributes.get("instrument")

    @property
    def facility(self) -> str | None:
        """The NXsource name, when the file has one."""
        for inst in self.entry.instruments if self.entry else ():
            if inst.source_name:
                return inst.source_name
        return None

    @property
    def pid(self) -> str | None:
        return self.root_attributes.get("pid") or None

    @property
    def end_time(self) -> str | None:
        return self.entry.end_time if self.entry else None

    @property
    def sample(self) -> str | None:
        return next((s.name for s in self.entry.samples if s.name), None) if self.entry else None

    @property
    def probe(self) -> str:
        """'neutron', 'x-ray', ... from the default entry's sources ('' when they do not say)."""
        texts = [t for inst in (self.entry.instruments if self.entry else ()) for t in inst.source_kind]
        return probe_of(*texts)

    @property
    def data_type(self) -> str:
        """'raw', 'processed' or '' (nexus_techniques.data_type)."""
        if self.entry is None:
            return ""
        entry = self.entry
        return nexus_techniques.data_type(
            list(entry.definitions), measured=entry.measured, reduced=entry.reduced
        )

    @property
    def scientific_field(self) -> str:
        return nexus_techniques.scientific_field(self.techniques)

    @property
    def techniques(self) -> list[str]:
        """PaNET ids from the application definition, instrument name and probe."""
        if self.entry is None:
            return []
        return nexus_techniques.techniques(list(self.entry.definitions), self.instrument, self.probe)


def decode(value: Any) -> str | None:
    """A string from an attribute or dataset value: bytes as UTF-8 (else Latin-1), arrays unwrapped."""
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        if value.size == 0:
            return None
        if value.size == 1:
            return decode(value.reshape(-1)[0])
        parts = [decode(v) for v in value.reshape(-1)[:SMALL]]
        return "\n".join(p for p in parts if p is not None)
    if isinstance(value, bytes | np.bytes_):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("latin-1")
    if isinstance(value, np.generic):
        value = value.item()
    return value if isinstance(value, str) else str(value)


def attr(obj: h5py.HLObject, name: str) -> str | None:
    try:
        if name not in obj.attrs or attribute_too_large(obj.attrs.get_id(name)):
            return None
        return decode(obj.attrs.get(name))
    except (OSError, TypeError, ValueError, KeyError):  # unreadable attribute types
        return None


def _child(group: h5py.Group, name: str) -> h5py.HLObject | None:
    """A member, links followed only inside this file; None when missing, dangling or elsewhere."""
    file = group.file
    files = Files(file, Scope.of(file.filename, within=file.filename))
    try:
        return lookup(files, file, f"{group.name.rstrip('/')}/{name}")
    except (Refused, Missing, KeyError, OSError, RuntimeError, ValueError):
        return None


def _children(group: h5py.Group) -> list[tuple[str, h5py.HLObject]]:
    try:
        names = sorted(group.keys())
    except (OSError, RuntimeError):
        return []
    out = []
    for name in names:
        obj = _child(group, name)
        if obj is not None:
            out.append((name, obj))
    return out


def small_text(group: h5py.Group, name: str, refused: list[str] | None = None) -> str | None:
    """A small string dataset (never a virtual, numeric, large or externally stored one), decoded.

    A dataset with external storage is never read; its path is added to `refused`.
    """
    obj = _child(group, name)
    if not isinstance(obj, h5py.Dataset):
        return None
    try:
        if obj.is_virtual or obj.shape is None or (obj.size or 0) > SMALL:
            return None
        if obj.dtype.kind not in "SU" and h5py.check_string_dtype(obj.dtype) is None:
            return None
        if external_storage(obj):
            if refused is not None and obj.name not in refused:
                refused.append(obj.name)
            return None
        return decode(read_bounded(obj, ()))
    except (OSError, TypeError, ValueError, RuntimeError, TooCostly):
        return None


def _groups_of(group: h5py.Group, nx_class: str, fallback_name: str | None = None):
    out = []
    for name, obj in _children(group):
        if not isinstance(obj, h5py.Group):
            continue
        cls = attr(obj, "NX_class")
        if cls == nx_class or (cls is None and name == fallback_name):
            out.append((name, obj))
    return out


def _entry(name: str, group: h5py.Group, refused: list[str]) -> EntryInfo:
    base = f"/{name}"
    instruments, measured = [], False
    for iname, inst in _groups_of(group, "NXinstrument", "instrument"):
        measured = measured or bool(_groups_of(inst, "NXdetector", "detector"))
        short = attr(inst, "short_name")  # NXmx keeps it on the group when there is no name field
        sources = [s for _, s in _groups_of(inst, "NXsource", "source")]
        names = (small_text(s, "name", refused) for s in sources)
        source = next((text for text in names if text), None)
        kinds = tuple(
            t for s in sources for f in ("probe", "radiation", "type") if (t := small_text(s, f, refused))
        )
        instruments.append(
            InstrumentInfo(f"{base}/{iname}", small_text(inst, "name", refused), short, source, kinds)
        )
    samples = tuple(
        SampleInfo(f"{base}/{sname}", small_text(s, "name", refused))
        for sname, s in _groups_of(group, "NXsample", "sample")
    )
    return EntryInfo(
        name=name,
        title=small_text(group, "title", refused),
        start_time=small_text(group, "start_time", refused),
        end_time=small_text(group, "end_time", refused),
        instruments=tuple(instruments),
        samples=samples,
        definitions=_definitions(group, refused),
        plot=_default_plot(group),
        measured=measured,
        reduced=bool(_groups_of(group, "NXprocess")),
    )


def _definitions(group: h5py.Group, refused: list[str]) -> tuple[str, ...]:
    """The entry's (and its NXsubentry groups') ``definition``; a canSAS SASentry is NXcanSAS."""
    found = [small_text(group, "definition", refused)]
    found += [small_text(sub, "definition", refused) for _, sub in _groups_of(group, "NXsubentry")]
    if attr(group, "canSAS_class") == "SASentry":
        found.append("NXcanSAS")
    return tuple(dict.fromkeys(d.strip() for d in found if d and d.strip()))


def _default_plot(group: h5py.Group) -> nexus_plot.Plot | None:
    """The entry's default plot, links followed inside this file only (nexus_plot.py)."""
    from .preview_plot import getter

    file = group.file
    get = getter(Files(file, Scope.of(file.filename, within=file.filename)), file)
    nxdata, how = nexus_plot.default_nxdata(get, group.name)
    return nexus_plot.plot_of(get, nxdata, how or "") if nxdata else None


def read_nexus(path: str | os.PathLike[str]) -> NexusInfo:
    """Entries, default entry and per-entry metadata of a NeXus/HDF5 file."""
    try:
        f = h5py.File(path, "r", locking=False)
    except (OSError, ValueError) as e:
        raise PanbinderError(
            f"{os.fspath(path)} is not a readable HDF5 file ({e}); check the file.", reason="bad_hdf5"
        ) from None
    with f:
        root_attrs = {}
        for key in f.attrs:
            value = attr(f, key)
            if value is not None:
                root_attrs[key] = value
        groups = [(n, g) for n, g in _children(f) if isinstance(g, h5py.Group)]
        entries = [(n, g) for n, g in groups if attr(g, "NX_class") == "NXentry"]
        if not entries:  # NeXus v1 files without NX_class: groups that look like entries
            entries = [
                (n, g)
                for n, g in groups
                if attr(g, "NX_class") is None and any(k in g for k in ("title", "start_time", "instrument"))
            ]
        refused: list[str] = []
        infos = tuple(_entry(n, g, refused) for n, g in entries)
        names = [e.name for e in infos]
        default, source = root_attrs.get("default"), None
        if default in names:
            source = "root@default"
        elif len(names) == 1:
            default, source = names[0], "single NXentry"
        elif names:
            default, source = names[0], "first NXentry"
        else:
            default = None
        return NexusInfo(infos, default, source, root_attrs, tuple(refused))
