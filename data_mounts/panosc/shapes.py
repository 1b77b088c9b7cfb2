"""Catalogue rows rendered as PaNOSC search API records, with their includes.

Dates are written as LoopBack writes them (``2018-12-05T12:00:00.000Z``). An embargoed dataset
keeps its PID, title, dates, instrument, techniques and documents; its ``size`` is null and its
``files`` and ``samples`` are empty lists. Catalogue gaps are rendered as null or
empty: Document ``summary``, ``license``, ``startDate``, ``endDate``, ``releaseDate``,
``keywords``; every Affiliation; a Sample's ``pid`` and ``description`` (its name
is the dataset's ``sample``).

Includes can nest (Document -> datasets -> documents -> ...), so one request could build
(datasets per publication)^depth x limit records. Each related list is cut to its ``skip +
limit`` while it is built (a record is built only until enough match), and every record a
request builds counts against ``RecordBudget`` (``Catalogue.panosc_max_records``); past it the
request fails with a 400 that says to narrow the include or lower the limit.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import object_session

from panbinder.errors import PanbinderError

from .. import panet
from ..access import is_open
from ..derived_models import derived_from, sources_of
from ..models import Dataset, Publication
from .filters import Include
from .match import keep
from .parameters import parameter_record
from .proposals import ProposalDoc, Proposals, member_fields, person_fields, proposal_fields


def loopback_date(value: datetime | None) -> str | None:
    if value is None:
        return None
    utc = value.astimezone(UTC) if value.tzinfo else value
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


DEFAULT_MAX_RECORDS = 5000


class RecordBudget:
    """How many more records one request may build (top-level and related records alike)."""

    def __init__(self, most: int = DEFAULT_MAX_RECORDS) -> None:
        self.most = max(1, most)
        self.used = 0

    def spend(self, n: int = 1) -> None:
        self.used += n
        if self.used > self.most:
            raise PanbinderError(
                f"This request needs more than {self.most} records with its includes; narrow "
                "the include (a scope where or limit, fewer nested levels) or lower the limit.",
                reason="bad_filter",
                status_code=400,
                log_message=f"PaNOSC request over the record budget of {self.most}",
            )


@dataclass(frozen=True)
class Context:
    now: datetime
    cap: int  # most related records listed under one include
    instrument_datasets: Callable[[str, str, Include], list[Dataset]]
    budget: RecordBudget = field(default_factory=RecordBudget)
    proposals: Proposals | None = None  # the listed proposals (None: datasets show none)


def instrument_pid(facility: str, name: str) -> str | None:
    """As ``sql.instrument_pid``: ``<facility>/<name>``, or the name alone; None without a name."""
    if not name:
        return None
    return f"{facility}/{name}" if facility else name


def instrument_record(facility: str, name: str, score: float = 0) -> dict | None:
    if not name:
        return None
    return {"pid": instrument_pid(facility, name), "name": name, "facility": facility, "score": score}


def technique_record(tech: Any) -> dict:
    return {"pid": panet.purl(tech.panet_id), "name": tech.label, "panetId": tech.panet_id}


def file_record(f: Any, pid: str) -> dict:
    folder = posixpath.dirname(f.path)
    return {
        "id": f.id,
        "name": posixpath.basename(f.path),
        "path": folder or None,
        "size": f.size,
        "datasetId": pid,
    }


def dataset_record(ds: Dataset, includes: tuple[Include, ...], ctx: Context, score: float = 0) -> dict:
    readable = is_open(ds, ctx.now)
    proposal = ctx.proposals.get(ds.proposal_id) if ctx.proposals is not None else None
    docs: list[Publication | ProposalDoc] = [*ds.publications, *([proposal] if proposal else [])]
    out: dict[str, Any] = {
        "pid": ds.pid,
        "title": ds.title,
        "isPublic": readable,
        "size": ds.size if readable and ds.size else None,
        "creationDate": loopback_date(ds.creation_date),
        "score": score,
        "documentId": document_id(docs[0]) if docs else None,
        "instrumentId": instrument_pid(ds.facility, ds.instrument),
    }
    for inc in includes:
        out[inc.relation] = _dataset_relation(ds, docs, readable, inc, ctx)
    return out


def _dataset_relation(
    ds: Dataset, docs: list[Publication | ProposalDoc], readable: bool, inc: Include, ctx: Context
) -> Any:
    if inc.relation == "techniques":
        return listed(inc, ds.techniques, technique_record, ctx)
    if inc.relation == "files":
        return listed(inc, ds.files if readable else [], lambda f: file_record(f, ds.pid), ctx)
    if inc.relation == "instrument":
        return listed(
            inc, [ds] if ds.instrument else [], lambda d: instrument_record(d.facility, d.instrument), ctx
        )
    if inc.relation in ("document", "documents"):
        return listed(inc, docs, lambda d, sub=inc.includes: any_document(d, sub, ctx), ctx)
    if inc.relation in ("derivedFrom", "derivedDatasets"):
        return listed(
            inc, _lineage(ds, inc.relation), lambda d, sub=inc.includes: dataset_record(d, sub, ctx), ctx
        )
    if inc.relation == "samples":
        sample = {"pid": None, "name": ds.sample, "description": None}
        return listed(inc, [sample] if readable and ds.sample else [], dict, ctx)
    return listed(inc, ds.parameters, lambda p: parameter_record(p, ds.pid), ctx)


def _lineage(ds: Dataset, relation: str) -> list[Dataset]:
    """The datasets ``ds`` was derived from, or those derived from it (``derived_models.py``)."""
    session = object_session(ds)
    if session is None:
        return []
    return sources_of(session, ds.id) if relation == "derivedFrom" else derived_from(session, ds.id)


SINGLE = ("document", "instrument", "person", "affiliation")


def listed(inc: Include, sources: Iterable[Any], build: Callable[[Any], dict | None], ctx: Context) -> Any:
    """The related records ``inc`` lists: a list, or one record or None for belongsTo. Records
    are built from ``sources`` in order only until ``skip + limit`` of them match, each one
    counted against the request's record budget."""
    single = inc.relation in SINGLE
    wanted = 1 if single else inc.skip + min(inc.limit or ctx.cap, ctx.cap)
    kept: list[dict] = []
    for source in sources:
        if len(kept) >= wanted:
            break
        ctx.budget.spend()
        record = build(source)
        if record is not None and keep(inc, record):
            kept.append(record)
    if single:
        return kept[0] if kept else None
    return kept[inc.skip :]


