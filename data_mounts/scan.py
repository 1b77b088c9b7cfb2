"""Register HDF5/NeXus files found under a storage root as datasets.

Each top-level folder under the scanned root is one dataset (all HDF5/NeXus files below it);
each HDF5/NeXus file directly in the root is a dataset of its own (its location is the file).
Checksums are computed streaming, in chunks; a rescan re-hashes only files whose size or
mtime changed. Metadata comes from NeXus attributes (``nexus.read_nexus``), never from data.
Scanned datasets get the PID ``local:<path relative to the storage root>`` unless a file
carries a root ``pid`` attribute. Sample name, probe, end time, PaNET techniques (from the
application definition, ``nexus_techniques.py``), the scientific field those techniques imply,
the data type (raw or processed, from the definition or an NXprocess/NXdetector group) and
the default plot's signal (``preview``, "<file>::<dataset>", nexus_plot.py) come from the
files too; ``public`` marks every scanned dataset public. Every location and symlink passes ``paths.confine``.

A bad entry (a symbolic link out of the storage roots or out of its dataset, a broken link, a
folder that cannot be listed) is skipped and reported by its name relative to the scanned
folder; the rest of the tree is registered. One stray link in a tree of thousands of runs
must not keep the others out of the catalogue.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from panbinder.errors import PanbinderError
from panbinder.paths import confine, shown_name
from panbinder.progress import Progress, no_progress

from . import panet
from .importers import FileRecord
from .models import Dataset, DatasetFile, Technique, dataset_definitions

CHUNK_SIZE = 8 * 1024 * 1024
SUFFIXES = (".h5", ".hdf", ".hdf5", ".nxs", ".nx5", ".nxs.h5")
_PLACEHOLDER = re.compile(r"^\{[^{}]*\}$")  # unfilled template text such as "{experiment-type}"
TEXT_FIELDS = ("title", "instrument", "facility", "pid", "sample", "probe", "scientific_field", "data_type")
STORED = tuple(f for f in TEXT_FIELDS if f != "pid")  # the PID names the row, it is not copied
META_KEYS = (*TEXT_FIELDS, "creation_date", "end_date", "techniques", "preview")

SessionFactory = Callable[[], contextlib.AbstractContextManager[Session]]


@dataclass(frozen=True)
class Skipped:
    """An entry the scan left out: its name relative to the scanned folder, and why."""

    name: str
    why: str


@dataclass(frozen=True)
class ScanReport:
    datasets: int
    files: int
    hashed: int
    skipped_unchanged: int
    pids: tuple[str, ...] = ()
    unreadable: tuple[str, ...] = ()  # files registered without metadata (not HDF5 after all, truncated)
    skipped: tuple[Skipped, ...] = ()  # entries left out (bad symbolic links, unlistable folders)
    refused: tuple[str, ...] = ()  # "file: /object" not read: its values are kept in another file


@dataclass
class Found:
    """A dataset on disk: resolved location and its HDF5 files (relative POSIX path, path)."""

    rel: str
    location: Path
    files: list[tuple[str, Path]] = field(default_factory=list)


def is_hdf5(name: str) -> bool:
    return name.lower().endswith(SUFFIXES)


def sha256_file(path: str | os.PathLike[str], chunk_size: int = CHUNK_SIZE) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def parse_time(text: str | None) -> datetime | None:
    """A NeXus time (``2009-09-13 20:55:37``, ``...-0600``) as aware UTC; naive times are taken as UTC."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Skips:
    """Collects skipped entries, naming each relative to the scanned folder (full path in the log)."""

    def __init__(self, root: Path, log: logging.Logger) -> None:
        self.root, self.log, self.entries = root, log, []

    def add(self, path: str | os.PathLike[str], why: str, detail: str = "") -> None:
        name = shown_name(path, [self.root])
        self.entries.append(Skipped(name, why))
        self.log.warning("scan: skipping %s: %s%s", path, why, f" ({detail})" if detail else "")


def _file_link_problem(path: Path, folder: Path, roots: list[Path]) -> tuple[str, str] | None:
    """Why a symlinked file may not be registered in the dataset ``folder`` (None: it may)."""
    if not path.exists():
        return "a broken symbolic link", ""
    try:
        real = confine(path, roots)
    except PanbinderError as e:
        return "a symbolic link out of the storage roots", e.log_message
    if not real.is_relative_to(folder):
        return (
            "a symbolic link out of its dataset folder (datasets are mounted one by one; "
            "replace the link with the file)",
            f"links to {real}",
        )
    return None


