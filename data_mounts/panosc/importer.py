"""Import PaNOSC search API files (and SciCat dataset files) record by record.

A file is a search API response (a list of Dataset objects, with includes), the reference
server's LoopBack store (``{"ids", "models"}``), a SciCat dataset list, or SciCat OrigDatablocks
(file lists added to their datasets); a folder means every ``*.json`` file under it, in name
order. Each dataset (and datablock) is its own transaction, so a bad record is reported and the
others are imported; files holding no dataset records (SciCat instruments, samples...) are
listed as skipped. The first sample's name becomes the dataset's ``sample``. What the catalogue
cannot hold is left out: parameters, other samples and sample PIDs, document members other than
owners, document summaries, licences and dates, instrument PIDs, instruments without datasets.
Parameters are kept (``parameters.py``); a re-import replaces a dataset's parameters.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from panbinder.errors import PanbinderError
from panbinder.paths import check_relative
from panbinder.progress import Progress, no_progress

from ..importers import FileRecord, dataset_shape, load_json
from ..models import Dataset
from ..record_fields import Fields, record_label
from ..scan import sync_files
from .parameters import parameter_rows, replace_parameters


@dataclass
class ImportReport:
    imported: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (where, why)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    files: int = 0  # listed by SciCat OrigDatablocks


def json_files(path: str | Path) -> list[Path]:
    root = Path(path)
    if root.is_dir():
        return sorted(p for p in root.rglob("*.json") if p.is_file())
    return [root]


def records(file: Path, data: Any) -> Iterator[tuple[str, Any]]:
    """``(label, one dataset's JSON)`` for each dataset of a file's content."""
    if isinstance(data, dict) and isinstance(data.get("models"), dict) and "ids" in data:
        rows = data["models"].get("Dataset") or {}
        if not isinstance(rows, dict):
            yield f"{file.name}: Dataset table", None
            return
        for key, row in rows.items():
            models = dict(data["models"], Dataset={key: row})
            yield f"{file.name}: Dataset '{key}'", {"ids": data["ids"], "models": models}
        return
    items = data if isinstance(data, list) else [data]
    for i, item in enumerate(items):
        yield f"{file.name}: {record_label('record', i, item)}", item


def is_dataset_file(data: Any) -> bool:
    if isinstance(data, dict) and "models" in data and "ids" in data:
        return True
    items = data if isinstance(data, list) else [data]
    return any(dataset_shape(item) for item in items)


def is_datablock_file(data: Any) -> bool:
    """SciCat OrigDatablocks: a list of ``{datasetId, dataFileList}``."""
    return isinstance(data, list) and any(isinstance(d, dict) and "dataFileList" in d for d in data)


def _import_datablocks(catalogue: Any, file: Path, data: list, report: ImportReport) -> None:
    for i, item in enumerate(data):
        where = f"{file.name}: {record_label('datablock', i, item)}"
        try:
            report.files += import_datablock(catalogue, where, item)
        except PanbinderError as e:
            report.failed.append((where, e.message))
        except SQLAlchemyError as e:
            report.failed.append(
                (where, f"the catalogue database refused it ({getattr(e, 'orig', None) or e})")
            )


def import_datablock(catalogue: Any, where: str, item: Any) -> int:
    """Add a SciCat OrigDatablock's files to its dataset's manifest; how many were listed."""
    rec = Fields(where, item)
    pid = rec.text("datasetId", required=True)
    files = []
    for i, entry in enumerate(rec.objects("dataFileList")):
        sub = Fields(f"{where} file {i}", entry)
        path = sub.text("path", required=True)
        try:
            check_relative(path)
        except PanbinderError as e:
            sub.fail("path", f"must be a relative file name ({e.message})")
        files.append(FileRecord(path, sub.count("size") or 0))
    with catalogue.session() as session:
        ds = catalogue.get_dataset(session, pid)
        if ds is None:
            raise PanbinderError(
                f"{where}: no dataset '{pid}' is in the catalogue; import its dataset record first."
            )
        if any(f.sha256 for f in ds.files):  # a scan's manifest is the truth about files on disk
            return 0
        known = {f.path: FileRecord(f.path, f.size) for f in ds.files}
        known.update({f.path: f for f in files})
        sync_files(ds, list(known.values()))
        ds.file_count = len(known)
        ds.size = ds.size or sum(f.size for f in known.values())
    return len(files)


def import_panosc(catalogue: Any, path: str | Path, progress: Progress = no_progress) -> ImportReport:
    """Import every dataset record of ``path`` (file or folder) into ``catalogue``."""
    report = ImportReport()
    files = json_files(path)
    if not files or not files[0].exists():
        raise PanbinderError(
            f"{path} is neither a JSON file nor a folder of them; check the path.", reason="no_file"
        )
    for file in files:
        try:
            data = load_json(file)
        except PanbinderError as e:
            report.failed.append((file.name, e.message))
            continue
        if is_datablock_file(data):
            _import_datablocks(catalogue, file, data, report)
            continue
        if not is_dataset_file(data):
            report.skipped.append((file.name, "holds no PaNOSC or SciCat dataset records"))
            continue
        for where, record in progress(list(records(file, data)), desc=file.name):
            try:
                if record is None:
                    raise PanbinderError("the LoopBack store's Dataset table is not an object")
                pids = catalogue.import_datasets(record)
                _set_sample(catalogue, pids, sample_name(record))
                _set_parameters(catalogue, pids, record)
                report.imported += pids
            except PanbinderError as e:
                report.failed.append((where, e.message))
            except SQLAlchemyError as e:
                report.failed.append(
                    (where, f"the catalogue database refused it ({getattr(e, 'orig', None) or e})")
                )
    return report


def sample_name(record: Any) -> str:
    """The first sample's name of a search API record or a one-dataset LoopBack store."""
    if isinstance(record, dict) and isinstance(record.get("models"), dict):
        models = record["models"]
        tables = {
            m: [_decoded(r) for r in (models.get(m) or {}).values()]
            for m in ("Dataset", "DatasetSample", "Sample")
        }
        pids = {str(d.get("pid")) for d in tables["Dataset"]}
        wanted = {
            str(link.get("sampleId"))
            for link in tables["DatasetSample"]
            if str(link.get("datasetId")) in pids
        }
        samples = [s for s in tables["Sample"] if str(s.get("pid")) in wanted]
    else:
        samples = record.get("samples") if isinstance(record, dict) else None
    first = samples[0] if isinstance(samples, list) and samples and isinstance(samples[0], dict) else {}
    name = first.get("name")
    return name.strip()[:255] if isinstance(name, str) else ""


def _decoded(raw: Any) -> dict:
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _set_sample(catalogue: Any, pids: list[str], name: str) -> None:
    if not name:
        return
    with catalogue.session() as session:
        for ds in session.scalars(select(Dataset).where(Dataset.pid.in_(pids))):
            ds.sample = name


def _set_parameters(catalogue: Any, pids: list[str], record: Any) -> None:
    with catalogue.session() as session:
        for pid in pids:
            replace_parameters(session, pid, parameter_rows(record, pid))
