"""Parse catalogue records into plain frozen dataclasses (pure: no database, no files).

Dataset shapes, detected automatically: the PaNOSC search API (a list of Dataset objects),
the PaNOSC reference server's LoopBack store (``{"ids", "models"}`` whose records are JSON
strings), and SciCat datasets in the v3 (``_id``, ``proposalId``) and v4 (``pid``,
``proposalIds``) shapes, dates possibly in MongoDB extended JSON (``{"$date": ...}``).
Publication shapes: DataCite JSON (REST ``{"data": {"attributes": ...}}`` or bare attributes)
and SciCat PublishedData. A bad record raises PanbinderError naming the record and the field.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import unquote, urlsplit, urlunsplit

from panbinder.errors import PanbinderError

from . import panet
from .paths import check_relative

DOI_RE = re.compile(r"^10\.\d{4,9}/\S+$")
DOI_PREFIXES = ("https://doi.org/", "http://doi.org/", "https://dx.doi.org/", "http://dx.doi.org/", "doi:")
SCICAT_TYPES = {"raw": "raw", "derived": "processed", "processed": "processed", "simulated": "simulated"}
LINK_RELATIONS = ("IsSupplementTo", "IsDerivedFrom", "References")
GIT_HOSTS = ("github.com", "gitlab.com", "bitbucket.org", "codeberg.org", "gitee.com", "git.sr.ht")
FLAT_GIT_HOSTS = ("github.com", "bitbucket.org", "codeberg.org", "gitee.com")  # owner/repo, no subgroups
GIT_HOST_PREFIXES = ("git.", "gitlab.", "github.", "gitea.", "codebase.", "forgejo.")


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


@dataclass(frozen=True)
class PublicationRecord:
    """``dataset_pids`` must all exist; ``related_ids`` are candidates (papers are ignored)."""

    doi: str
    title: str = ""
    authors: tuple[str, ...] = ()
    year: int | None = None
    repo_url: str = ""
    ref: str = ""
    dataset_pids: tuple[str, ...] = ()
    related_ids: tuple[str, ...] = ()
    shape: str = ""


def normalise_doi(doi: str) -> str:
    """Lower case, without ``https://doi.org/`` or ``doi:``; PanbinderError if it is no DOI."""
    value = doi.strip() if isinstance(doi, str) else ""
    for prefix in DOI_PREFIXES:
        if value.lower().startswith(prefix):
            value = value[len(prefix) :].strip()
    value = value.lower()
    if not DOI_RE.match(value):
        raise PanbinderError(
            f"'{doi}' is not a DOI; expected something like 10.5281/zenodo.1234567.", reason="bad_doi"
        )
    return value


def split_repo_url(url: str) -> tuple[str, str | None] | None:
    """``(repository URL, ref or None)`` if ``url`` looks like a git repository, else None.

    A ref may follow as ``#ref``, ``@ref`` or a ``/tree/<ref>`` path (GitHub, GitLab).
    """
    try:
        parts = urlsplit(url.strip())
    except (AttributeError, ValueError):
        return None
    if parts.scheme not in ("http", "https", "git", "ssh") or not parts.hostname:
        return None
    path, ref = parts.path, unquote(parts.fragment) or None
    m = re.match(r"^(/.+?)(?:\.git)?/(?:-/)?tree/(.+)$", path)
    if m:
        path, ref = m.group(1), unquote(m.group(2))
    m = re.match(r"^(/[^@]+)@([^/@]+)$", path)
    if m:
        path, ref = m.group(1), unquote(m.group(2))
    host = parts.hostname.lower()
    segments = [s for s in path.split("/") if s]
    known_host = host in GIT_HOSTS or host.startswith(GIT_HOST_PREFIXES)
    looks_git = path.endswith(".git") or parts.scheme in ("git", "ssh") or ref is not None
    if not segments or not (looks_git or (known_host and len(segments) >= 2)):
        return None
    if host in FLAT_GIT_HOSTS and len(segments) > 2 and not path.endswith(".git"):
        path = "/" + "/".join(segments[:2])  # github.com/org/repo/blob/... -> the repository
    return urlunsplit((parts.scheme, parts.netloc, path.rstrip("/"), "", "")), ref


