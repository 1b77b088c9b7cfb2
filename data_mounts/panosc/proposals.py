"""Proposals as PaNOSC Documents of type "proposal", derived from the datasets' ``proposal_id``.

The catalogue keeps no proposal table: a proposal is the set of datasets that name it. Its
Document has the proposal id as ``pid`` and ``title`` (as ESRF's server names its proposal
documents "ls2850"; the id is all the catalogue knows), ``isPublic`` true, ``keywords`` the
union of its datasets' keywords, and no summary, DOI, dates or licence. The API answers for an
anonymous reader, so everything about a proposal comes from its *open* datasets only: its
``datasets`` list only those, its keywords and members are read from those, and a proposal
whose datasets are all embargoed is not a Document at all (no PID, search or count shows it).

Members are the owners of its open datasets that are ORCID iDs (the PaNOSC importer stores a
member's ORCID as an owner), role "owner", each with a Person ``{id, orcid}``; other owners
are account names and are never shown or searchable. Keywords are matched in the JSON text of
each dataset's list: ``eq``/``inq`` find a whole keyword, ``like`` without ``%``/``_`` a part
of one (a pattern with ``%`` may span two keywords); ordering operators match nothing.

SQL: ``PROPOSAL`` is an alias of ``datasets``; a proposal query selects its open rows grouped
by ``proposal_id``, and every condition is on ``PROPOSAL.proposal_id`` or an EXISTS over the
proposal's open datasets, so a where with two includes may be met by two different datasets.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import String, and_, cast, false, not_, or_, select, true
from sqlalchemy.orm import Session, aliased, selectinload
from sqlalchemy.sql.elements import ColumnElement

from ..models import Dataset
from . import sql
from .filters import Cond, Group, Include, Text, bad
from .match import orcid_of

PROPOSAL = aliased(Dataset, name="proposal_ds")
ROLE = "owner"
MAX_MEMBER_ROWS = 10_000  # datasets read for one proposal's keywords and members

Expr = ColumnElement[bool]


def open_of(entity: Any, now: datetime) -> Expr:
    """``sql.open_expr`` on ``entity`` (``Dataset`` or an alias of it)."""
    return or_(entity.is_public.is_(True), and_(entity.release_date.is_not(None), entity.release_date <= now))


def listed_rows(now: datetime) -> list[Expr]:
    """The ``PROPOSAL`` rows that make proposals: open datasets that name one."""
    return [PROPOSAL.proposal_id.is_not(None), PROPOSAL.proposal_id != "", open_of(PROPOSAL, now)]


def of_proposal(pid_column: Any, now: datetime, *conds: Expr) -> Expr:
    """An open dataset of the proposal ``pid_column`` meets ``conds`` (``Dataset`` inside)."""
    inner = select(Dataset.id).where(Dataset.proposal_id == pid_column, open_of(Dataset, now), *conds)
    return inner.correlate_except(Dataset).exists()


def is_listed(pid_column: Any, now: datetime) -> Expr:
    """The proposal ``pid_column`` (a column outside ``PROPOSAL``) is a Document."""
    inner = select(PROPOSAL.id).where(PROPOSAL.proposal_id == pid_column, *listed_rows(now))
    return and_(pid_column.is_not(None), pid_column != "", inner.correlate_except(PROPOSAL).exists())


# where translation: every expression is on PROPOSAL.proposal_id --------------------------


def translate(node: Cond | Text, now: datetime) -> Expr:
    pid = PROPOSAL.proposal_id
    if isinstance(node, Text):
        return pid.icontains(node.text, autoescape=True)
    name = node.field
    if name in ("pid", "title"):
        return sql.compare(pid, node)
    if name == "type":
        return sql.constant("proposal", node)
    if name == "isPublic":
        return sql.constant_bool(true(), node)
    if name == "keywords":
        return _keywords(node, now)
    if name == "score":
        raise bad("'score' is computed from 'query'; filter with query instead")
    return sql.absent(node)


def _keywords(cond: Cond, now: datetime) -> Expr:
    text = cast(Dataset.keywords, String)
    op, value = cond.op, cond.value
    if op in ("eq", "neq") and value is None:  # no keywords at all, or some
        some = of_proposal(PROPOSAL.proposal_id, now, text.not_in(["[]", ""]))
        return not_(some) if op == "eq" else some
    positive = {"neq": "eq", "nin": "inq", "nlike": "like", "nilike": "ilike"}.get(op, op)
    if positive in ("eq", "inq"):
        values = value if positive == "inq" else (value,)
        hit = or_(false(), *(text.contains(json.dumps(str(v)), autoescape=True) for v in values))
    elif positive in ("like", "ilike"):
        plain = "%" not in value and "_" not in value
        hit = (
            text.icontains(value, autoescape=True) if plain else sql.compare(text, Cond("k", positive, value))
        )
    else:  # gt, lt, between: keywords are no ordered values
        return false()
    found = of_proposal(PROPOSAL.proposal_id, now, hit)
    return not_(found) if op != positive else found


def relation(inc: Include, inner: Expr, now: datetime) -> Expr:
    """A proposal has a related ``inc.model`` record meeting ``inner`` (Dataset, Parameter) or
    ``inc``'s own where (Member: its person's ORCID)."""
    if inc.model == "Dataset":
        return of_proposal(PROPOSAL.proposal_id, now, inner)
    if inc.model == "Parameter":
        return of_proposal(PROPOSAL.proposal_id, now, Dataset.parameters.any(inner))
    return _member(inc, now)


def _member(inc: Include, now: datetime) -> Expr:
    """Members are ORCID owners: role and person conditions, checked on the owners' JSON text."""
    conds: list[Expr] = [_member_cond(inc.where)] if inc.where is not None else []
    for sub in inc.includes:
        if sub.model == "Affiliation" and sub.constrains:
            return false()
        if sub.model == "Person" and sub.where is not None:
            conds.append(_person(sub.where))
    orcid = cast(Dataset.owners, String).like("%____-____-____-___%")
    return of_proposal(PROPOSAL.proposal_id, now, orcid, *conds)


