"""Scanning a storage tree: real NeXus files, h5py-written files, a terabyte-shaped dataset, rescans."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import h5py
import numpy as np
import pytest
from sqlalchemy import func, select

from panbinder.data_mounts.catalogue import Catalogue
from panbinder.data_mounts.models import Dataset, DatasetFile
from panbinder.data_mounts.scan import is_hdf5, parse_time, sha256_file
from panbinder.errors import PanbinderError
from tests.shared_data import NEXUS

EXPECTED = json.loads((NEXUS / "expected.json").read_text(encoding="utf-8"))["files"]
TIB = 2**40


def copy(name: str, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(NEXUS / name, dest)  # copyfile: writable copies of the read-only originals
    return dest


def write_huge(path: Path) -> None:
    """A chunked dataset of 1 TiB apparent size with two chunks written."""
    with h5py.File(path, "w") as f:
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        entry["title"] = "terabyte-shaped"
        data = entry.create_group("data")
        data.attrs["NX_class"] = "NXdata"
        frames = data.create_dataset(
            "frames", shape=(2**20, 1024, 1024), dtype="uint8", chunks=(1, 1024, 1024)
        )
        frames[0] = 1
        frames[1000] = 2


@pytest.fixture
def storage(tmp_path: Path) -> Path:
    root = tmp_path / "storage"
    beamline = root / "beamline"
    copy("chopper.nxs", beamline / "run1" / "chopper.nxs")
    copy("sans2009n012333.hdf", beamline / "run1" / "sub" / "sans2009n012333.hdf")
    (beamline / "run1" / "notes.txt").write_text("not a data file")
    copy("DLS_i03_i04_NXmx_Therm_6_2.nxs", beamline / "run2" / "DLS_i03_i04_NXmx_Therm_6_2.nxs")
    write_huge(beamline / "run2" / "huge.h5")
    copy("cs_af1410.h5", beamline / "cs_af1410.h5")  # a file directly in the scanned root
    (beamline / "run3").mkdir()
    (beamline / "run3" / "broken.nxs").write_text("this is not HDF5")
    (beamline / "empty").mkdir()
    (beamline / "empty" / "readme.txt").write_text("no data")
    copy("chopper.nxs", beamline / ".snapshot" / "old.nxs")
    (beamline / "alias").symlink_to(beamline / "run1")  # a symlink inside the root: same dataset
    return root


def datasets(cat) -> dict[str, Dataset]:
    with cat.session() as s:
        rows = s.scalars(select(Dataset)).all()
        for ds in rows:
            _ = ds.files
        return {d.pid: d for d in rows}


def test_huge_file_is_small_on_disk(tmp_path):
    path = tmp_path / "huge.h5"
    write_huge(path)
    with h5py.File(path) as f:
        assert f["entry/data/frames"].nbytes >= TIB
    assert path.stat().st_size < 8 * 2**20
    assert path.stat().st_blocks * 512 < 8 * 2**20


def test_scan_registers_datasets(cat, storage, monkeypatch):
    touched: list[str] = []
    original = h5py.Dataset.__getitem__

    def spy(self, key):
        touched.append(self.name)
        assert self.dtype.kind in "SO" and int(np.prod(self.shape or ())) <= 16, self.name
        return original(self, key)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    report = cat.scan(str(storage / "beamline"))
    assert touched  # titles and names were read through the spy
    assert (report.datasets, report.files, report.hashed, report.skipped_unchanged) == (4, 6, 6, 0)
    assert report.unreadable == (str((storage / "beamline/run3/broken.nxs").resolve()),)
    assert sorted(report.pids) == [  # "alias" is a symlink to run1: one dataset, not two
        "local:beamline/cs_af1410.h5",
        "local:beamline/run1",
        "local:beamline/run2",
        "local:beamline/run3",
    ]
    found = datasets(cat)
    run1 = found["local:beamline/run1"]
    assert run1.location == str((storage / "beamline/run1").resolve())
    assert run1.title == EXPECTED["chopper.nxs"]["entry_details"]["entry"]["title"]
    assert (run1.instrument, run1.facility) == ("LRMECS", "IPNS")
    assert run1.creation_date == datetime(2001, 2, 7, 14, 54, 21, tzinfo=UTC)  # earliest start_time
    assert [f.path for f in run1.files] == ["chopper.nxs", "sub/sans2009n012333.hdf"]
    assert run1.files[0].sha256 == EXPECTED["chopper.nxs"]["sha256"]
    assert run1.files[1].sha256 == EXPECTED["sans2009n012333.hdf"]["sha256"]
    assert run1.size == 382712 + 58499 and run1.file_count == 2
    run2 = found["local:beamline/run2"]
    assert run2.title == "terabyte-shaped"  # the DLS file has no title
    assert (run2.instrument, run2.facility) == ("I04", "Diamond Light Source")
    assert run2.files[0].sha256 == EXPECTED["DLS_i03_i04_NXmx_Therm_6_2.nxs"]["sha256"]
    huge = storage / "beamline/run2/huge.h5"
    assert run2.files[1].sha256 == hashlib.sha256(huge.read_bytes()).hexdigest()
    assert run2.files[1].size == huge.stat().st_size < 8 * 2**20
    single = found["local:beamline/cs_af1410.h5"]
    assert single.location == str((storage / "beamline/cs_af1410.h5").resolve())
    assert [f.path for f in single.files] == ["cs_af1410.h5"]
    assert (single.title, single.instrument) == ("AF1410-10 (AF1410 steel aged 10 h)", "NIST/CNRF SANS")
    broken = found["local:beamline/run3"]
    assert broken.title == "run3" and broken.file_count == 1  # registered, named after its folder


def test_rescan_hashes_only_changed_files(cat, storage, monkeypatch):
    cat.scan(str(storage / "beamline"))
    again = cat.scan(str(storage / "beamline"))
    assert (again.datasets, again.files, again.hashed, again.skipped_unchanged) == (4, 6, 0, 6)

    hashed: list[str] = []
    original = sha256_file

    def counting(path, *args, **kwargs):
        hashed.append(Path(path).name)
        return original(path, *args, **kwargs)

    monkeypatch.setattr("panbinder.data_mounts.scan.sha256_file", counting)
    chopper = storage / "beamline/run1/chopper.nxs"
    with h5py.File(chopper, "a") as f:
        f["entry"].attrs["note"] = "changed"  # new content
    st = chopper.stat()
    os.utime(chopper, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    huge = storage / "beamline/run2/huge.h5"
    os.utime(huge, ns=(huge.stat().st_atime_ns, huge.stat().st_mtime_ns + 10**9))  # mtime only
    third = cat.scan(str(storage / "beamline"))
    assert sorted(hashed) == ["chopper.nxs", "huge.h5"]
    assert (third.hashed, third.skipped_unchanged) == (2, 4)
    run1 = datasets(cat)["local:beamline/run1"]
    assert run1.files[0].sha256 == hashlib.sha256(chopper.read_bytes()).hexdigest()
    assert run1.files[0].sha256 != EXPECTED["chopper.nxs"]["sha256"]
    assert run1.files[0].mtime_ns == chopper.stat().st_mtime_ns


def test_rescan_follows_added_and_removed_files(cat, storage):
    cat.scan(str(storage / "beamline"))
    (storage / "beamline/run1/sub/sans2009n012333.hdf").unlink()
    copy("scan101.nxs", storage / "beamline/run1/scan101.nxs")
    report = cat.scan(str(storage / "beamline"))
    assert report.hashed == 1
    run1 = datasets(cat)["local:beamline/run1"]
    assert [f.path for f in run1.files] == ["chopper.nxs", "scan101.nxs"]
    assert run1.size == 382712 + 2470673
    with cat.session() as s:
        assert s.scalar(select(func.count()).select_from(DatasetFile)) == 6


def test_pid_attribute_and_imported_metadata(cat, storage):
    cat.import_datasets([{"pid": "10.5281/zenodo.42", "title": "From the catalogue", "isPublic": False}])
    with h5py.File(storage / "beamline/run3/tagged.h5", "w") as f:
        f.attrs["pid"] = "10.5281/zenodo.42"
        f.create_group("entry").attrs["NX_class"] = "NXentry"
        f["entry/title"] = "From the file"
    report = cat.scan(str(storage / "beamline"))
    assert "10.5281/zenodo.42" in report.pids and "local:beamline/run3" not in report.pids
    ds = datasets(cat)["10.5281/zenodo.42"]
    assert ds.title == "From the catalogue"  # imported metadata is kept
    assert ds.location == str((storage / "beamline/run3").resolve())
    assert [f.path for f in ds.files] == ["broken.nxs", "tagged.h5"]


def test_scan_root_outside_storage_refused(cat, tmp_path):
    other = tmp_path / "elsewhere"
    other.mkdir()
    with pytest.raises(PanbinderError, match="outside the storage roots"):
        cat.scan(str(other))
    with pytest.raises(PanbinderError, match="not a folder"):
        cat.scan(str(cat.storage_roots[0]) + "/beamline/cs_af1410.h5")


def skipped(report) -> dict[str, str]:
    return {e.name: e.why for e in report.skipped}


def test_symlink_out_of_the_root_is_skipped_and_the_rest_registered(cat, storage, tmp_path):
    outside = tmp_path / "outside"
    copy("chopper.nxs", outside / "chopper.nxs")
    (storage / "beamline" / "zz_escape").symlink_to(outside)
    report = cat.scan(str(storage / "beamline"))
    assert skipped(report) == {"zz_escape": "a symbolic link out of the storage roots"}
    assert report.datasets == 4 and "local:beamline/run1" in datasets(cat)
    assert not any("outside" in pid for pid in datasets(cat))
    assert str(tmp_path) not in repr(report.skipped)  # names relative to the scanned folder


def test_symlinked_files_leaving_their_dataset_are_skipped(cat, storage, tmp_path):
    (tmp_path / "outside").mkdir()
    copy("chopper.nxs", tmp_path / "outside" / "x.nxs")
    (storage / "beamline/run1/evil.nxs").symlink_to(tmp_path / "outside" / "x.nxs")
    (storage / "beamline/run1/other.nxs").symlink_to(storage / "beamline/run2/huge.h5")
    (storage / "beamline/run1/gone.nxs").symlink_to(tmp_path / "nowhere.nxs")
    (storage / "beamline/run2/linked-dir").symlink_to(storage / "beamline/run3")
    report = cat.scan(str(storage / "beamline"))
    reasons = skipped(report)
    assert reasons["run1/evil.nxs"] == "a symbolic link out of the storage roots"
    assert reasons["run1/other.nxs"].startswith("a symbolic link out of its dataset folder")
    assert reasons["run1/gone.nxs"] == "a broken symbolic link"
    assert reasons["run2/linked-dir"] == "a symbolic link to a folder (not followed)"
    assert len(reasons) == 4
    # the datasets are registered without the bad entries
    assert report.datasets == 4
    run1 = datasets(cat)["local:beamline/run1"]
    assert [f.path for f in run1.files] == ["chopper.nxs", "sub/sans2009n012333.hdf"]


def test_unlistable_folder_is_reported(cat, storage, monkeypatch):
    locked = storage / "beamline/run1/locked"
    locked.mkdir()
    real_scandir = os.scandir

    def scandir(path):  # as for a folder without read permission (the tests may run as root)
        if os.fspath(path) == str(locked):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    report = cat.scan(str(storage / "beamline"))
    assert skipped(report) == {"run1/locked": "a folder that cannot be listed"}
    assert "local:beamline/run1" in report.pids


def test_pid_taken_by_another_location_is_skipped(cat, storage):
    for run in ("run1", "run2"):
        with h5py.File(storage / f"beamline/{run}/tagged.h5", "w") as f:
            f.attrs["pid"] = "10.5281/zenodo.7"
    report = cat.scan(str(storage / "beamline"))
    assert list(skipped(report)) == ["run2"]
    assert "already registered for another location" in report.skipped[0].why
    assert str(storage) not in report.skipped[0].why
    assert datasets(cat)["10.5281/zenodo.7"].location == str((storage / "beamline/run1").resolve())
    assert report.datasets == 3


def test_symlink_inside_dataset_and_symlinked_root(tmp_path, storage):
    (storage / "beamline/run1/link.nxs").symlink_to(storage / "beamline/run1/chopper.nxs")
    root_link = tmp_path / "data"
    root_link.symlink_to(storage)
    cat = Catalogue(db_url=f"sqlite:///{tmp_path}/l.sqlite", storage_roots=[str(root_link)])
    report = cat.scan(str(root_link / "beamline"))
    run1 = datasets(cat)["local:beamline/run1"]
    cat.close()
    assert report.datasets == 4
    assert run1.location == str((storage / "beamline/run1").resolve())  # stored resolved
    assert [f.path for f in run1.files] == ["chopper.nxs", "link.nxs", "sub/sans2009n012333.hdf"]


def test_helpers(tmp_path):
    data = os.urandom(3 * 1024 + 5)
    (tmp_path / "f").write_bytes(data)
    assert sha256_file(tmp_path / "f", chunk_size=1024) == hashlib.sha256(data).hexdigest()
    assert all(is_hdf5(n) for n in ["a.h5", "a.HDF", "a.hdf5", "a.nxs", "a.nx5", "a.nxs.h5"])
    assert not any(is_hdf5(n) for n in ["a.txt", "a.h5.bak", "h5"])
    assert parse_time("2009-09-13 20:55:37") == datetime(2009, 9, 13, 20, 55, 37, tzinfo=UTC)
    assert parse_time("2013-09-28T04:50:48+0100") == datetime(2013, 9, 28, 3, 50, 48, tzinfo=UTC)
    assert parse_time("{Date and time}") is None and parse_time(None) is None


def test_broken_top_level_symlink_is_skipped(cat, storage, tmp_path):
    (storage / "beamline" / "gone").symlink_to(tmp_path / "nowhere")
    report = cat.scan(str(storage / "beamline"))
    assert report.datasets == 4 and skipped(report) == {"gone": "a broken symbolic link"}


def test_file_vanishing_during_scan_writes_nothing(cat, storage, monkeypatch):
    def vanished(path, *args, **kwargs):
        raise FileNotFoundError(2, "No such file or directory", str(path))

    monkeypatch.setattr("panbinder.data_mounts.scan.sha256_file", vanished)
    with pytest.raises(PanbinderError, match=r"stopped at .*No such file or directory") as err:
        cat.scan(str(storage / "beamline"))
    assert "Nothing was written" in err.value.message
    assert datasets(cat) == {}


def test_scan_stores_application_definitions_and_templates_fit_on_them(cat, storage):
    import asyncio

    from panbinder.data_mounts import analysis_templates as at
    from panbinder.data_mounts.models import dataset_definitions

    cat.scan(str(storage / "beamline"))
    with cat.session() as s:
        rows = s.execute(
            select(Dataset.pid, dataset_definitions.c.definition).join(
                dataset_definitions, dataset_definitions.c.dataset_id == Dataset.id
            )
        ).all()
    assert ("local:beamline/run2", "NXmx") in rows
    assert all(pid != "local:beamline/run1" for pid, _ in rows)  # no definition in its files
    # a template for any technique with --format NXmx fits the dataset through the stored definition

    async def resolve(repo: str, ref: str) -> str:
        return "a" * 40

    with cat.session() as s:
        techniques = sorted({t.panet_id for ds in s.scalars(select(Dataset)) for t in ds.techniques})
    record = at.make_record(
        repo_url="https://git.example.org/mx.git",
        ref="main",
        title="MX",
        techniques=techniques,
        formats=["nxmx"],
    )
    asyncio.run(at.register(cat, record, resolve=resolve))
    with cat.session() as s:
        ids = dict(s.execute(select(Dataset.id, Dataset.pid)).all())
        fits = {ids[i] for i in at.fitting(s, list(ids))}
    assert "local:beamline/run2" in fits and "local:beamline/run1" not in fits
