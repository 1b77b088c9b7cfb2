"""NeXus's default plot: from the file (or an entry, or an NXdata group) to a signal and its axes.

The chain NeXus defines: the root's ``@default`` names an NXentry (else the only, else the first
NXentry by name); the entry's ``@default`` names an NXdata (or a subentry whose ``@default``
goes on; else the only, else the first NXdata); the NXdata's ``@signal`` names the signal
(NeXus v1: a dataset with ``@signal=1``). Axes, per signal dimension: ``@<axis>_indices``,
else the position in ``@axes`` (``.`` for none), the canSAS ``@I_axes`` when ``@axes`` is
absent, else the NeXus v1 ``@axis=<1-based dimension>`` on datasets. Units and ``long_name``
are read for the labels of a thumbnail.

Everything is reached through `get(path) -> object or None`, so a preview follows links with
its own confinement (h5confine.lookup) and the scan with nexus.py's in-file lookup. Only
attributes are read here, never values.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import h5py

from . import nexus

Get = Callable[[str], "h5py.HLObject | None"]
MAX_HOPS = 8  # @default links followed at most (a loop of defaults ends here)
_SPLIT = re.compile(r"[,:\s]+")


@dataclass(frozen=True)
class Axis:
    path: str
    dim: int  # the signal dimension it labels
    units: str | None = None
    long_name: str | None = None

    @property
    def label(self) -> str:
        return label(self.path, self.long_name, self.units)


@dataclass(frozen=True)
class Plot:
    nxdata: str
    nxdata_from: str
    signal: str
    signal_from: str
    axes: tuple[Axis, ...] = ()  # ordered by dimension
    axes_from: str | None = None
    units: str | None = None
    long_name: str | None = None

    def axis(self, dim: int) -> Axis | None:
        return next((a for a in self.axes if a.dim == dim), None)

    @property
    def label(self) -> str:
        return label(self.signal, self.long_name, self.units)


def label(path: str, long_name: str | None, units: str | None) -> str:
    """``long_name`` if given (it usually holds the units), else the name with ``(units)``."""
    if long_name and long_name.strip():
        return long_name.strip()
    name = path.rsplit("/", 1)[-1]
    return f"{name} ({units.strip()})" if units and units.strip() else name


def join(group: str, name: str) -> str:
    return f"{group.rstrip('/')}/{name}"


def nx_class(obj: h5py.HLObject | None) -> str | None:
    return nexus.attr(obj, "NX_class") if isinstance(obj, h5py.Group) else None


def members(get: Get, group_path: str, wanted: str) -> list[str]:
    """Names of the group's member groups of NX class `wanted`, sorted."""
    group = get(group_path)
    if not isinstance(group, h5py.Group):
        return []
    try:
        names = sorted(group.keys())
    except (OSError, RuntimeError):
        return []
    return [n for n in names if nx_class(get(join(group_path, n))) == wanted]


def default_entry(get: Get) -> tuple[str | None, str | None]:
    """(entry path, how it was chosen): root@default, the single NXentry or the first NXentry."""
    entries = members(get, "/", "NXentry")
    named = nexus.attr(get("/"), "default")
    if named and named.strip("/") in entries:
        return f"/{named.strip('/')}", "root@default"
    if entries:
        return f"/{entries[0]}", "single NXentry" if len(entries) == 1 else "first NXentry"
    return None, None


def default_nxdata(get: Get, entry: str) -> tuple[str | None, str | None]:
    """(NXdata path, how it was chosen) below an NXentry/NXsubentry, @default followed."""
    group = entry
    for _ in range(MAX_HOPS):
        named = nexus.attr(get(group), "default")
        target = join(group, named.strip("/")) if named and named.strip("/") else None
        cls = nx_class(get(target)) if target else None
        if cls == "NXdata":
            return target, f"{nx_class(get(group)) or 'group'}@default"
        if cls not in ("NXentry", "NXsubentry", "NXinstrument", "NXdetector", "NXprocess"):
            break
        group = target
    found = members(get, entry, "NXdata")
    if found:
        return join(entry, found[0]), "single NXdata" if len(found) == 1 else "first NXdata"
    return None, None


def _dataset(get: Get, path: str) -> h5py.Dataset | None:
    obj = get(path)
    return obj if isinstance(obj, h5py.Dataset) else None


def _names(value: str | None) -> list[str]:
    return [n for n in _SPLIT.split(value or "") if n]


