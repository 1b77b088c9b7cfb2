"""The NeXus reader on the seven real facility files (against expected.json) and on h5py-written files."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest

from panbinder.data_mounts import nexus
from panbinder.data_mounts.nexus import decode, read_nexus
from panbinder.errors import PanbinderError
from tests.shared_data import NEXUS

EXPECTED = json.loads((NEXUS / "expected.json").read_text(encoding="utf-8"))["files"]


@pytest.fixture
def reads(monkeypatch):
    """Record every dataset read; the reader may only read small string datasets."""
    seen: list[tuple[str, tuple | None, str]] = []
    original = h5py.Dataset.__getitem__

    def spy(self, key):
        seen.append((self.name, self.shape, self.dtype.kind))
        return original(self, key)

    def refuse(self, *args, **kwargs):
        raise AssertionError(f"read_direct on {self.name}")

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    monkeypatch.setattr(h5py.Dataset, "read_direct", refuse)
    return seen


def test_expected_covers_all_seven_files():
    assert len(EXPECTED) == 7
    assert {p.name for p in NEXUS.iterdir() if p.suffix in (".nxs", ".h5", ".hdf")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_file_matches_expected(name, tmp_path, reads):
    path = tmp_path / name
    shutil.copyfile(NEXUS / name, path)
    want = EXPECTED[name]
    info = read_nexus(path)
    assert [e.name for e in info.entries] == want["entries"]
    assert info.default_entry == want["default_entry"]
    assert info.default_entry_from == want["default_entry_from"]
    for key, value in want["root_attributes"].items():
        assert info.root_attributes.get(key) == value, key
    for entry in info.entries:
        detail = want["entry_details"][entry.name]
        assert entry.title == detail["title"]
        assert entry.start_time == detail["start_time"]
        assert entry.end_time == detail.get("end_time")
        got = [
            {"path": i.path, "name": i.name, "short_name_attr": i.short_name, "source_name": i.source_name}
            for i in entry.instruments
        ]
        assert got == detail["instruments"]
        assert [{"path": s.path, "name": s.name} for s in entry.samples] == detail["samples"]
    # only small string datasets were read: never a signal, never the 70 GB virtual dataset
    assert reads, "the spy saw no reads at all"
    for ds_name, shape, kind in reads:
        assert kind in "SO" and (shape is None or int(np.prod(shape)) <= nexus.SMALL), (ds_name, shape)


def test_convenience_fields_of_the_default_entry(tmp_path):
    def info(name):
        shutil.copyfile(NEXUS / name, tmp_path / name)
        return read_nexus(tmp_path / name)

    chopper = info("chopper.nxs")
    assert (chopper.title, chopper.instrument, chopper.facility) == (
        "MgB2 PDOS 43.37g 8K 120meV E0@240Hz T0@120Hz",
        "LRMECS",
        "IPNS",
    )
    dls = info("DLS_i03_i04_NXmx_Therm_6_2.nxs")  # no name field: the short_name attribute
    assert (dls.title, dls.instrument, dls.facility) == (None, "I04", "Diamond Light Source")
    assert dls.start_time == "2019-02-14T14:25:57"
    cs = info("cs_af1410.h5")  # ten entries, root @default picks one
    assert cs.entry.name == "AF1410_10" and cs.title == "AF1410-10 (AF1410 steel aged 10 h)"
    scan = info("scan101.nxs")  # Latin-1 attribute bytes do not break reading
    assert scan.instrument is None and scan.title == "{experiment-type}\n"


def test_decode():
    assert decode(b"\xc5") == "Å"  # not UTF-8: Latin-1
    assert decode(np.bytes_(b"\xc2\xb0")) == "°"
    assert decode(np.array([b"one"])) == "one"
    assert decode(np.array([[b"x"]], dtype="S1")) == "x"
    assert decode(np.array([b"a", b"b"])) == "a\nb"
    assert decode(np.array([], dtype="S1")) is None
    assert decode(np.int32(3)) == "3"
    assert decode(None) is None


def write_entry(group: h5py.Group, *, title=None, start=None, nx_class: str | None = "NXentry"):
    if nx_class:
        group.attrs["NX_class"] = nx_class
    if title is not None:
        group["title"] = title
    if start is not None:
        group["start_time"] = start


def test_several_entries_without_default(tmp_path):
    path = tmp_path / "multi.nxs"
    with h5py.File(path, "w") as f:
        write_entry(f.create_group("scan_2"), title="second")
        write_entry(f.create_group("scan_1"), title="first", start="2024-01-02T03:04:05Z")
        f.create_group("not_an_entry").attrs["NX_class"] = "NXcollection"
    info = read_nexus(path)
    assert [e.name for e in info.entries] == ["scan_1", "scan_2"]
    assert (info.default_entry, info.default_entry_from) == ("scan_1", "first NXentry")
    assert info.title == "first" and info.start_time == "2024-01-02T03:04:05Z"


def test_default_attribute_chooses_entry(tmp_path):
    path = tmp_path / "d.nxs"
    with h5py.File(path, "w") as f:
        f.attrs["default"] = np.bytes_(b"b")
        write_entry(f.create_group("a"), title="A")
        write_entry(f.create_group("b"), title=np.array([b"B"]))
    info = read_nexus(path)
    assert (info.default_entry, info.default_entry_from, info.title) == ("b", "root@default", "B")


def test_nexus_v1_without_nx_class(tmp_path):
    path = tmp_path / "old.hdf"
    with h5py.File(path, "w") as f:
        entry = f.create_group("entry1")
        write_entry(entry, title="old style", nx_class=None)
        inst = entry.create_group("instrument")  # no NX_class either
        inst["name"] = np.array([b"D22"])
        inst.create_group("source")["name"] = b"ILL"
    info = read_nexus(path)
    assert [e.name for e in info.entries] == ["entry1"]
    assert (info.title, info.instrument, info.facility) == ("old style", "D22", "ILL")


def test_latin1_attributes_variable_strings_and_pid(tmp_path):
    path = tmp_path / "enc.h5"
    with h5py.File(path, "w") as f:
        f.attrs["pid"] = "10.5281/zenodo.42"
        f.attrs["note"] = np.bytes_(b"10 \xb0C")
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = np.bytes_(b"NXentry")
        entry.create_dataset("title", data="Ünïcode title", dtype=h5py.string_dtype())
        inst = entry.create_group("instrument")
        inst.attrs["NX_class"] = "NXinstrument"
        name = inst.create_dataset("name", data=b"X\xe9")
        name.attrs["units"] = np.bytes_(b"\xc5")
    info = read_nexus(path)
    assert info.pid == "10.5281/zenodo.42"
    assert info.root_attributes["note"] == "10 °C"
    assert info.title == "Ünïcode title"
    assert info.instrument == "Xé"


def test_never_reads_large_numeric_or_virtual_data(tmp_path, reads):
    path = tmp_path / "big.nxs"
    src = tmp_path / "src.h5"
    with h5py.File(src, "w") as f:
        f.create_dataset("data", data=np.zeros((2, 4), "int32"))
    with h5py.File(path, "w") as f:
        entry = f.create_group("entry")
        write_entry(entry, title=np.array([b"t"] * 100))  # too many elements: not read
        entry["start_time"] = np.int64(5)  # numeric: not read as text
        layout = h5py.VirtualLayout(shape=(2, 4), dtype="int32")
        layout[:] = h5py.VirtualSource(str(src), "data", shape=(2, 4))
        entry.create_virtual_dataset("end_time", layout)  # a virtual dataset is never read
        entry["missing"] = h5py.ExternalLink("nowhere.h5", "/entry")
        entry.create_group("instrument").attrs["NX_class"] = "NXinstrument"
        entry["instrument"]["name"] = h5py.ExternalLink("nowhere.h5", "/name")
    src.unlink()
    info = read_nexus(path)
    assert (info.title, info.start_time, info.entry.end_time, info.instrument) == (None, None, None, None)
    assert reads == []


def test_not_hdf5(tmp_path):
    path = tmp_path / "fake.h5"
    path.write_text("not HDF5")
    with pytest.raises(PanbinderError, match=r"fake\.h5 is not a readable HDF5 file"):
        read_nexus(path)
