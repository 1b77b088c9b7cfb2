"""Dataset records from PaNOSC and SciCat catalogue files (pure: no database, no files).

Shapes, detected automatically: the PaNOSC search API (a list of Dataset objects), the PaNOSC
reference server's LoopBack store (``{"ids", "models"}`` whose records are JSON strings), and
SciCat datasets in the v3 (``_id``, ``proposalId``) and v4 (``pid``, ``proposalIds``) shapes,
dates possibly in MongoDB extended JSON (``{"$date": ...}``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from panbinder.errors import PanbinderError
from panbinder.paths import check_relative

from . import panet
from .record_fields import Fields, record_label

SCICAT_TYPES = {"raw": "raw", "derived": "processed", "processed": "processed", "simulated": "simulated"}


@dataclass(frozen=True)
class TechniqueRef:
    panet_id: str
    label: str


@dataclass(frozen=True)
class FileRecord:
    path: str
    size: int
    sha256: str | None = None
    mtime_ns: int | None = None


@dataclass(frozen=True)
class DatasetRecord:
    pid: str
    title: str = ""
    facility: str = ""
    instrument: str = ""
    techniques: tuple[TechniqueRef, ...] = ()
    scientific_field: str = ""
    data_type: str = ""
    proposal_id: str | None = None
    owners: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    creation_date: datetime | None = None
    release_date: datetime | None = None
    is_public: bool = False
    size: int = 0
    file_count: int = 0
    files: tuple[FileRecord, ...] = ()
    shape: str = ""


def _techniques(rec: Fields, field: str) -> tuple[TechniqueRef, ...]:
    out = {}
    for i, item in enumerate(rec.objects(field)):
        raw = item.get("pid") or item.get("id")
        try:
            panet_id = panet.normalise_id(raw)
        except PanbinderError:
            rec.fail(f"{field}[{i}].pid", f"must be a PaNET id (e.g. PaNET01188), got {raw!r}")
        given = item.get("name") if isinstance(item.get("name"), str) else ""
        label = panet.label(panet_id) or given.split(";")[0].strip()[:255] or panet_id
        out[panet_id] = TechniqueRef(panet_id, label)
    return tuple(out.values())


def _files(rec: Fields, field: str) -> tuple[FileRecord, ...]:
    files = []
    for i, item in enumerate(rec.objects(field)):
        sub = Fields(rec.where, item)
        name = sub.text("name") or sub.text("path")
        try:
            check_relative(name)
        except PanbinderError as e:
            rec.fail(f"{field}[{i}].name", f"must be a relative file name ({e.message})")
        files.append(FileRecord(name, sub.count("size") or 0))
    return tuple(files)


def _panosc(where: str, data: Any, shape: str = "panosc") -> DatasetRecord:
    rec = Fields(where, data)
    documents = rec.objects("documents") or rec.objects("document")
    releases = [Fields(where, d).date("releaseDate") for d in documents]
    proposal = next((d.get("pid") for d in documents if d.get("type") == "proposal"), None)
    owners = []
    for doc in documents:
        for member in doc.get("members") or []:
            person = member.get("person") if isinstance(member, dict) else None
            if isinstance(person, dict):
                ident = person.get("ORCiD") or person.get("orcid") or person.get("fullName")
                if isinstance(ident, str):
                    ident = re.sub(r"^(?:https?://)?orcid\.org/", "", ident.strip())
                if isinstance(ident, str) and ident and ident not in owners:
                    owners.append(ident)
    techniques = _techniques(rec, "techniques")
    if not techniques:  # ESS records name the technique as a parameter ("SANS")
        for param in rec.objects("parameters"):
            found = panet.lookup(str(param.get("value"))) if param.get("name") == "technique" else None
            if found:
                techniques = (TechniqueRef(found, panet.label(found) or found),)
    files = _files(rec, "files")
    size = rec.count("size")
    return DatasetRecord(
        pid=rec.text("pid", required=True),
        title=rec.text("title"),
        facility=rec.text("instrument.facility"),
        instrument=rec.text("instrument.name"),
        techniques=techniques,
        proposal_id=str(proposal) if proposal else None,
        owners=tuple(owners),
        creation_date=rec.date("creationDate"),
        release_date=max((r for r in releases if r), default=None),
        is_public=rec.boolean("isPublic"),
        size=size if size is not None else sum(f.size for f in files),
        file_count=len(files),
        files=files,
        shape=shape,
    )


def _scicat(where: str, data: Any, shape: str) -> DatasetRecord:
    rec = Fields(where, data)
    raw_type = rec.text("type").lower()
    if raw_type and raw_type not in SCICAT_TYPES:
        rec.fail("type", f"must be one of {', '.join(SCICAT_TYPES)}, got {raw_type!r}")
    proposals = rec.texts("proposalIds") or rec.texts("proposalId")
    instruments = rec.texts("instrumentIds") or rec.texts("instrumentId")
    owners = [rec.text("owner"), *rec.texts("principalInvestigators"), rec.text("principalInvestigator")]
    groups = [rec.text("ownerGroup"), *rec.texts("accessGroups")]
    return DatasetRecord(
        pid=rec.text("pid") or rec.text("_id") or rec.fail("pid", "is missing (SciCat: pid or _id)"),
        title=rec.text("datasetName") or rec.text("title"),
        facility=rec.text("facility"),
        instrument=instruments[0] if instruments else "",
        techniques=_techniques(rec, "techniques"),
        scientific_field=rec.text("scientificField"),
        data_type=SCICAT_TYPES.get(raw_type, ""),
        proposal_id=proposals[0] if proposals else None,
        owners=tuple(dict.fromkeys(o for o in owners if o)),
        groups=tuple(dict.fromkeys(g for g in groups if g)),
        creation_date=rec.date("creationTime"),
        release_date=rec.date("datasetlifecycle.dateOfPublishing"),
        is_public=rec.boolean("isPublished"),
        size=rec.count("size") or 0,
        file_count=rec.count("numberOfFiles") or 0,
        shape=shape,
    )


def _loopback(store: dict) -> list[DatasetRecord]:
    """The LoopBack memory store: join its tables into PaNOSC-shaped records."""
    models = store.get("models")
    if not isinstance(models, dict):
        Fields("LoopBack store", store).fail("models", "must be an object of models")
    tables: dict[str, list[dict]] = {}
    for model, rows in models.items():
        decoded = []
        for key, raw in (rows or {}).items():
            try:
                decoded.append(json.loads(raw) if isinstance(raw, str) else raw)
            except json.JSONDecodeError as e:
                Fields(f"{model} record '{key}'", {}).fail("", f"is not valid JSON ({e.msg})")
        tables[model] = decoded

    def by(model: str, key: str) -> dict[Any, list[dict]]:
        out: dict[Any, list[dict]] = {}
        for row in tables.get(model, []):
            if isinstance(row, dict):
                out.setdefault(str(row.get(key)), []).append(row)
        return out

    docs, insts = by("Document", "pid"), by("Instrument", "pid")
    files, params = by("File", "datasetId"), by("Parameter", "datasetId")
    members, people = by("Member", "documentId"), by("Person", "id")
    techs, links = by("Technique", "pid"), by("DatasetTechnique", "datasetId")
    records = []
    for i, row in enumerate(tables.get("Dataset", [])):
        if not isinstance(row, dict):
            Fields(f"Dataset {i}", row)
        pid = str(row.get("pid"))
        merged = dict(row)
        doc = next(iter(docs.get(str(row.get("documentId")), [])), None)
        if doc is not None:
            doc = dict(
                doc,
                members=[
                    dict(m, person=next(iter(people.get(str(m.get("personId")), [])), None))
                    for m in members.get(str(doc.get("pid")), [])
                ],
            )
            merged["document"] = doc
        merged["instrument"] = next(iter(insts.get(str(row.get("instrumentId")), [])), None)
        merged["files"] = files.get(pid, [])
        merged["parameters"] = params.get(pid, [])
        merged["techniques"] = [
            t
            for link in links.get(pid, [])
            for t in techs.get(str(link.get("techniquePid", link.get("techniqueId"))), [])
        ]
        records.append(_panosc(record_label("Dataset", i, row), merged, shape="loopback"))
    return records


def dataset_shape(record: Any) -> str:
    if not isinstance(record, dict):
        return ""
    if any(k in record for k in ("proposalIds", "instrumentIds", "sampleIds", "principalInvestigators")):
        return "scicat-v4"
    if any(k in record for k in ("datasetName", "ownerGroup", "sourceFolder", "_id")):
        return "scicat-v3"
    if any(k in record for k in ("isPublic", "creationDate", "document", "documents")):
        return "panosc"
    return ""


def parse_datasets(data: Any) -> list[DatasetRecord]:
    """Dataset records from any supported shape; PanbinderError for the first bad record."""
    if isinstance(data, dict) and "models" in data and "ids" in data:
        records = _loopback(data)
    else:
        items = data if isinstance(data, list) else [data]
        shapes = [dataset_shape(item) for item in items]
        file_shape = next((sh for sh in shapes if sh), "")  # a record without markers: the file's shape
        records = []
        for i, item in enumerate(items):
            shape = shapes[i] or file_shape
            where = record_label("record", i, item)
            if not shape:
                Fields(where, item).fail(
                    "",
                    "is neither a PaNOSC search-API dataset (pid, title, isPublic, creationDate) "
                    "nor a SciCat dataset (pid or _id, datasetName, ownerGroup)",
                )
            parser = _panosc if shape == "panosc" else _scicat
            records.append(parser(where, item, shape))
    seen: dict[str, int] = {}
    for i, rec in enumerate(records):
        if rec.pid in seen:
            Fields(f"record {i} (pid '{rec.pid}')", {}).fail("pid", f"repeats record {seen[rec.pid]}")
        seen[rec.pid] = i
    return records
