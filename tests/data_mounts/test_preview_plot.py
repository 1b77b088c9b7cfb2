"""Thumbnails follow NeXus's default plot chain (data_mounts/preview_plot.py, nexus_plot.py) and
carry axis labels (plot_labels.py), checked against what expected.json says of the seven real
facility files."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from panbinder.data_mounts import preview
from panbinder.data_mounts.h5confine import Files, Scope
from panbinder.data_mounts.plot_labels import Labels, band, framed, number
from panbinder.data_mounts.png import BACKGROUND
from panbinder.data_mounts.preview_plot import default_plot, getter, labels
from panbinder.errors import PanbinderError
from tests.data_mounts import test_preview
from tests.data_mounts.test_preview import DIAMOND, EXPECTED, decode_png

nexus_copy = test_preview.nexus_copy  # the seven files, copied once per module


def _default(name: str) -> dict:
    want = EXPECTED[name]
    entry = want["entry_details"][want["default_entry"]]
    nxdata = entry["default_nxdata"] or entry["nxdata_groups"][0]  # no @default: the first NXdata
    return entry["nxdata"][nxdata]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_chain_from_the_file_reaches_the_expected_signal_and_axes(nexus_copy, name):
    want = _default(name)
    with h5py.File(nexus_copy / name) as file, Files(file, Scope.of(nexus_copy / name)) as files:
        get = getter(files, file)
        for start in ("/", f"/{EXPECTED[name]['default_entry']}", want["signal"]["path"]):
            plot = default_plot(get, start)
            assert plot.signal == want["signal"]["path"], start
            assert [a.path for a in plot.axes] == [a["path"] for a in want["axes"] or []]
        drawn = [i for i, n in enumerate(want["signal"]["shape"]) if n > 1][-2:]
        text = labels(get, plot, drawn)
    axes = {a.dim: a for a in plot.axes}
    assert text.x == (axes[drawn[-1]].label if drawn[-1] in axes else f"dimension {drawn[-1]}")
    if name == DIAMOND:  # the chain reaches the virtual dataset, whose source file is missing
        with pytest.raises(PanbinderError) as caught:
            preview.thumbnail(nexus_copy / name, "/")
        assert caught.value.status_code == 409 and "Therm_6_2_000001.h5" in caught.value.message
        return
    whole = preview.thumbnail(nexus_copy / name, "/")
    assert whole == preview.thumbnail(nexus_copy / name, want["signal"]["path"])


def test_chopper_labels_are_the_axes_long_names_and_end_values(nexus_copy):
    path = nexus_copy / "chopper.nxs"
    with h5py.File(path) as file, Files(file, Scope.of(path)) as files:
        get = getter(files, file)
        text = labels(get, default_plot(get, "/entry"), [0, 1])
        tof, angle = file["/entry/data/time_of_flight"][()], file["/entry/data/polar_angle"][()]
    assert text == Labels(
        x="Time-of-Flight [microseconds]",
        y="Polar Angle [degrees]",
        x_ends=(float(tof[0]), float(tof[-1])),
        y_ends=(float(angle[0]), float(angle[-1])),
    )


def test_a_line_plot_is_labelled_with_the_signal_and_its_units(nexus_copy):
    path = nexus_copy / "33837rear_1D_1.75_16.5_NXcanSAS_v3.h5"
    with h5py.File(path) as file, Files(file, Scope.of(path)) as files:
        get = getter(files, file)
        text = labels(get, default_plot(get, "/"), [0])
    assert (text.x, text.y) == ("Q (1/A)", "I (Counts)")
    assert text.x_ends is not None and text.y_ends is None  # the signal's range comes from the values


def test_labels_are_drawn_in_the_bands_and_the_plot_keeps_its_pixels(nexus_copy):
    path = nexus_copy / "chopper.nxs"
    side = band()
    labelled = decode_png(preview.thumbnail(path, "/"))
    sans = nexus_copy / "sans2009n012333.hdf"  # the same counts in NXdata and in NXdetector:
    assert preview.thumbnail(sans, "/entry1/data1/counts", size=96) == preview.thumbnail(
        sans, "/entry1/SANS/detector/counts", size=96
    )  # below 128 pixels, a default plot has no labels
    bottom, left = labelled[-side:, side:], labelled[:-side, :side]
    for text_band in (bottom, left):
        dark = np.all(text_band < 128, axis=2)
        assert dark.sum() > 30  # text was written
    assert np.all(labelled[-side:, :side] == BACKGROUND)  # the corner stays empty


def test_framing_without_end_values_and_long_labels():
    plot = np.zeros((40, 150, 3), dtype=np.uint8)
    pixels = framed(plot, Labels(x="x" * 200, y="a very long label for a short plot"))
    assert pixels.shape == (40 + band(), 150 + band(), 3)
    assert np.array_equal(pixels[:40, band() :], plot)
    assert [number(v) for v in (1234567.0, 0.000123, 12.5, float("nan"))] == [
        "1.23e6",
        "0.000123",
        "12.5",
        "",
    ]


def test_a_group_without_a_default_plot_is_still_refused(tmp_path):
    path = tmp_path / "bare.nxs"
    with h5py.File(path, "w") as f:
        f.create_group("entry").attrs["NX_class"] = "NXentry"
        f["entry/values"] = np.arange(10.0)
    with pytest.raises(PanbinderError) as caught:
        preview.thumbnail(path, "/entry")
    assert caught.value.status_code == 400 and "no default plot" in caught.value.message


def test_the_chain_does_not_follow_links_out_of_the_dataset(tmp_path):
    outside = tmp_path / "outside.h5"
    with h5py.File(outside, "w") as f:
        f["secret"] = np.arange(10.0)
        f["axis"] = np.arange(10.0) * 2
    folder = tmp_path / "dataset"
    folder.mkdir()
    with h5py.File(folder / "scan.nxs", "w") as f:
        data = f.create_group("entry/data")
        f["entry"].attrs.update(NX_class="NXentry", default="data")
        data.attrs.update(NX_class="NXdata", signal="counts", axes=["x"])
        data["counts"] = h5py.ExternalLink(str(outside), "/secret")
        inside = f.create_group("entry/inside")
        inside.attrs.update(NX_class="NXdata", signal="counts", axes=["x"])
        inside["counts"] = np.arange(10.0)
        inside["x"] = h5py.ExternalLink(str(outside), "/axis")
    with pytest.raises(PanbinderError) as caught:
        preview.thumbnail(folder / "scan.nxs", "/", within=folder)
    assert caught.value.status_code in (400, 403)
    path = folder / "scan.nxs"
    with h5py.File(path) as file, Files(file, Scope.of(path, folder)) as files:
        plot = default_plot(getter(files, file), "/entry/inside")
        assert plot.signal == "/entry/inside/counts" and plot.axes == ()  # the outside axis is left out
        assert list(files.opened) == [str(path.resolve())]
