"""PaNOSC where trees and include constraints as SQLAlchemy expressions on the catalogue tables.

Only expressions are built (values are bound parameters), never SQL text. The PaNOSC models map
onto the catalogue like this (``shapes.py`` renders the same mapping):

- Dataset -> ``datasets``; ``isPublic`` is "open" (public, or its embargo has ended);
  ``instrumentId`` is ``<facility>/<instrument>`` (the instrument alone without a facility); ``documentId`` a publication's DOI.
- Document -> ``publications`` (type "publication"); members are derived from the author names.
  Documents of type "proposal" are the datasets' ``proposal_id`` values (``proposals.py``, the
  pseudo-model "Proposal" here); a dataset's ``documentId``/``document`` is its publications' or
  its listed proposal's.
- Instrument -> the distinct (facility, instrument) pairs of the datasets.
- Technique -> ``techniques``: ``pid``/``panetId``/``name`` match the PaNET term and every
  narrower one ("x-ray diffraction" finds "single crystal x-ray diffraction").
- File -> ``dataset_files``, of open datasets only (an embargoed dataset's files never match).
- Sample -> a dataset's ``sample`` name (open datasets only); it has no PID or description.
- Parameter -> ``dataset_parameters`` (``parameters.py``); a value compared with a number
  compares the stored number, with a unit the SI value (the parser converted it). A Document's
  parameters are those of its datasets. ``{"parameters": {...}}`` in a Dataset or Document
  where (and the older ``{"variable", "operator", "value", "unit"}``) means "has a parameter
  matching".
- Affiliation and the document fields the catalogue does not hold (summary,
  keywords, license, dates) hold no values: a condition on them matches nothing, except
  ``eq null`` and the negative operators, as for a missing value.

An include with a scope ``where`` (at any depth) keeps only the parents with a matching related
record, as the PaNOSC search API does for techniques and parameters.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import String, and_, case, cast, false, func, literal, not_, or_, select, true
from sqlalchemy.sql.elements import ColumnElement

from ..models import Dataset, DatasetFile, DatasetParameter, Publication, Technique
from . import proposals
from .filters import Cond, Group, Has, Include, Text, Where, bad
from .match import compare_value, technique_ids

Expr = ColumnElement[bool]
NEGATIVE = {"neq", "nin", "nlike", "nilike"}


def open_expr(now: datetime) -> Expr:
    """The datasets anyone may read: public, or released."""
    return or_(
        Dataset.is_public.is_(True), and_(Dataset.release_date.is_not(None), Dataset.release_date <= now)
    )


def instrument_pid() -> ColumnElement[str]:
    """``<facility>/<instrument>``, or the instrument alone when the facility is unknown."""
    return case(
        (Dataset.facility == "", Dataset.instrument),
        else_=Dataset.facility + literal("/") + Dataset.instrument,
    )


def compare(col: Any, cond: Cond) -> Expr:
    """``col <op> value`` for one condition; ``like`` without ``%``/``_`` means "contains"."""
    op, v = cond.op, cond.value
    if op in ("eq", "neq") and v is None:
        return col.is_(None) if op == "eq" else col.is_not(None)
    if op in ("like", "nlike", "ilike", "nilike"):
        if "%" in v or "_" in v:
            expr = col.ilike(v) if op in ("ilike", "nilike") else col.like(v)
        else:
            expr = col.icontains(v, autoescape=True)
        return not_(expr) if op in ("nlike", "nilike") else expr
    simple: dict[str, Callable[[], Expr]] = {
        "eq": lambda: col == v,
        "neq": lambda: col != v,
        "gt": lambda: col > v,
        "gte": lambda: col >= v,
        "lt": lambda: col < v,
        "lte": lambda: col <= v,
        "between": lambda: col.between(v[0], v[1]),
        "inq": lambda: col.in_(list(v)),
        "nin": lambda: col.not_in(list(v)),
    }
    return simple[op]()


def absent(cond: Cond) -> Expr:
    """A condition on a field the catalogue holds no value for."""
    if cond.op == "eq" and cond.value is None:
        return true()
    return true() if cond.op in NEGATIVE else false()


def constant(value: Any, cond: Cond) -> Expr:
    """A condition on a field with the same value for every row (e.g. Document.type)."""
    return true() if compare_value(value, cond) else false()


def _text_or(cols: list, text: str) -> Expr:
    return or_(*(c.icontains(text, autoescape=True) for c in cols))


def where_expr(model: str, where: Where, now: datetime) -> Expr:
    """The where tree of ``model`` as one expression on that model's table."""
    if isinstance(where, Group):
        parts = [where_expr(model, p, now) for p in where.parts]
        if not parts:
            return true()
        return and_(*parts) if where.op == "and" else or_(*parts)
    if isinstance(where, Has):
        return include_expr(model, Include(where.relation, where.model, where.where), now)
    return TRANSLATORS[model](where, now)


