"""Run PaNOSC search API requests on a catalogue session: find, count and get by PID.

``limit`` is bounded by ``cap`` (``Catalogue.panosc_max_limit``): a missing or 0 limit
(LoopBack's "no limit") gives ``cap`` records, a larger one is cut to ``cap``. With ``query``,
datasets and documents are found through the catalogue's full-text index (``fts.py``, as the
portal's own search: every word, ``"phrases"``, ``-word``, ``word*``; an embargoed dataset's
sample name is not searched) and ordered by its rank (bm25 on SQLite, ``ts_rank`` on
PostgreSQL); ``score`` maps the rank into (0, 1) (PaNOSC's federated search merges providers'
results by it): ``0.99 r / (1 + r)`` for a rank ``r`` (higher is better), at least 0.01.
Instruments, which the index does not hold, are found when their name or facility contains
one of the words, scored by the share of words found times 0.99. Without ``query`` scores are 0.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import case, desc, func, select
from sqlalchemy.orm import Session, selectinload

from ..models import Dataset, Publication
from ..search_filters import text_match
from . import documents
from .filters import Filter, Include, Where, bad
from .proposals import Proposals
from .shapes import (
    DEFAULT_MAX_RECORDS,
    Context,
    RecordBudget,
    dataset_record,
    instrument_with,
    project,
)
from .sql import constraints, instrument_pid, open_expr, query_terms, score_expr, where_expr

MODELS = ("Dataset", "Document", "Instrument")
ORDER_COLUMNS: dict[str, dict[str, Any]] = {
    "Dataset": {
        "pid": Dataset.pid,
        "title": Dataset.title,
        "creationDate": Dataset.creation_date,
        "size": Dataset.size,
        "instrumentId": Dataset.instrument,
    },
    "Document": {"pid": Publication.doi, "doi": Publication.doi, "title": Publication.title},
    "Instrument": {"pid": Dataset.facility, "name": Dataset.instrument, "facility": Dataset.facility},
}


def _conditions(flt: Filter, now: datetime) -> list:
    return [where_expr(flt.model, flt.where, now), *constraints(flt.model, flt.includes, now)]


def _order(flt: Filter, score, now: datetime) -> list:
    columns = ORDER_COLUMNS[flt.model]
    out = [desc(score)] if score is not None else []
    for name, descending in flt.order:
        if flt.model == "Dataset" and name == "size":  # the size shown: null while embargoed
            shown = case((open_expr(now), Dataset.size), else_=None)
            out.append((desc(shown) if descending else shown).nulls_last())
        elif name in columns:
            out.append(desc(columns[name]) if descending else columns[name])
    key = {"Dataset": Dataset.pid, "Document": Publication.doi}.get(flt.model)
    return [*out, key] if key is not None else [*out, Dataset.facility, Dataset.instrument]


def _context(session: Session, now: datetime, cap: int, max_records: int) -> Context:
    def instrument_datasets(facility: str, name: str, inc: Include) -> list[Dataset]:
        conds = [where_expr("Dataset", inc.where, now)] if inc.where is not None else []
        conds += constraints("Dataset", inc.includes, now)
        query = select(Dataset).where(Dataset.facility == facility, Dataset.instrument == name, *conds)
        wanted = inc.skip + min(inc.limit or cap, cap)  # ``shapes.listed`` skips
        rows = list(session.scalars(query.order_by(Dataset.pid).limit(wanted)))
        found.prefetch([ds.proposal_id for ds in rows])
        return rows

    budget, found = RecordBudget(max_records), Proposals(session, now)
    return Context(now=now, cap=cap, instrument_datasets=instrument_datasets, budget=budget, proposals=found)


def find(
    session: Session, flt: Filter, *, now: datetime, cap: int, max_records: int = DEFAULT_MAX_RECORDS
) -> list[dict]:
    """One page of ``flt.model`` records matching ``flt``, rendered with its includes (at most
    ``max_records`` records built in all, else a 400)."""
    limit = min(flt.limit or cap, cap)
    ctx = _context(session, now, cap, max_records)
    if flt.model == "Instrument":
        return _instruments(session, flt, now, limit, ctx)
    if flt.model == "Document":
        return documents.find(session, flt, now, limit, ctx)
    ranked = text_match(session, "datasets", flt.query, now=now) if flt.query else None
    query = select(Dataset, *([ranked.c.rank] if ranked is not None else [])).where(*_conditions(flt, now))
    if ranked is not None:
        query = query.join(ranked, ranked.c.id == Dataset.id)
    elif flt.query:  # words without a letter or digit: nothing can match
        return []
    query = query.options(selectinload(Dataset.publications))
    if any(inc.relation == "files" for inc in flt.includes):
        query = query.options(selectinload(Dataset.files))
    if any(inc.relation == "parameters" for inc in flt.includes):
        query = query.options(selectinload(Dataset.parameters))
    order = _order(flt, None, now)
    if ranked is not None:
        order = [ranked.c.rank, *order]
    rows = session.execute(query.order_by(*order).offset(flt.skip).limit(limit)).all()
    ctx.budget.spend(len(rows))
    if ctx.proposals is not None:
        ctx.proposals.prefetch([r[0].proposal_id for r in rows])
    return [
        project(dataset_record(r[0], flt.includes, ctx, _rank_score(r, ranked)), flt.fields, flt.includes)
        for r in rows
    ]


def _rank_score(row: Any, ranked: Any) -> float:
    """The index's rank (lower is better on every dialect) as a score in (0, 1)."""
    if ranked is None:
        return 0
    r = max(0.0, -float(row[-1] or 0))
    return round(max(0.01, 0.99 * r / (1 + r)), 4)