def _signal(get: Get, nxdata: str, group: h5py.Group) -> tuple[str | None, str | None]:
    named = nexus.attr(group, "signal")
    if named and "/" not in named and _dataset(get, join(nxdata, named)) is not None:
        return join(nxdata, named), "NXdata@signal"
    for name, ds in _stored(group):
        if (nexus.attr(ds, "signal") or "").strip() == "1":
            return join(nxdata, name), "dataset@signal=1 (NeXus v1 style)"
    return None, None


def _stored(group: h5py.Group) -> list[tuple[str, h5py.Dataset]]:
    """The group's datasets reached by hard links (NeXus v1 attributes are looked for only there:
    opening each link through the confined lookup costs a millisecond per member)."""
    out = []
    for name in sorted(group.keys()):
        try:
            if isinstance(group.get(name, getlink=True), h5py.HardLink):
                obj = group[name]
                if isinstance(obj, h5py.Dataset):
                    out.append((name, obj))
        except (KeyError, OSError, RuntimeError):
            continue
    return out


def _axes(
    get: Get, nxdata: str, group: h5py.Group, signal: str, rank: int
) -> tuple[dict[int, str], str | None]:
    """{signal dimension: axis name} and where it came from."""
    names, source = _axes_attribute(group), "NXdata@axes"
    if not names:
        signal_name = signal.rsplit("/", 1)[-1]
        names, source = (
            _names(nexus.attr(group, f"{signal_name}_axes")),
            f"NXdata@{signal_name}_axes (canSAS)",
        )
    dims: dict[int, str] = {}
    for position, name in enumerate(names):
        if name == "." or _dataset(get, join(nxdata, name)) is None:
            continue
        indices = _names(nexus.attr(group, f"{name}_indices"))
        dim = int(indices[0]) if indices and indices[0].lstrip("-").isdigit() else position
        if 0 <= dim < rank:
            dims.setdefault(dim, name)
    if dims or "signal" in group.attrs:  # NeXus v1 files name no signal on the group
        return dims, source if dims else None
    for name, ds in _stored(group):  # NeXus v1: @axis on the axis datasets, counted from 1
        axis = nexus.attr(ds, "axis")
        if axis and axis.strip().isdigit() and 1 <= int(axis) <= rank:
            dims.setdefault(int(axis) - 1, name)
    return dims, ("dataset@axis (NeXus v1 style)" if dims else None)


def _axes_attribute(group: h5py.Group) -> list[str]:
    try:
        value = group.attrs.get("axes") if "axes" in group.attrs else None
    except (OSError, TypeError, ValueError):
        return []
    if value is None:
        return []
    if hasattr(value, "shape") and getattr(value, "size", 1) > 1:
        return [n for v in value.reshape(-1)[:32] for n in _names(nexus.decode(v))]
    return _names(nexus.decode(value))


def plot_of(get: Get, nxdata: str, nxdata_from: str) -> Plot | None:
    """The signal and axes of one NXdata group (None when it names no signal)."""
    group = get(nxdata)
    if not isinstance(group, h5py.Group):
        return None
    try:
        signal, signal_from = _signal(get, nxdata, group)
        ds = _dataset(get, signal) if signal else None
        if signal is None or ds is None:
            return None
        rank = len(ds.shape or ())
        dims, axes_from = _axes(get, nxdata, group, signal, rank)
    except (OSError, RuntimeError, ValueError, TypeError):
        return None
    axes = []
    for dim, name in sorted(dims.items()):
        axis = _dataset(get, join(nxdata, name))
        axes.append(Axis(join(nxdata, name), dim, nexus.attr(axis, "units"), nexus.attr(axis, "long_name")))
    return Plot(
        nxdata,
        nxdata_from,
        signal,
        signal_from or "",
        tuple(axes),
        axes_from,
        nexus.attr(ds, "units"),
        nexus.attr(ds, "long_name"),
    )


def resolve(get: Get, path: str = "/") -> Plot | None:
    """The default plot reached from `path`: the file root, an entry, an NXdata group, or a
    dataset that is its NXdata's signal. None when the chain ends without a signal."""
    path = "/" + path.strip("/")
    obj = get(path)
    if isinstance(obj, h5py.Dataset):
        parent = path.rsplit("/", 1)[0] or "/"
        if nx_class(get(parent)) != "NXdata":
            return None
        plot = plot_of(get, parent, "the dataset's NXdata")
        return plot if plot is not None and plot.signal == path else None
    cls = nx_class(obj) if path != "/" else "root"
    if cls == "root":
        path, _ = default_entry(get)
        cls = "NXentry" if path else None
    if cls in ("NXentry", "NXsubentry"):
        nxdata, how = default_nxdata(get, path)
        return plot_of(get, nxdata, how) if nxdata else None
    if cls == "NXdata":
        return plot_of(get, path, "the NXdata asked for")
    return None
