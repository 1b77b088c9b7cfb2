"""What a scan learns from the seven real NeXus files: instrument, facility, probe, PaNET
techniques from application definitions, times, sample, the default plot; and ``--public``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from panbinder.data_mounts import nexus_plot, nexus_techniques, search
from panbinder.data_mounts.access import ANONYMOUS
from panbinder.data_mounts.catalogue import Catalogue
from panbinder.data_mounts.models import Dataset
from panbinder.data_mounts.nexus import read_nexus
from panbinder.data_mounts.scan import parse_time
from panbinder.data_mounts.search_query import SearchQuery
from tests.shared_data import NEXUS

EXPECTED = json.loads((NEXUS / "expected.json").read_text(encoding="utf-8"))["files"]
# what the files say about their technique (expected.json's "technique" in PaNET terms)
TECHNIQUES = {
    "DLS_i03_i04_NXmx_Therm_6_2.nxs": ["PaNET01164"],  # NXmx: macromolecular crystallography
    "33837rear_1D_1.75_16.5_NXcanSAS_v3.h5": ["PaNET01189"],  # NXcanSAS + neutron source: SANS
    "cs_af1410.h5": ["PaNET01189"],
    "sans2009n012333.hdf": ["PaNET01189"],  # "SANS at SINQ"
    "USAXS_flyScan_GC_M4_NewD_15.h5": ["PaNET01241"],  # canSAS SASentry + "USAXS": USAXS
    "chopper.nxs": ["PaNET00101"],  # no definition: only the spallation source's neutron probe
    "scan101.nxs": [],  # nothing in the file says
}
PROBES = {"neutron": "neutron", "X-ray": "x-ray"}
# (scientific field, data type): the field only where the technique implies one; processed for the
# reduced canSAS files (expected.json: "reduced 1-D I(Q)", "reduced R(Q)"), raw for detector data
FIELDS = {
    "DLS_i03_i04_NXmx_Therm_6_2.nxs": ("Structural biology", "raw"),
    "33837rear_1D_1.75_16.5_NXcanSAS_v3.h5": ("Materials and soft matter", "processed"),
    "cs_af1410.h5": ("Materials and soft matter", "processed"),
    "sans2009n012333.hdf": ("Materials and soft matter", "raw"),
    "USAXS_flyScan_GC_M4_NewD_15.h5": ("Materials and soft matter", "processed"),
    "chopper.nxs": ("", "raw"),
    "scan101.nxs": ("", "raw"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_files_give_instrument_facility_probe_times_sample_and_technique(name):
    want = EXPECTED[name]
    info = read_nexus(NEXUS / name)
    entry = want["entry_details"][want["default_entry"]]
    inst = entry["instruments"][0]
    assert info.instrument == (
        inst["name"] or inst["short_name_attr"] or want["root_attributes"].get("instrument")
    )
    assert info.facility == inst["source_name"]
    assert info.start_time == entry["start_time"] and info.end_time == entry["end_time"]
    assert info.sample == next((s["name"] for s in entry["samples"] if s["name"]), None)
    assert info.techniques == TECHNIQUES[name]
    if name != "USAXS_flyScan_GC_M4_NewD_15.h5" and name != "scan101.nxs":  # their sources say nothing
        assert info.probe == PROBES[want["source"]["radiation"]]
    signal = (
        entry["nxdata"][entry["default_nxdata"]]["signal"]["path"] if entry.get("default_nxdata") else None
    )
    if signal:
        assert info.entry.signal == signal
    assert (info.scientific_field, info.data_type) == FIELDS[name]


def test_definitions_map_to_panet_and_the_probe_narrows_them():
    assert nexus_techniques.techniques(["NXmx"], None, "x-ray") == ["PaNET01164"]
    assert nexus_techniques.techniques(["NXcanSAS"], None, "x-ray") == ["PaNET01188"]  # SAXS
    assert nexus_techniques.techniques(["nxtofraw"], None, "neutron") == ["PaNET01001"]
    assert nexus_techniques.techniques(["NXunknown"], "Beamline 7", "") == []
    assert nexus_techniques.probe_of("Synchrotron X-ray Source") == "x-ray"
    assert nexus_techniques.probe_of(None, "Reactor Neutron Source") == "neutron"


@pytest.fixture
def storage(tmp_path: Path) -> Path:
    root = tmp_path / "storage"
    for name in EXPECTED:
        (root / name.split(".")[0]).mkdir(parents=True)
        shutil.copyfile(NEXUS / name, root / name.split(".")[0] / name)
    return root


def test_scan_stores_the_metadata_and_public_makes_datasets_open(tmp_path, storage):
    cat = Catalogue(db_url=f"sqlite:///{tmp_path}/c.sqlite", storage_roots=[str(storage)])
    try:
        report = cat.scan(str(storage), public=True)
        assert report.datasets == 7
        with cat.session() as s:
            rows = {d.pid: d for d in s.scalars(select(Dataset))}
            mx = rows["local:DLS_i03_i04_NXmx_Therm_6_2"]
            assert (mx.instrument, mx.facility, mx.probe) == ("I04", "Diamond Light Source", "x-ray")
            assert [t.panet_id for t in mx.techniques] == ["PaNET01164"]
            assert mx.techniques[0].label == "macromolecular crystallography"
            assert mx.end_date == parse_time("2019-02-14T14:26:24")
            assert mx.preview == "DLS_i03_i04_NXmx_Therm_6_2.nxs::/entry/data/data"
            sans = rows["local:sans2009n012333"]
            assert sans.sample == "11/50 22PC0.3%_heatingupto70C_800bar"
            assert all(d.is_public for d in rows.values())
            # the technique facet finds all four small angle scattering files under "SAS"
            found = search.search_datasets(
                s, SearchQuery(filters=(("technique", ("PaNET01124",)),)), ANONYMOUS, with_facets=False
            )
            assert found.total == 4
            assert search.search_datasets(s, SearchQuery(q="vesicles"), ANONYMOUS).total == 1
            assert (mx.scientific_field, mx.data_type) == ("Structural biology", "raw")
            facets = search.search_datasets(s, SearchQuery(), ANONYMOUS).facets
            assert {(v.value, v.count) for v in facets["field"]} == {
                ("Structural biology", 1),
                ("Materials and soft matter", 4),
            }
            assert {(v.value, v.count) for v in facets["data_type"]} == {("raw", 4), ("processed", 3)}
            found = search.search_datasets(
                s, SearchQuery(filters=(("data_type", ("processed",)),)), ANONYMOUS, with_facets=False
            )
            assert found.total == 3
    finally:
        cat.close()


def test_without_public_new_scanned_datasets_stay_closed(tmp_path, storage):
    cat = Catalogue(db_url=f"sqlite:///{tmp_path}/c.sqlite", storage_roots=[str(storage)])
    try:
        cat.scan(str(storage))
        with cat.session() as s:
            assert not any(d.is_public for d in s.scalars(select(Dataset)))
    finally:
        cat.close()


def _open_get(path: Path):
    """A nexus_plot getter on an open file (the scan's own in-file lookup is tested above)."""
    import h5py

    file = h5py.File(path, "r")

    def get(name: str):
        try:
            return file[name]
        except (KeyError, OSError):
            return None

    return file, get


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_default_plot_follows_the_nexus_chain_as_expected(name):
    want = EXPECTED[name]
    entry = want["entry_details"][want["default_entry"]]
    plot = read_nexus(NEXUS / name).entry.plot
    if entry["default_nxdata"] is None:  # two NXdata and no @default: the first by name
        assert (plot.nxdata, plot.nxdata_from) == (entry["nxdata_groups"][0], "first NXdata")
    else:
        assert (plot.nxdata, plot.nxdata_from) == (entry["default_nxdata"], entry["default_nxdata_from"])
    file, get = _open_get(NEXUS / name)
    with file:
        assert nexus_plot.default_entry(get) == (f"/{want['default_entry']}", want["default_entry_from"])
        for details in want["entry_details"].values():
            for path, nxdata in details["nxdata"].items():
                found = nexus_plot.plot_of(get, path, "")
                assert (found.signal, found.signal_from) == (nxdata["signal"]["path"], nxdata["signal_from"])
                assert [a.path for a in found.axes] == [a["path"] for a in nxdata["axes"] or []]
                assert found.axes_from == nxdata["axes_from"]
        assert nexus_plot.resolve(get, "/") == plot


def test_axis_labels_carry_units_and_dimensions():
    plot = read_nexus(NEXUS / "chopper.nxs").entry.plot
    assert [(a.dim, a.label) for a in plot.axes] == [
        (0, "Polar Angle [degrees]"),
        (1, "Time-of-Flight [microseconds]"),
    ]
    sans = read_nexus(NEXUS / "33837rear_1D_1.75_16.5_NXcanSAS_v3.h5").entry.plot
    assert (sans.label, sans.axes[0].label) == ("I (Counts)", "Q (1/A)")
    sinq = read_nexus(NEXUS / "sans2009n012333.hdf").entry.plot
    assert [(a.dim, a.path.rsplit("/", 1)[1]) for a in sinq.axes] == [(0, "detector_x"), (1, "detector_y")]
    mx = read_nexus(NEXUS / "DLS_i03_i04_NXmx_Therm_6_2.nxs").entry.plot
    assert [(a.dim, a.label) for a in mx.axes] == [(0, "omega (deg)")]