def document_record(pub: Publication, includes: tuple[Include, ...], ctx: Context, score: float = 0) -> dict:
    out: dict[str, Any] = {
        "pid": pub.doi,
        "isPublic": True,
        "type": "publication",
        "title": pub.title,
        "summary": None,
        "doi": pub.doi,
        "startDate": None,
        "endDate": None,
        "releaseDate": None,
        "license": None,
        "keywords": [],
        "score": score,
    }
    for inc in includes:
        if inc.relation == "datasets":
            out[inc.relation] = listed(
                inc, pub.datasets, lambda ds, sub=inc.includes: dataset_record(ds, sub, ctx), ctx
            )
        elif inc.relation == "members":
            members = enumerate(pub.authors or ())
            out[inc.relation] = listed(
                inc, members, lambda m, sub=inc.includes: member_record(pub, *m, sub, ctx), ctx
            )
        else:  # parameters: those of its datasets
            params = ((p, ds.pid) for ds in pub.datasets for p in ds.parameters)
            out[inc.relation] = listed(inc, params, lambda pair: parameter_record(*pair), ctx)
    return out


def document_id(doc: Publication | ProposalDoc) -> str:
    return doc.pid if isinstance(doc, ProposalDoc) else doc.doi


def any_document(doc: Publication | ProposalDoc, includes: tuple[Include, ...], ctx: Context) -> dict:
    if isinstance(doc, ProposalDoc):
        return proposal_record(doc, includes, ctx)
    return document_record(doc, includes, ctx)


def proposal_record(doc: ProposalDoc, includes: tuple[Include, ...], ctx: Context, score: float = 0) -> dict:
    """A proposal Document: its open datasets, its ORCID members, their parameters."""
    out = proposal_fields(doc, score)
    found = ctx.proposals
    for inc in includes:
        if found is None:
            out[inc.relation] = listed(inc, [], dict, ctx)
        elif inc.relation == "datasets":
            rows = found.datasets(doc.pid, inc, ctx.cap)
            out[inc.relation] = listed(
                inc, rows, lambda ds, sub=inc.includes: dataset_record(ds, sub, ctx), ctx
            )
        elif inc.relation == "members":
            members = enumerate(doc.members)
            out[inc.relation] = listed(
                inc, members, lambda m, sub=inc.includes: proposal_member(doc, *m, sub, ctx), ctx
            )
        else:  # parameters: those of its open datasets
            params = found.parameters(doc.pid, ctx.cap)
            out[inc.relation] = listed(inc, params, lambda pair: parameter_record(*pair), ctx)
    return out


def proposal_member(
    doc: ProposalDoc, index: int, orcid: str, includes: tuple[Include, ...], ctx: Context
) -> dict:
    out = member_fields(doc, index, orcid)
    for inc in includes:
        if inc.relation == "person":
            out[inc.relation] = listed(inc, [person_fields(orcid)], dict, ctx)
        elif inc.relation == "document":
            out[inc.relation] = listed(
                inc, [doc], lambda d, sub=inc.includes: proposal_record(d, sub, ctx), ctx
            )
        else:  # affiliation
            out[inc.relation] = listed(inc, [], dict, ctx)
    return out


def member_record(
    pub: Publication, index: int, name: str, includes: tuple[Include, ...], ctx: Context
) -> dict:
    person_id = f"{pub.doi}#{index + 1}"
    out: dict[str, Any] = {"id": index + 1, "role": "author", "documentId": pub.doi, "personId": person_id}
    for inc in includes:
        if inc.relation == "person":
            out[inc.relation] = listed(inc, [{"id": person_id, "fullName": str(name)}], dict, ctx)
        elif inc.relation == "document":
            out[inc.relation] = listed(
                inc, [pub], lambda p, sub=inc.includes: document_record(p, sub, ctx), ctx
            )
        else:  # affiliation
            out[inc.relation] = listed(inc, [], dict, ctx)
    return out


def instrument_with(
    facility: str, name: str, includes: tuple[Include, ...], ctx: Context, score: float
) -> dict:
    out = instrument_record(facility, name, score) or {}
    for inc in includes:
        rows = ctx.instrument_datasets(facility, name, inc)
        out[inc.relation] = listed(inc, rows, lambda ds, sub=inc.includes: dataset_record(ds, sub, ctx), ctx)
    return out


def project(record: dict, fields: tuple[str, ...], includes: tuple[Include, ...]) -> dict:
    """Only the asked ``fields`` (and the included relations) of a top-level record."""
    if not fields:
        return record
    wanted = set(fields) | {inc.relation for inc in includes}
    return {k: v for k, v in record.items() if k in wanted}