def _dataset(node: Cond | Text, now: datetime) -> Expr:
    if isinstance(node, Text):
        return _text_or([Dataset.title, Dataset.pid], node.text)
    name = node.field
    if name == "isPublic":
        return constant_bool(open_expr(now), node)
    if name == "score":
        raise bad("'score' is computed from 'query'; filter with query instead")
    if name == "size":
        return and_(open_expr(now), compare(Dataset.size, node))
    if name == "documentId":
        listed = proposals.is_listed(Dataset.proposal_id, now)
        if node.op in ("eq", "neq") and node.value is None:
            has = or_(Dataset.publications.any(), listed)
            return not_(has) if node.op == "eq" else has
        return or_(Dataset.publications.any(_doi(node)), and_(listed, compare(Dataset.proposal_id, node)))
    if name == "instrumentId":
        return and_(Dataset.instrument != "", compare(instrument_pid(), node))
    column = {"pid": Dataset.pid, "title": Dataset.title, "creationDate": Dataset.creation_date}[name]
    return compare(column, node)


def constant_bool(expr: Expr, cond: Cond) -> Expr:
    """``isPublic`` conditions: only eq/neq with true or false make sense."""
    if cond.op not in ("eq", "neq") or not isinstance(cond.value, bool):
        raise bad("'isPublic' takes true or false")
    return expr if (cond.value is True) == (cond.op == "eq") else not_(expr)


def _doi(cond: Cond) -> Expr:
    if cond.op in ("eq", "neq") and isinstance(cond.value, str):
        return compare(Publication.doi, Cond("doi", cond.op, cond.value.strip().lower()))
    if cond.op in ("inq", "nin"):
        return compare(
            Publication.doi, Cond("doi", cond.op, tuple(str(v).strip().lower() for v in cond.value))
        )
    return compare(Publication.doi, cond)


def _technique(node: Cond | Text, now: datetime) -> Expr:
    if isinstance(node, Text):
        return Technique.label.icontains(node.text, autoescape=True)
    if node.op in ("eq", "neq", "inq", "nin") and node.value is not None:
        values = node.value if node.op in ("inq", "nin") else (node.value,)
        ids = set().union(*(technique_ids(v) for v in values))
        matched = Technique.panet_id.in_(sorted(ids)) if ids else false()
        if node.field == "name":
            labels = [str(v).strip().lower() for v in values]
            matched = or_(matched, func.lower(Technique.label).in_(labels))
        return not_(matched) if node.op in NEGATIVE else matched
    column = Technique.label if node.field == "name" else Technique.panet_id
    return compare(column, node)


def _file(node: Cond | Text, now: datetime) -> Expr:
    if isinstance(node, Text):
        return DatasetFile.path.icontains(node.text, autoescape=True)
    if node.field in ("name", "path"):
        if node.op == "eq" and isinstance(node.value, str):
            return or_(
                DatasetFile.path == node.value, DatasetFile.path.endswith("/" + node.value, autoescape=True)
            )
        return compare(DatasetFile.path, node)
    if node.field == "size":
        return compare(DatasetFile.size, node)
    return absent(node)


def _document(node: Cond | Text, now: datetime) -> Expr:
    if isinstance(node, Text):
        return _text_or([Publication.title, Publication.doi], node.text)
    name = node.field
    if name in ("pid", "doi"):
        return _doi(node)
    if name == "title":
        return compare(Publication.title, node)
    if name == "isPublic":
        return constant_bool(true(), node)
    if name == "type":
        return constant("publication", node)
    if name == "score":
        raise bad("'score' is computed from 'query'; filter with query instead")
    return absent(node)


def _instrument(node: Cond | Text, now: datetime) -> Expr:
    if isinstance(node, Text):
        return _text_or([Dataset.instrument, Dataset.facility], node.text)
    if node.field == "score":
        raise bad("'score' is computed from 'query'; filter with query instead")
    column = {"pid": instrument_pid(), "name": Dataset.instrument, "facility": Dataset.facility}[node.field]
    return and_(Dataset.instrument != "", compare(column, node))


def _member(node: Cond | Text, now: datetime) -> Expr:
    if isinstance(node, Cond) and node.field == "role":
        return constant("author", node)
    return absent(node) if isinstance(node, Cond) else false()


def _person(node: Cond | Text, now: datetime) -> Expr:
    """Author names are a JSON list of strings: match in its JSON text."""
    authors = cast(Publication.authors, String)
    if isinstance(node, Text):
        return authors.icontains(node.text, autoescape=True)
    if node.field != "fullName":
        return absent(node)
    if node.op == "eq" and isinstance(node.value, str):
        return authors.contains(json.dumps(node.value), autoescape=True)
    if node.op in ("like", "ilike") and "%" not in node.value and "_" not in node.value:
        return authors.icontains(node.value, autoescape=True)
    return absent(node)


