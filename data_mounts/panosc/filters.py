"""The PaNOSC search API's LoopBack ``filter`` JSON, parsed strictly into a small tree (pure).

A filter is ``{"where", "include", "limit", "skip", "order", "fields", "query"}``; ``where``
joins conditions with ``and``/``or``, compares one field with an operator (``{"title":
{"like": "%scan%"}}``) or matches text (``{"text": "v20"}``); ``include`` names relations, each
with an optional ``scope`` of its own ``where`` and ``include``. Every name is checked against
the PaNOSC data model (``MODELS``), every value against the field's type, and the tree is
bounded in size, so a bad filter becomes one PanbinderError (400) that says what to change and
the translation to SQL never sees an unknown name.

Parameters: a Parameter where that gives a ``unit`` next to ``value`` comparisons (``{"and":
[{"name": "wavelength"}, {"value": {"between": [1000, 1100]}}, {"unit": "nm"}]}``, as the
PaNOSC portal sends in a ``parameters`` include scope) compares in SI: the values become
``siValue`` conditions and the unit an ``siUnit`` (dimension) condition, so 1 keV finds
1000 eV. A unit ``units.py`` does not know is compared as written. A Dataset or Document where
may also hold ``{"parameters": {...}}`` or the search API documentation's ``{"variable",
"operator", "value", "unit"}`` (alone or under ``query``): a ``Has`` node, "has a matching
parameter".
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from panbinder.errors import PanbinderError

from .. import units
from .model import FIELDS, OPERATORS, RELATIONS

MAX_FILTER_CHARS = 20_000
MAX_DEPTH = 8  # nested and/or levels
# Include levels: the PaNOSC portal (searchui) and the reference server's filters nest at most
# three (Dataset -> document -> members -> person), and each level multiplies the records built.
MAX_INCLUDE_DEPTH = 3
MAX_NODES = 200  # conditions and includes in one filter
MAX_SKIP = 2**31 - 1

ORDER_RE = re.compile(r"^\s*([A-Za-z]+)(?:\s+(ASC|DESC|asc|desc))?\s*$")


@dataclass(frozen=True)
class Cond:
    """``field`` compared with ``value`` by ``op`` (values already checked for the field's type)."""

    field: str
    op: str
    value: Any


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Group:
    """``and`` or ``or`` of its parts; an empty ``and`` matches everything."""

    op: str
    parts: tuple[Cond | Text | Group | Has, ...]


@dataclass(frozen=True)
class Has:
    """The record has a related ``model`` record (by ``relation``) matching ``where``."""

    relation: str
    model: str
    where: Cond | Text | Group | Has


Where = Cond | Text | Group | Has
PARAMETER_FORM = {"variable", "operator", "value", "unit"}
MATCH_ALL = Group("and", ())


@dataclass(frozen=True)
class Include:
    relation: str
    model: str
    where: Where | None = None
    includes: tuple[Include, ...] = ()
    limit: int | None = None
    skip: int = 0

    @property
    def constrains(self) -> bool:
        """Does this include restrict its parents (a scope ``where`` here or further down)?"""
        return self.where is not None or any(i.constrains for i in self.includes)


@dataclass(frozen=True)
class Filter:
    model: str
    where: Where = MATCH_ALL
    includes: tuple[Include, ...] = ()
    limit: int | None = None
    skip: int = 0
    order: tuple[tuple[str, bool], ...] = ()  # (field, descending)
    fields: tuple[str, ...] = ()
    query: str = ""


def bad(problem: str) -> PanbinderError:
    return PanbinderError(
        f"Bad filter: {problem}. See the PaNOSC search API's query syntax (LoopBack filter JSON).",
        reason="bad_filter",
    )


@dataclass
class _Budget:
    nodes: int = 0
    seen: list[str] = field(default_factory=list)

    def spend(self) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise bad(f"more than {MAX_NODES} conditions and includes; split the query")


def decode(raw: str | None, what: str = "filter") -> dict:
    """The JSON object of a ``filter`` or ``where`` query parameter ('' or None: ``{}``)."""
    if raw is None or not raw.strip():
        return {}
    if len(raw) > MAX_FILTER_CHARS:
        raise bad(f"'{what}' is longer than {MAX_FILTER_CHARS} characters")
    try:
        value = json.loads(raw, parse_constant=_no_constant)
    except (json.JSONDecodeError, RecursionError, ValueError) as e:
        raise bad(f"'{what}' is not valid JSON ({getattr(e, 'msg', e)}); send a JSON object") from None
    if not isinstance(value, dict):
        raise bad(f"'{what}' must be a JSON object like {{\"where\": {{...}}}}, got {type(value).__name__}")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_filter(model: str, raw: dict, *, query: str = "") -> Filter:
    """A checked Filter for ``model`` (Dataset, Document, Instrument) from the decoded JSON."""
    known = {"where", "include", "limit", "skip", "offset", "order", "fields", "query"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise bad(f"unknown key '{unknown[0]}'; use where, include, limit, skip, order, fields or query")
    budget = _Budget()
    text = raw.get("query", "")
    if not isinstance(text, str):
        raise bad("'query' must be a string of search words")
    return Filter(
        model=model,
        where=parse_where(model, raw.get("where"), budget=budget),
        includes=_includes(model, raw.get("include"), budget, 1),
        limit=_count(raw, "limit"),
        skip=_count(raw, "skip") or _count(raw, "offset") or 0,
        order=_order(model, raw.get("order")),
        fields=_fields(model, raw.get("fields")),
        query=(query or text).strip()[:500],
    )


def _count(raw: dict, key: str) -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value.strip()[:12])
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise bad(f"'{key}' must be a whole number of at least 0, got {json.dumps(value)[:40]}")
    return min(value, MAX_SKIP)


def _order(model: str, value: Any) -> tuple[tuple[str, bool], ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise bad("'order' must be a string like \"title ASC\" or a list of them")
    out = []
    for item in items[:5]:
        m = ORDER_RE.match(item)
        if not m or m.group(1) not in FIELDS[model] or FIELDS[model][m.group(1)] == "any":
            raise bad(
                f"cannot order {model}s by '{item[:60]}'; use one of {_names(FIELDS[model])} with ASC or DESC"
            )
        out.append((m.group(1), (m.group(2) or "ASC").upper() == "DESC"))
    return tuple(out)


def _fields(model: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, dict):
        if not all(isinstance(v, bool) for v in value.values()):
            raise bad("'fields' as an object must map field names to true or false")
        if value and not any(value.values()):  # only exclusions: every other field
            value = [f for f in FIELDS[model] if f not in value]
        else:
            value = [k for k, v in value.items() if v]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad("'fields' must be a list of field names or an object of name: true")
    for name in value:
        if name not in FIELDS[model]:
            raise bad(f"{model} has no field '{name[:60]}'; use {_names(FIELDS[model])}")
    return tuple(value)


def _names(names: dict) -> str:
    return ", ".join(sorted(names))


def _includes(model: str, value: Any, budget: _Budget, depth: int) -> tuple[Include, ...]:
    if value is None:
        return ()
    if depth > MAX_INCLUDE_DEPTH:
        raise bad(f"includes are nested more than {MAX_INCLUDE_DEPTH} levels deep")
    items = value if isinstance(value, list) else [value]
    return tuple(_include(model, item, budget, depth) for item in items)


def _include(model: str, item: Any, budget: _Budget, depth: int) -> Include:
    budget.spend()
    relations = RELATIONS.get(model, {})
    if isinstance(item, str):
        item = {"relation": item}
    if not isinstance(item, dict):
        raise bad('each include must be a relation name or {"relation": name, "scope": {...}}')
    unknown = sorted(set(item) - {"relation", "scope"})
    if unknown:
        raise bad(f"unknown include key '{unknown[0][:60]}'; use relation and scope")
    name = item.get("relation")
    if not isinstance(name, str) or name not in relations:
        shown = name[:60] if isinstance(name, str) else json.dumps(name)[:60]
        choices = _names(relations) or "none"
        raise bad(f"{model} has no relation '{shown}'; it has: {choices}")
    target = relations[name]
    scope = item.get("scope") or {}
    if not isinstance(scope, dict):
        raise bad(f"the scope of '{name}' must be an object with where and include")
    unknown = sorted(set(scope) - {"where", "include", "limit", "skip", "fields", "order"})
    if unknown:
        raise bad(f"unknown scope key '{unknown[0][:60]}' in '{name}'; use where and include")
    where = parse_where(target, scope["where"], budget=budget, depth=depth) if "where" in scope else None
    return Include(
        relation=name,
        model=target,
        where=where,
        includes=_includes(target, scope.get("include"), budget, depth + 1),
        limit=_count(scope, "limit") or None,
        skip=_count(scope, "skip") or 0,
    )


def parse_where(model: str, value: Any, *, budget: _Budget | None = None, depth: int = 0) -> Where:
    """A checked where tree for ``model``; None or ``{}`` matches everything."""
    budget = budget or _Budget()
    if value is None:
        return MATCH_ALL
    if depth > MAX_DEPTH:
        raise bad(f"'and'/'or' are nested more than {MAX_DEPTH} levels deep")
    if not isinstance(value, dict):
        raise bad(f'a where clause must be an object like {{"title": "x"}}, got {json.dumps(value)[:60]}')
    if "variable" in value and model in ("Dataset", "Document"):
        return _parameter_form(model, value, budget)
    parts: list[Where] = []
    for key, item in value.items():
        budget.spend()
        if key in ("and", "or"):
            if not isinstance(item, list):
                raise bad(f"'{key}' takes a list of where clauses")
            parts.append(
                _group(model, key, tuple(parse_where(model, p, budget=budget, depth=depth + 1) for p in item))
            )
        elif key == "parameters" and model in ("Dataset", "Document"):
            inner = parse_where("Parameter", item, budget=budget, depth=depth + 1)
            parts.append(Has("parameters", "Parameter", inner))
        elif key == "query" and model in ("Dataset", "Document") and isinstance(item, dict):
            parts.append(_parameter_form(model, item, budget))
        elif key == "text":
            if not isinstance(item, str):
                raise bad("'text' takes a string")
            parts.append(Text(item[:500]))
        else:
            parts.append(_condition(model, key, item))
    return parts[0] if len(parts) == 1 else _group(model, "and", tuple(parts))


def _parameter_form(model: str, value: dict, budget: _Budget) -> Has:
    """``{"variable": name, "operator": op, "value": v, "unit": u}`` as a Has node."""
    unknown = sorted(set(value) - PARAMETER_FORM)
    if unknown:
        raise bad(
            f"unknown key '{unknown[0][:60]}' in a parameter query; use variable, operator, value, unit"
        )
    op = value.get("operator", "eq")
    if not isinstance(value.get("variable"), str) or not isinstance(op, str):
        raise bad("a parameter query needs 'variable' (a name) and 'operator' (like \"gt\")")
    where: dict[str, Any] = {"name": value["variable"], "value": {op: value.get("value")}}
    if value.get("unit") is not None:
        where["unit"] = value["unit"]
    return Has("parameters", "Parameter", parse_where("Parameter", where, budget=budget))


def _group(model: str, op: str, parts: tuple[Where, ...]) -> Group:
    """``Group(op, parts)``; a Parameter ``and`` with a known unit compares values in SI."""
    if model != "Parameter" or op != "and":
        return Group(op, parts)
    unit = next((p.value for p in parts if isinstance(p, Cond) and p.field == "unit" and p.op == "eq"), None)
    known = units.unit(unit) if isinstance(unit, str) else None
    if known is None:
        return Group(op, parts)
    return Group(op, tuple(_in_si(p, unit, known[2]) for p in parts))


def _in_si(part: Where, unit: str, dimension: str) -> Where:
    if not isinstance(part, Cond):
        return part
    if part.field == "unit" and part.op == "eq":
        return Cond("siUnit", "eq", dimension)
    if part.field != "value" or part.op in ("like", "nlike", "ilike", "nilike") or part.value is None:
        return part
    values = part.value if isinstance(part.value, tuple) else (part.value,)
    converted = []
    for v in values:
        number = units.number(v)
        si = units.to_si(number, unit) if number is not None else None
        if si is None:
            raise bad(f"the parameter value {json.dumps(v)[:40]} in '{unit}' is not a number")
        converted.append(si[0])
    if part.op == "eq":  # the same quantity converted by two routes may differ in the last bits
        low, high = sorted((converted[0] * (1 - 1e-9), converted[0] * (1 + 1e-9)))
        return Cond("siValue", "between", (low, high))
    return Cond("siValue", part.op, tuple(converted) if isinstance(part.value, tuple) else converted[0])


def _condition(model: str, name: str, spec: Any) -> Cond:
    kind = FIELDS[model].get(name)
    if kind is None:
        raise bad(f"{model} has no field '{name[:60]}'; use {_names(FIELDS[model])}, and, or, text")
    if isinstance(spec, dict):
        if len(spec) != 1:
            raise bad(f'give one operator for \'{name}\', like {{"{name}": {{"gt": 1}}}}')
        op, arg = next(iter(spec.items()))
        if op not in OPERATORS:
            raise bad(
                f"unknown operator '{str(op)[:40]}' for '{name}'; use one of {', '.join(sorted(OPERATORS))}"
            )
    else:
        op, arg = "eq", spec
    if op in ("between", "inq", "nin"):
        if not isinstance(arg, list) or (op == "between" and len(arg) != 2) or len(arg) > 100:
            size = "two values [low, high]" if op == "between" else "a list of at most 100 values"
            raise bad(f"'{op}' on '{name}' takes {size}")
        return Cond(name, op, tuple(_value(model, name, kind, op, a) for a in arg))
    if op in ("like", "nlike", "ilike", "nilike"):
        if not isinstance(arg, str) or kind not in ("string", "any"):
            raise bad(f"'{op}' needs a string pattern and a text field; '{name}' is {kind}")
        return Cond(name, op, arg[:500])
    return Cond(name, op, _value(model, name, kind, op, arg))


def _value(model: str, name: str, kind: str, op: str, value: Any) -> Any:
    """``value`` as the field's type: numbers from numeric strings, dates as aware UTC."""
    if value is None and op in ("eq", "neq"):
        return None
    what = f"'{name}' of {model}"
    if kind == "boolean":
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise bad(f"{what} is true or false, got {json.dumps(value)[:40]}")
        return value
    if kind == "number" or (kind == "any" and op in ("gt", "gte", "lt", "lte", "between")):
        return _number(what, value)
    if kind == "date":
        return _date(what, value)
    if kind == "any" and isinstance(value, int | float) and not isinstance(value, bool):
        return _number(what, value)
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise bad(f"{what} is compared with a string, got {json.dumps(value)[:40]}")
    return str(value)[:1000]


def _number(what: str, value: Any) -> float:
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise bad(f"{what} is compared with a number, got {json.dumps(value)[:40]}") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise bad(f"{what} is compared with a number, got {json.dumps(value)[:40]}")
    if abs(value) > 1e18:
        raise bad(f"{what}: {value} is out of range")
    return value


def _date(what: str, value: Any) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            if parsed.tzinfo is None:
                return parsed.replace(tzinfo=UTC)
            return parsed.astimezone(UTC)
        except (ValueError, OverflowError):
            pass
    raise bad(
        f"{what} is compared with an ISO 8601 date like 2020-01-31T00:00:00Z, got {json.dumps(value)[:40]}"
    )