def load_json(path: str | Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise PanbinderError(f"{path} does not exist; check the file name.", reason="no_file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PanbinderError(f"{path} is not valid JSON ({e}); fix the file.", reason="bad_json") from None
    except OSError as e:
        raise PanbinderError(f"{path} cannot be read ({e.strerror}).", reason="no_file") from None


class Fields:
    """Typed access to one record's fields; every failure names the record and the field."""

    def __init__(self, where: str, data: Any) -> None:
        self.where = where
        if not isinstance(data, dict):
            self.fail("", f"must be a JSON object, got {type(data).__name__}")
        self.data = data

    def fail(self, field: str, problem: str) -> NoReturn:
        what = f"field '{field}' {problem}" if field else problem
        raise PanbinderError(
            f"{self.where}: {what}. Fix the file and run the import again; nothing was imported.",
            reason="bad_record",
        )

    def get(self, field: str) -> Any:
        value: Any = self.data
        for key in field.split("."):
            value = value.get(key) if isinstance(value, dict) else None
        return value

    def text(self, field: str, *, required: bool = False) -> str:
        value = self.get(field)
        if value is None or value == "":
            if required:
                self.fail(field, "is missing")
            return ""
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.fail(field, f"must be a string, got {type(value).__name__}")
        return str(value).strip()

    def texts(self, field: str) -> tuple[str, ...]:
        value = self.get(field)
        if value is None:
            return ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(field, "must be a list of strings")
        return tuple(v.strip() for v in value if v.strip())

    def boolean(self, field: str) -> bool:
        value = self.get(field)
        if value is None:
            return False
        if not isinstance(value, bool):
            self.fail(field, f"must be true or false, got {value!r}")
        return value

    def count(self, field: str) -> int | None:
        value = self.get(field)
        if value is None or value == "":
            return None
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or value != int(value):
            self.fail(field, f"must be a whole number of at least 0, got {value!r}")
        return int(value)

    def date(self, field: str) -> datetime | None:
        value = self.get(field)
        if isinstance(value, dict) and "$date" in value:  # MongoDB extended JSON
            value = value["$date"]
            if isinstance(value, dict) and "$numberLong" in value:
                value = int(value["$numberLong"])
        if value is None or value == "":
            return None
        try:
            if isinstance(value, int | float) and not isinstance(value, bool):
                return datetime.fromtimestamp(value / 1000, UTC)
            if isinstance(value, str):
                parsed = datetime.fromisoformat(value.strip())
                return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
        except (ValueError, OverflowError, OSError):
            pass
        self.fail(field, f"must be an ISO 8601 date, got {value!r}")

    def objects(self, field: str) -> list[dict]:
        value = self.get(field)
        if value is None:
            return []
        if isinstance(value, dict):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self.fail(field, "must be a list of objects")
        return value


def _where(kind: str, index: int | str, data: Any) -> str:
    pid = None
    if isinstance(data, dict):
        pid = data.get("pid") or data.get("_id") or data.get("doi")
    shown = f"pid '{pid}'" if isinstance(pid, str) and pid else "no pid"
    return f"{kind} {index} ({shown})"


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
        records.append(_panosc(_where("Dataset", i, row), merged, shape="loopback"))
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
            where = _where("record", i, item)
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


def _datacite(where: str, data: dict) -> PublicationRecord:
    top = Fields(where, data)
    attrs = top.get("data.attributes") or top.get("attributes") or data
    rec = Fields(where, attrs)
    titles = rec.objects("titles")
    main = next((t for t in titles if not t.get("titleType")), titles[0] if titles else {})
    authors = []
    for i, creator in enumerate(rec.objects("creators")):
        name = creator.get("name") or " ".join(
            str(creator.get(k)) for k in ("givenName", "familyName") if creator.get(k)
        )
        if not isinstance(name, str) or not name.strip():
            rec.fail(f"creators[{i}].name", "is missing")
        authors.append(name.strip())
    repo, ref, related = "", "", []
    for i, item in enumerate(rec.objects("relatedIdentifiers")):
        if item.get("relationType") not in LINK_RELATIONS:
            continue
        ident = item.get("relatedIdentifier")
        if not isinstance(ident, str) or not ident.strip():
            rec.fail(f"relatedIdentifiers[{i}].relatedIdentifier", "must be a string")
        split = split_repo_url(ident) if item.get("relatedIdentifierType") == "URL" else None
        if split and not repo:
            repo, ref = split[0], split[1] or ""
        elif not split:
            related.append(ident.strip())
    if repo and not ref:
        for desc in rec.objects("descriptions"):
            m = re.search(r"(?i)\b(?:git\s+)?ref(?:erence)?\s*[:=]\s*(\S+)", str(desc.get("description", "")))
            if m:
                ref = m.group(1).rstrip(".,;")
                break
    doi = rec.text("doi") or top.text("data.id", required=True)
    try:
        doi = normalise_doi(doi)
    except PanbinderError as e:
        rec.fail("doi", e.message.rstrip("."))
    return PublicationRecord(
        doi=doi,
        title=str(main.get("title") or "").strip(),
        authors=tuple(authors),
        year=rec.count("publicationYear"),
        repo_url=repo,
        ref=ref,
        related_ids=tuple(dict.fromkeys(related)),
        shape="datacite",
    )


def _published_data(where: str, data: dict) -> PublicationRecord:
    rec = Fields(where, data)
    raw = rec.text("doi") or rec.text("_id", required=True)
    try:
        doi = normalise_doi(raw)
    except PanbinderError as e:
        rec.fail("doi", e.message.rstrip("."))
    repo, ref = "", ""
    for field in ("url", "downloadLink"):
        split = split_repo_url(rec.text(field))
        if split:
            repo, ref = split[0], split[1] or ""
            break
    return PublicationRecord(
        doi=doi,
        title=rec.text("title"),
        authors=rec.texts("creator"),
        year=rec.count("publicationYear"),
        repo_url=repo,
        ref=ref,
        dataset_pids=rec.texts("pidArray"),
        shape="scicat-published",
    )


def parse_publications(data: Any) -> list[PublicationRecord]:
    """Publication records: DataCite JSON (one, or a REST list) or SciCat PublishedData."""
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    items = data if isinstance(data, list) else [data]
    out = []
    for i, item in enumerate(items):
        where = _where("record", i, item)
        if isinstance(item, dict) and ("pidArray" in item or ("creator" in item and "creators" not in item)):
            out.append(_published_data(where, item))
        elif isinstance(item, dict) and any(
            k in item for k in ("data", "attributes", "titles", "creators", "relatedIdentifiers")
        ):
            out.append(_datacite(where, item))
        else:
            Fields(where, item).fail(
                "",
                "is neither a DataCite record (doi, titles, creators, relatedIdentifiers) "
                "nor a SciCat PublishedData record (doi, title, creator, pidArray)",
            )
    return out