def _walk(folder: Path, roots: list[Path], skips: Skips) -> list[tuple[str, Path]]:
    out = []

    def unlistable(e: OSError) -> None:  # os.walk would otherwise leave the folder out silently
        skips.add(e.filename, "a folder that cannot be listed", str(e))

    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False, onerror=unlistable):
        for d in list(dirnames):
            if d.startswith(".") or os.path.islink(os.path.join(dirpath, d)):
                dirnames.remove(d)
                if not d.startswith("."):
                    skips.add(os.path.join(dirpath, d), "a symbolic link to a folder (not followed)")
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath, name)
            if name.startswith(".") or not is_hdf5(name):
                continue
            problem = _file_link_problem(path, folder, roots) if path.is_symlink() else None
            if problem is not None:
                skips.add(path, *problem)
                continue
            out.append((path.relative_to(folder).as_posix(), path))
    return out


def discover(root: Path, roots: list[Path], skips: Skips) -> list[Found]:
    """The datasets under ``root`` (already confined), in name order, one per location."""
    found: dict[Path, Found] = {}
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        if entry.is_symlink() and not os.path.exists(entry.path):
            skips.add(entry.path, "a broken symbolic link")
            continue
        try:
            real = confine(entry.path, roots)  # a top-level symlink must stay under a root
        except PanbinderError as e:
            skips.add(entry.path, "a symbolic link out of the storage roots", e.log_message)
            continue
        if real in found:
            skips.log.info("scan: %s is the same dataset as %s", entry.path, found[real].rel)
            continue
        rel = next(real.relative_to(r).as_posix() for r in roots if real.is_relative_to(r))
        if real.is_dir():
            files = _walk(real, roots, skips)
            if not files:
                skips.log.info("scan: no HDF5/NeXus files under %s; not a dataset", entry.path)
                continue
            found[real] = Found(rel, real, files)
        elif real.is_file() and is_hdf5(real.name):
            found[real] = Found(rel, real, [(real.name, real)])
    return list(found.values())


def _clean(text: str | None) -> str:
    text = " ".join((text or "").split())
    return "" if _PLACEHOLDER.match(text) else text


def describe(found: Found, log: logging.Logger) -> tuple[dict, list[str]]:
    """Dataset metadata from the first file that has each field; earliest start time."""
    from .nexus import read_nexus  # h5py loads only when a scan runs, not with every command

    meta: dict = {**dict.fromkeys(TEXT_FIELDS, ""), "creation_date": None, "end_date": None}
    meta.update(techniques=[], definitions=[], preview="", refused=[])
    unreadable = []
    for rel, path in found.files:
        try:
            info = read_nexus(path)
        except PanbinderError as e:
            log.warning("scan: %s", e.message)
            unreadable.append(str(path))
            continue
        for name in info.refused:  # external raw storage: never read (nexus.py)
            log.warning("scan: %s: %s keeps its values in another file; not read", path, name)
            meta["refused"].append(
                f"{found.rel}/{rel}: {name}" if found.location.is_dir() else f"{rel}: {name}"
            )
        for key, value in (
            ("title", info.title),
            ("instrument", info.instrument),
            ("facility", info.facility),
            ("pid", info.pid),
            ("sample", info.sample),
            ("probe", info.probe),
            ("scientific_field", info.scientific_field),
            ("data_type", info.data_type),
        ):
            if not meta[key]:
                meta[key] = _clean(value)
        meta["techniques"] += [t for t in info.techniques if t not in meta["techniques"]]
        for definition in info.entry.definitions if info.entry is not None else ():
            name = _clean(definition)[:64]
            if name and name not in meta["definitions"]:
                meta["definitions"].append(name)
        if not meta["preview"] and info.entry is not None and info.entry.signal:
            meta["preview"] = f"{rel}::{info.entry.signal}"
        started, ended = parse_time(info.start_time), parse_time(info.end_time)
        if started and (meta["creation_date"] is None or started < meta["creation_date"]):
            meta["creation_date"] = started
        if ended and (meta["end_date"] is None or ended > meta["end_date"]):
            meta["end_date"] = ended
    meta["title"] = meta["title"] or Path(found.rel).name
    return meta, unreadable


def measure(
    found: Found, previous: dict[str, tuple[int, int | None, str | None]]
) -> tuple[list[FileRecord], int]:
    """File records with checksums; only new or changed files (size or mtime) are hashed."""
    records, hashed = [], 0
    for rel, path in found.files:
        st = path.stat()
        prev = previous.get(rel)
        if prev and prev[0] == st.st_size and prev[1] == st.st_mtime_ns and prev[2]:
            sha = prev[2]
        else:
            sha, hashed = sha256_file(path), hashed + 1
        records.append(FileRecord(rel, st.st_size, sha, st.st_mtime_ns))
    return records, hashed