def _member_cond(where: Any) -> Expr:
    return _tree(where, lambda c: sql.constant(ROLE, c) if c.field == "role" else sql.absent(c))


def _person(where: Any) -> Expr:
    def one(c: Cond) -> Expr:
        if c.field not in ("id", "orcid"):
            return sql.absent(c)
        values = c.value if c.op in ("inq", "nin") else (c.value,)
        ids = [i for i in (orcid_of(v) for v in values) if i]
        if c.op not in ("eq", "inq", "neq", "nin"):
            return false()
        hit = or_(false(), *(cast(Dataset.owners, String).contains(json.dumps(i)) for i in ids))
        return not_(hit) if c.op in ("neq", "nin") else hit

    return _tree(where, one)


def _tree(where: Any, leaf: Callable[[Cond], Expr]) -> Expr:
    if isinstance(where, Group):
        parts = [_tree(p, leaf) for p in where.parts]
        if not parts:
            return true()
        return and_(*parts) if where.op == "and" else or_(*parts)
    return leaf(where) if isinstance(where, Cond) else false()


# records ----------------------------------------------------------------------------------


@dataclass
class ProposalDoc:
    pid: str
    keywords: list[str] = field(default_factory=list)
    members: list[str] = field(default_factory=list)  # ORCID iDs


class Proposals:
    """The proposals one request renders, read once each (keywords, members, listed or not)."""

    def __init__(self, session: Session, now: datetime) -> None:
        self.session, self.now = session, now
        self._known: dict[str, ProposalDoc | None] = {}

    def prefetch(self, pids: list[str]) -> None:
        todo = sorted({p for p in pids if p and p not in self._known})
        if not todo:
            return
        for pid in todo:
            self._known[pid] = None
        rows = self.session.execute(
            select(Dataset.proposal_id, Dataset.keywords, Dataset.owners)
            .where(Dataset.proposal_id.in_(todo), open_of(Dataset, self.now))
            .order_by(Dataset.proposal_id, Dataset.pid)
            .limit(MAX_MEMBER_ROWS * len(todo))
        )
        for pid, keywords, owners in rows:
            doc = self._known[pid] or ProposalDoc(pid)
            self._known[pid] = doc
            doc.keywords += [k for k in keywords or () if isinstance(k, str) and k not in doc.keywords]
            found = (orcid_of(o) for o in owners or ())
            doc.members += [o for o in found if o and o not in doc.members]

    def get(self, pid: str | None) -> ProposalDoc | None:
        if not pid:
            return None
        if pid not in self._known:
            self.prefetch([pid])
        return self._known.get(pid)

    def datasets(self, pid: str, inc: Include, cap: int) -> list[Dataset]:
        """The proposal's open datasets that ``inc``'s where and constraints keep, PID order."""
        conds = [sql.where_expr("Dataset", inc.where, self.now)] if inc.where is not None else []
        conds += sql.constraints("Dataset", inc.includes, self.now)
        query = select(Dataset).where(Dataset.proposal_id == pid, open_of(Dataset, self.now), *conds)
        query = query.options(selectinload(Dataset.publications))
        wanted = inc.skip + min(inc.limit or cap, cap)  # ``shapes.listed`` skips
        return list(self.session.scalars(query.order_by(Dataset.pid).limit(wanted)))

    def parameters(self, pid: str, cap: int) -> list[tuple[Any, str]]:
        query = select(Dataset).where(Dataset.proposal_id == pid, open_of(Dataset, self.now))
        query = query.options(selectinload(Dataset.parameters)).order_by(Dataset.pid).limit(cap)
        return [(p, ds.pid) for ds in self.session.scalars(query) for p in ds.parameters]


def proposal_fields(doc: ProposalDoc, score: float = 0) -> dict:
    return {
        "pid": doc.pid,
        "isPublic": True,
        "type": "proposal",
        "title": doc.pid,
        "summary": None,
        "doi": None,
        "startDate": None,
        "endDate": None,
        "releaseDate": None,
        "license": None,
        "keywords": list(doc.keywords),
        "score": score,
    }


def member_fields(doc: ProposalDoc, index: int, orcid: str) -> dict:
    return {"id": index + 1, "role": ROLE, "documentId": doc.pid, "personId": orcid}


def person_fields(orcid: str) -> dict:
    return {"id": orcid, "fullName": None, "orcid": orcid}
