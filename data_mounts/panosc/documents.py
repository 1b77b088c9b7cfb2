"""PaNOSC Documents of both kinds: publications and proposals (``proposals.py``) in one list.

One UNION ALL of the two (kind, pid, doi, title, publication id[, rank]) selects is ordered,
skipped and limited in the database, so ``order``, ``skip`` and ``limit`` page across both
kinds; ties and an order without a field go by PID, then publications first. With ``query``,
a publication is found through the publications' full-text index and a proposal through its
open datasets' (its rank is its best dataset's).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Integer, String, desc, func, literal, select, union_all
from sqlalchemy.orm import Session, selectinload

from panbinder.errors import PanbinderError

from ..models import Publication
from ..publication_records import normalise_doi
from ..search_filters import text_match
from .filters import Filter, Where
from .proposals import PROPOSAL, ProposalDoc, listed_rows
from .shapes import Context, document_record, project, proposal_record
from .sql import constraints, where_expr

PUBLICATION, PROPOSAL_KIND = 0, 1


def _selects(session: Session, flt: Filter, now: datetime) -> list | None:
    """The two selects of ``flt`` (None: query words without a letter or digit)."""
    pub_conds = [where_expr("Document", flt.where, now), *constraints("Document", flt.includes, now)]
    prop_conds = [where_expr("Proposal", flt.where, now), *constraints("Proposal", flt.includes, now)]
    pid = PROPOSAL.proposal_id
    pubs = select(
        literal(PUBLICATION).label("kind"),
        Publication.doi.label("pid"),
        Publication.doi.label("doi"),
        Publication.title.label("title"),
        Publication.id.label("key"),
    ).where(*pub_conds)
    props = select(
        literal(PROPOSAL_KIND).label("kind"),
        pid.label("pid"),
        literal(None, String).label("doi"),
        pid.label("title"),
        literal(None, Integer).label("key"),
    ).where(*listed_rows(now), *prop_conds)
    if flt.query:
        texts = text_match(session, "publications", flt.query, now=now)
        rows = text_match(session, "datasets", flt.query, now=now)
        if texts is None or rows is None:
            return None
        pubs = pubs.add_columns(texts.c.rank.label("rank")).join(texts, texts.c.id == Publication.id)
        props = props.add_columns(func.min(rows.c.rank).label("rank")).join(rows, rows.c.id == PROPOSAL.id)
    return [pubs, props.group_by(pid)]


def find(session: Session, flt: Filter, now: datetime, limit: int, ctx: Context) -> list[dict]:
    """One page of Documents of both kinds matching ``flt``, rendered with its includes."""
    selects = _selects(session, flt, now)
    if selects is None:
        return []
    docs = union_all(*selects).subquery("docs")
    columns = {"pid": docs.c.pid, "doi": docs.c.doi, "title": docs.c.title}
    order: list[Any] = [docs.c.rank] if flt.query else []
    for name, descending in flt.order:
        if name in columns:
            order.append(desc(columns[name]) if descending else columns[name])
    order += [docs.c.pid, docs.c.kind]
    rows = session.execute(select(docs).order_by(*order).offset(flt.skip).limit(limit)).all()
    ctx.budget.spend(len(rows))
    keys = [r.key for r in rows if r.kind == PUBLICATION]
    query = select(Publication).where(Publication.id.in_(keys)).options(selectinload(Publication.datasets))
    pubs = {p.id: p for p in session.scalars(query)} if keys else {}
    if ctx.proposals is not None:
        ctx.proposals.prefetch([r.pid for r in rows if r.kind == PROPOSAL_KIND])
    out = []
    for row in rows:
        score = _score(row.rank) if flt.query else 0
        if row.kind == PUBLICATION:
            record = document_record(pubs[row.key], flt.includes, ctx, score)
        else:
            found = ctx.proposals.get(row.pid) if ctx.proposals is not None else None
            record = proposal_record(found or ProposalDoc(row.pid), flt.includes, ctx, score)
        out.append(project(record, flt.fields, flt.includes))
    return out


def _score(rank: float | None) -> float:
    """The index's rank (lower is better on every dialect) as a score in (0, 1)."""
    r = max(0.0, -float(rank or 0))
    return round(max(0.01, 0.99 * r / (1 + r)), 4)


def count(session: Session, where: Where, now: datetime) -> int:
    """Publications and listed proposals matching ``where``."""
    pubs = session.scalar(
        select(func.count()).select_from(Publication).where(where_expr("Document", where, now))
    )
    props = select(PROPOSAL.proposal_id).where(*listed_rows(now), where_expr("Proposal", where, now))
    found = session.scalar(select(func.count()).select_from(props.distinct().subquery()))
    return int(pubs or 0) + int(found or 0)


def get(session: Session, flt: Filter, pid: str, ctx: Context) -> dict | None:
    """The publication with DOI ``pid``, else the listed proposal ``pid``, or None."""
    try:
        doi = normalise_doi(pid)
    except PanbinderError:
        doi = None
    pub = session.scalar(select(Publication).where(Publication.doi == doi)) if doi else None
    if pub is not None:
        return project(document_record(pub, flt.includes, ctx), flt.fields, flt.includes)
    found = ctx.proposals.get(pid) if ctx.proposals is not None else None
    if found is None:
        return None
    return project(proposal_record(found, flt.includes, ctx), flt.fields, flt.includes)