def _previous(session: Session, locations: list[str]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    if not locations:
        return out
    rows = session.scalars(select(Dataset).where(Dataset.location.in_(locations)))
    for ds in rows:
        out[ds.location] = {f.path: (f.size, f.mtime_ns, f.sha256) for f in ds.files}
    return out


def _techniques(session: Session, ids: list[str]) -> list[Technique]:
    out = []
    for panet_id in ids:
        tech = session.scalar(select(Technique).where(Technique.panet_id == panet_id))
        if tech is None:
            tech = Technique(panet_id=panet_id, label=panet.label(panet_id) or panet_id)
            session.add(tech)
        out.append(tech)
    return out


def _store(session: Session, found: Found, meta: dict, files: list[FileRecord], public: bool = False) -> str:
    location = str(found.location)
    ds = session.scalar(select(Dataset).where(Dataset.location == location))
    pid = meta["pid"] or f"local:{found.rel}"
    if ds is None:
        ds = session.scalar(select(Dataset).where(Dataset.pid == pid))
        if ds is not None and ds.location and ds.location != location:
            raise PanbinderError(
                f"its PID '{pid}' is already registered for another location; "
                "fix the file's pid attribute or move the data",
                reason="pid_conflict",
                status_code=409,
                log_message=f"the PID '{pid}' of {location} is already registered for {ds.location}",
            )
    if ds is None:
        ds = Dataset(pid=pid, owners=[], groups=[])
        session.add(ds)
    ds.location = location
    refresh = ds.pid.startswith("local:")  # imported metadata wins over file attributes
    for key in (*STORED, "creation_date", "end_date", "preview"):
        if meta.get(key) and (refresh or not getattr(ds, key)):
            setattr(ds, key, meta[key])
    if meta.get("techniques") and (refresh or not ds.techniques):
        ds.techniques = _techniques(session, meta["techniques"])
    if public:
        ds.is_public = True
    sync_files(ds, files)
    if meta.get("definitions") is not None:  # read again (an unchanged dataset keeps its own)
        session.flush()  # the dataset's id
        _store_definitions(session, ds.id, meta["definitions"])
    ds.size = sum(f.size for f in files)
    ds.file_count = len(files)
    session.flush()
    return ds.pid


def _store_definitions(session: Session, dataset_id: int, definitions: list[str]) -> None:
    """The dataset's application definitions are those its files declare now (none: none)."""
    stored = set(
        session.scalars(
            select(dataset_definitions.c.definition).where(dataset_definitions.c.dataset_id == dataset_id)
        )
    )
    if stored == set(definitions):
        return  # no write: the search's kept results stay valid
    session.execute(delete(dataset_definitions).where(dataset_definitions.c.dataset_id == dataset_id))
    if definitions:
        rows = [{"dataset_id": dataset_id, "definition": d} for d in definitions]
        session.execute(dataset_definitions.insert(), rows)


def sync_files(ds: Dataset, files: list[FileRecord]) -> None:
    """Make the manifest equal ``files``, updating rows in place (the path is unique per dataset)."""
    existing = {f.path: f for f in ds.files}
    for rec in files:
        row = existing.pop(rec.path, None)
        if row is None:
            ds.files.append(
                DatasetFile(path=rec.path, size=rec.size, sha256=rec.sha256, mtime_ns=rec.mtime_ns)
            )
        else:
            row.size, row.sha256, row.mtime_ns = rec.size, rec.sha256, rec.mtime_ns
    for row in existing.values():
        ds.files.remove(row)


def run_scan(
    session: SessionFactory,
    root: Path,
    roots: list[Path],
    log: logging.Logger,
    progress: Progress = no_progress,
    public: bool = False,
) -> ScanReport:
    """Scan ``root`` (confined by the caller) and write all datasets in one transaction;
    ``progress`` is called on the datasets as they are measured and read."""
    skips = Skips(root, log)
    found = discover(root, roots, skips)
    with session() as s:
        previous = _previous(s, [str(f.location) for f in found])
    results, hashed, skipped, unreadable, refused = [], 0, 0, [], []
    for item in progress(found, total=len(found), desc="datasets"):
        prev = previous.get(str(item.location), {})
        files, n = measure(item, prev)
        hashed += n
        skipped += len(files) - n
        if prev and n == 0 and set(prev) == {rel for rel, _ in item.files}:
            meta, bad = dict.fromkeys(META_KEYS), []
        else:  # new or changed: read the metadata again
            meta, bad = describe(item, log)
        unreadable += bad
        refused += meta.pop("refused", [])
        results.append((item, meta, files))
    with session() as s:
        stored = _store_all(s, results, skips, public)
    pids = tuple(pid for pid, _ in stored)
    file_count = sum(n for _, n in stored)
    log.info("scan of %s: %d datasets, %d files, %d hashed", root, len(stored), file_count, hashed)
    return ScanReport(
        len(stored),
        file_count,
        hashed,
        skipped,
        pids,
        tuple(unreadable),
        tuple(skips.entries),
        tuple(refused),
    )


def _store_all(session: Session, results: list, skips: Skips, public: bool) -> list[tuple[str, int]]:
    """(PID, file count) of each dataset stored; a dataset whose PID is taken is skipped."""
    stored = []
    for item, meta, files in results:
        try:
            stored.append((_store(session, item, meta, files, public), len(files)))
        except PanbinderError as e:  # raised before the dataset's row is touched
            skips.add(item.location, e.message, e.log_message)
    return stored