def _instruments(session: Session, flt: Filter, now: datetime, limit: int, ctx: Context) -> list[dict]:
    terms = query_terms(flt.query)
    score = score_expr(flt.model, terms) if terms else None
    cols = [Dataset.facility, Dataset.instrument]
    query = select(*cols, *([func.max(score)] if score is not None else []))
    query = query.where(Dataset.instrument != "", *_conditions(flt, now)).group_by(*cols)
    if score is not None:
        query = query.having(func.max(score) > 0)
    order = [desc(func.max(score))] if score is not None else []
    order += [c for c in _order(flt, None, now)]
    rows = session.execute(query.order_by(*order).offset(flt.skip).limit(limit)).all()
    ctx.budget.spend(len(rows))
    records = [instrument_with(r[0], r[1], flt.includes, ctx, _score(r, terms)) for r in rows]
    return [project(r, flt.fields, flt.includes) for r in records]


def _score(row: Any, terms: list[str]) -> float:
    if not terms:
        return 0
    return round(0.99 * int(row[-1] or 0) / len(terms), 4)


def count(session: Session, model: str, where: Where, *, now: datetime) -> int:
    """How many ``model`` records match ``where`` (the /count endpoints)."""
    cond = where_expr(model, where, now)
    if model == "Document":
        return documents.count(session, where, now)
    if model == "Instrument":
        inner = select(Dataset.facility, Dataset.instrument).where(Dataset.instrument != "", cond)
        inner = inner.group_by(Dataset.facility, Dataset.instrument).subquery()
        return int(session.scalar(select(func.count()).select_from(inner)) or 0)
    entity = Dataset if model == "Dataset" else Publication
    return int(session.scalar(select(func.count()).select_from(entity).where(cond)) or 0)


def get(
    session: Session,
    flt: Filter,
    pid: str,
    *,
    now: datetime,
    cap: int,
    max_records: int = DEFAULT_MAX_RECORDS,
) -> dict | None:
    """One record by PID (DOI for documents, ``facility/name`` for instruments), or None."""
    ctx = _context(session, now, cap, max_records)
    if flt.model == "Dataset":
        ds = session.scalar(select(Dataset).where(Dataset.pid == pid))
        return (
            None if ds is None else project(dataset_record(ds, flt.includes, ctx), flt.fields, flt.includes)
        )
    if flt.model == "Document":
        return documents.get(session, flt, pid, ctx)
    if flt.model == "Instrument":
        row = session.execute(
            select(Dataset.facility, Dataset.instrument)
            .where(Dataset.instrument != "", instrument_pid() == pid)
            .limit(1)
        ).first()
        return (
            None
            if row is None
            else project(instrument_with(row[0], row[1], flt.includes, ctx, 0), flt.fields, flt.includes)
        )
    raise bad(f"unknown model {flt.model}")