def _sample(node: Cond | Text, now: datetime) -> Expr:
    """A dataset's sample is its ``sample`` name (from the NeXus file); no PID or description."""
    if isinstance(node, Text):
        return Dataset.sample.icontains(node.text, autoescape=True)
    return compare(Dataset.sample, node) if node.field == "name" else absent(node)


def _parameter(node: Cond | Text, now: datetime) -> Expr:
    """One Parameter condition on ``dataset_parameters``."""
    if isinstance(node, Text):
        return DatasetParameter.name.icontains(node.text, autoescape=True)
    columns = {
        "name": DatasetParameter.name,
        "unit": DatasetParameter.unit,
        "siValue": DatasetParameter.si_value,
        "siUnit": DatasetParameter.si_unit,
    }
    if node.field in columns:
        return compare(columns[node.field], node)
    if node.field == "value":
        values = node.value if isinstance(node.value, tuple) else (node.value,)
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        return compare(DatasetParameter.value_number if numeric else DatasetParameter.value_text, node)
    return absent(node)


def _nothing(node: Cond | Text, now: datetime) -> Expr:
    return absent(node) if isinstance(node, Cond) else false()


TRANSLATORS: dict[str, Callable[[Cond | Text, datetime], Expr]] = {
    "Dataset": _dataset,
    "Document": _document,
    "Instrument": _instrument,
    "Technique": _technique,
    "File": _file,
    "Member": _member,
    "Person": _person,
    "Parameter": _parameter,
    "Sample": _sample,
    "Affiliation": _nothing,
    "Proposal": lambda node, now: proposals.translate(node, now),
}


LINEAGE = ("derivedFrom", "derivedDatasets")  # Dataset -> Dataset, listed only (shapes.py)


def constraints(model: str, includes: tuple[Include, ...], now: datetime) -> list[Expr]:
    """One expression per constraining include: the parent has a matching related record."""
    return [include_expr(model, inc, now) for inc in includes if inc.constrains]


def include_expr(parent: str, inc: Include, now: datetime) -> Expr:
    inner = and_(
        where_expr(inc.model, inc.where, now) if inc.where is not None else true(),
        *constraints(inc.model, inc.includes, now),
    )
    if inc.model == "Affiliation":
        return false()  # the catalogue holds none
    if inc.relation in LINEAGE:
        raise bad(
            f"'{inc.relation}' can be included but not filtered on; drop its where, or filter "
            "the datasets it lists in a request of their own"
        )
    if parent == "Proposal":
        return proposals.relation(inc, inner, now)
    if (parent, inc.model) == ("Dataset", "Document"):
        return or_(Dataset.publications.any(inner), _in_proposal(inc, now))
    relation: dict[tuple[str, str], Callable[[], Expr]] = {
        ("Dataset", "Technique"): lambda: Dataset.techniques.any(inner),
        ("Dataset", "File"): lambda: and_(open_expr(now), Dataset.files.any(inner)),
        ("Dataset", "Sample"): lambda: and_(open_expr(now), Dataset.sample != "", inner),
        ("Dataset", "Instrument"): lambda: and_(Dataset.instrument != "", inner),
        ("Dataset", "Document"): lambda: Dataset.publications.any(inner),
        ("Dataset", "Parameter"): lambda: Dataset.parameters.any(inner),
        ("Document", "Parameter"): lambda: Publication.datasets.any(Dataset.parameters.any(inner)),
        ("Document", "Dataset"): lambda: Publication.datasets.any(inner),
        ("Document", "Member"): lambda: inner,  # members and persons are the same row's authors
        ("Member", "Person"): lambda: inner,
        ("Member", "Document"): lambda: inner,
        ("Instrument", "Dataset"): lambda: inner,  # instruments are grouped datasets
    }
    return relation[(parent, inc.model)]()


def _in_proposal(inc: Include, now: datetime) -> Expr:
    """The dataset's proposal is a listed proposal Document meeting ``inc``'s where."""
    P = proposals.PROPOSAL
    conds = [where_expr("Proposal", inc.where, now)] if inc.where is not None else []
    conds += constraints("Proposal", inc.includes, now)
    inner = select(P.id).where(P.proposal_id == Dataset.proposal_id, *proposals.listed_rows(now), *conds)
    return inner.correlate_except(P).exists()


def query_terms(query: str) -> list[str]:
    return [t for t in query.split() if t][:10]


def score_expr(model: str, terms: list[str]) -> ColumnElement[int]:
    """How many of the query's words a row contains (title, PID/DOI; instrument and facility)."""
    cols = {
        "Dataset": [Dataset.title, Dataset.pid],
        "Document": [Publication.title, Publication.doi],
        "Instrument": [Dataset.instrument, Dataset.facility],
    }[model]
    hits = [case((_text_or(cols, t), 1), else_=0) for t in terms]
    total = hits[0]
    for h in hits[1:]:
        total = total + h
    return total
