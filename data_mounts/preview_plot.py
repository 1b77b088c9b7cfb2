"""The NeXus default plot of a preview: which dataset a thumbnail draws, and its labels.

A thumbnail asked for the file ("/"), an NXentry or an NXdata group draws the signal that
NeXus's default chain reaches (nexus_plot.py); a dataset that is its NXdata's signal is drawn
with that NXdata's axes. Links are followed with the preview's confinement (h5confine.lookup).
The labels are the axes' ``long_name`` or name and units; the end values are the first and
last value of each axis dataset (two single values, read bounded; none when the axis is
virtual, stored in another file, not numeric or not 1-D).
"""

from __future__ import annotations

import h5py
import numpy as np

from . import nexus_plot
from .h5chunks import TooCostly, read_bounded
from .h5confine import Files, Missing, Refused, external_storage, lookup
from .nexus_plot import Plot
from .plot_labels import Labels


def getter(files: Files, file: h5py.File) -> nexus_plot.Get:
    """Objects by path, each looked up once (a confined lookup opens every link on the way)."""
    seen: dict[str, h5py.HLObject | None] = {}

    def get(path: str) -> h5py.HLObject | None:
        path = "/" + path.strip("/")
        if path not in seen:
            found = file["/"] if path == "/" else _step(get, path)
            seen[path] = found if found is not None else _confined(path)
        return seen[path]

    def _confined(path: str) -> h5py.HLObject | None:
        try:
            return lookup(files, file, path)
        except (Refused, Missing, KeyError, OSError, RuntimeError, ValueError):
            return None

    return get


def _step(get: nexus_plot.Get, path: str) -> h5py.HLObject | None:
    """A hard-linked member of an already found group: one step, as h5confine.lookup takes it
    (None: not a hard link, so the whole path goes through lookup)."""
    parent_path, _, name = path.rpartition("/")
    parent = get(parent_path or "/")
    if not isinstance(parent, h5py.Group):
        return None
    try:
        if isinstance(parent.get(name, getlink=True), h5py.HardLink):
            return parent[name]
    except (KeyError, OSError, RuntimeError, ValueError):
        return None
    return None


def default_plot(get: nexus_plot.Get, path: str) -> Plot | None:
    """The default plot reached from `path` (a group, or a signal dataset), else None."""
    try:
        return nexus_plot.resolve(get, path)
    except (OSError, RuntimeError, ValueError, TypeError):
        return None


def _ends(get: nexus_plot.Get, path: str) -> tuple[float, float] | None:
    """The first and last value of a 1-D numeric axis dataset, else None."""
    ds = get(path)
    try:
        if not isinstance(ds, h5py.Dataset) or ds.is_virtual or external_storage(ds):
            return None
        if ds.dtype.kind not in "iuf" or ds.shape is None or len(ds.shape) != 1 or ds.shape[0] < 1:
            return None
        first = read_bounded(ds, (slice(0, 1),))
        last = read_bounded(ds, (slice(ds.shape[0] - 1, ds.shape[0]),))
        return float(np.asarray(first).reshape(-1)[0]), float(np.asarray(last).reshape(-1)[0])
    except (OSError, RuntimeError, ValueError, TypeError, TooCostly, Refused, Missing):
        return None


def labels(get: nexus_plot.Get, plot: Plot, drawn: list[int]) -> Labels:
    """Labels for the drawn signal dimensions: x is the last, y the first of two."""
    x_axis = plot.axis(drawn[-1])
    x_label = x_axis.label if x_axis else f"dimension {drawn[-1]}"
    x_ends = _ends(get, x_axis.path) if x_axis else None
    if len(drawn) == 1:
        return Labels(x=x_label, y=plot.label, x_ends=x_ends)
    y_axis = plot.axis(drawn[0])
    y_label = y_axis.label if y_axis else f"dimension {drawn[0]}"
    y_ends = _ends(get, y_axis.path) if y_axis else None
    return Labels(x=x_label, y=y_label, x_ends=x_ends, y_ends=y_ends)
