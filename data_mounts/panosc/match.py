"""PaNOSC where trees evaluated on rendered records (the related records an include lists).

The parents are chosen in SQL (``sql.py``); the records listed under an include are rendered
dicts and filtered here with the same rules: ``like`` without ``%``/``_`` means "contains",
technique names and ids match narrower PaNET terms, a missing value matches only ``eq null``
and the negative operators.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from .. import panet
from .filters import Cond, Group, Has, Include, Text, Where
from .parameters import with_si

TEXT_FIELDS = {
    "Dataset": ("title", "pid"),
    "Document": ("title", "summary", "doi"),
    "Instrument": ("name", "facility"),
    "Technique": ("name",),
    "File": ("name", "path"),
    "Sample": ("name", "description"),
    "Parameter": ("name",),
    "Person": ("fullName",),
    "Affiliation": ("name",),
}


def _like(pattern: str, value: str, insensitive: bool) -> bool:
    """SQL LIKE (``%``, ``_``), matched segment by segment (no regex, no backtracking); a
    pattern without ``%``/``_`` means "contains", in any case."""
    if "%" not in pattern and "_" not in pattern:
        return pattern.lower() in value.lower()
    if insensitive:
        pattern, value = pattern.lower(), value.lower()
    first, *middle, last = pattern.split("%") if "%" in pattern else (pattern, pattern)
    if "%" not in pattern:
        return len(value) == len(pattern) and _fits(pattern, value, 0)
    if len(first) + len(last) > len(value) or not _fits(first, value, 0):
        return False
    pos, end = len(first), len(value) - len(last)
    for seg in middle:
        found = next((i for i in range(pos, end - len(seg) + 1) if _fits(seg, value, i)), None)
        if found is None:
            return False
        pos = found + len(seg)
    return pos <= end and _fits(last, value, end)


def _fits(segment: str, value: str, at: int) -> bool:
    return all(c == "_" or value[at + i] == c for i, c in enumerate(segment))


def _comparable(value: Any, other: Any) -> Any:
    """``value`` as the type of ``other``: dates parsed, numbers from numeric strings."""
    if isinstance(other, datetime) and isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if isinstance(other, int | float) and not isinstance(value, bool):
        try:
            return float(value)
        except (TypeError, ValueError):
            return None
    return value


def compare_value(value: Any, cond: Cond) -> bool:
    op, arg = cond.op, cond.value
    if value is None or value == []:
        return (op == "eq" and arg is None) or (op in ("neq", "nin", "nlike", "nilike") and arg is not None)
    if isinstance(value, list):  # keywords: any element; negative: none; no order among them
        positive = {"neq": "eq", "nin": "inq", "nlike": "like", "nilike": "ilike"}.get(op)
        if positive:
            return not any(compare_value(v, Cond(cond.field, positive, arg)) for v in value)
        return op in ("eq", "inq", "like", "ilike") and any(compare_value(v, cond) for v in value)
    if op in ("like", "nlike", "ilike", "nilike"):
        found = _like(arg, str(value), op in ("ilike", "nilike"))
        return not found if op in ("nlike", "nilike") else found
    if op in ("inq", "nin"):
        found = any(_equal(value, a) for a in arg)
        return not found if op == "nin" else found
    if op in ("eq", "neq"):
        return _equal(value, arg) == (op == "eq")
    if op == "between":
        low, high = _comparable(value, arg[0]), arg[1]
        return low is not None and arg[0] <= low <= high
    have = _comparable(value, arg)
    if have is None or isinstance(have, str) != isinstance(arg, str):
        return False
    return {"gt": have > arg, "gte": have >= arg, "lt": have < arg, "lte": have <= arg}[op]


def _equal(value: Any, arg: Any) -> bool:
    if arg is None:
        return value is None
    have = _comparable(value, arg)
    return have == arg or str(value) == str(arg)


ORCID_RE = re.compile(r"^\d{4}-\d{4}-\d{4}-\d{3}[\dX]$")


def orcid_of(value: Any) -> str | None:
    """The bare ORCID iD in ``value`` (``orcid.org/...``, an https URL), or None."""
    if not isinstance(value, str):
        return None
    bare = re.sub(r"^(?:https?://)?orcid\.org/", "", value.strip())
    return bare if ORCID_RE.match(bare) else None


def person_cond(cond: Cond) -> Cond:
    """A Person ``id``/``orcid`` condition with ORCID iDs written bare, as members show them."""
    if cond.field not in ("id", "orcid") or cond.op not in ("eq", "neq", "inq", "nin"):
        return cond
    if isinstance(cond.value, tuple):
        return Cond(cond.field, cond.op, tuple(orcid_of(v) or v for v in cond.value))
    return Cond(cond.field, cond.op, orcid_of(cond.value) or cond.value)


def matches(model: str, where: Where | None, record: dict) -> bool:
    if where is None:
        return True
    if isinstance(where, Group):
        results = (matches(model, p, record) for p in where.parts)
        return all(results) if where.op == "and" else any(results)
    if isinstance(where, Has):  # judged on the listed relation (the parents were chosen in SQL)
        listed = record.get(where.relation)
        return listed is None or any(matches(where.model, where.where, r) for r in listed)
    if isinstance(where, Text):
        return any(where.text.lower() in str(record.get(f) or "").lower() for f in TEXT_FIELDS.get(model, ()))
    if model == "Person":
        where = person_cond(where)
    if model == "Parameter" and where.field in ("siValue", "siUnit"):
        record = with_si(record)
    if model == "Technique" and where.field in ("name", "pid", "panetId"):
        return _technique(where, record)
    return compare_value(record.get(where.field), where)


def technique_ids(value: Any) -> set[str]:
    """The PaNET ids a technique id, purl, label or synonym stands for, narrower terms included."""
    found = panet.lookup(str(value)) if value is not None else None
    return panet.with_descendants(found) if found else set()


def _technique(cond: Cond, record: dict) -> bool:
    if cond.op not in ("eq", "neq", "inq", "nin") or cond.value is None:
        return compare_value(record.get(cond.field), cond)
    values = cond.value if cond.op in ("inq", "nin") else (cond.value,)
    ids = set().union(*(technique_ids(v) for v in values))
    names = {str(v).strip().lower() for v in values}
    found = record.get("panetId") in ids or str(record.get("name", "")).lower() in names
    return not found if cond.op in ("neq", "nin") else found


def keep(inc: Include, record: dict) -> bool:
    """Is ``record`` listed under ``inc``: its where matches and its constraining includes found some."""
    if not matches(inc.model, inc.where, record):
        return False
    for sub in inc.includes:
        if sub.constrains:
            listed = record.get(sub.relation)
            if not listed:  # None (belongsTo) or an empty list
                return False
    return True
