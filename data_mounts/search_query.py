"""A search of the catalogue as plain values: parsed from a request, written back into a URL.

The URL holds the whole query (text, facet values, sort, page), so a search page is a
permalink and a facet link is the same query with one value toggled. Every bad parameter
raises PanbinderError (400) whose message says what to change; unknown parameters are ignored.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass

from panbinder.errors import PanbinderError

from . import panet
from .models import DATA_TYPES

MB, GB, TB = 10**6, 10**9, 10**12
# size facet: (value, label, lower bound, upper bound); bounds in bytes, upper excluded
SIZE_BUCKETS = (
    ("small", "under 100 MB", 0, 100 * MB),
    ("medium", "100 MB to 10 GB", 100 * MB, 10 * GB),
    ("large", "10 GB to 1 TB", 10 * GB, TB),
    ("huge", "1 TB and more", TB, None),
)
ACCESS = ("open", "embargoed")
FACETS = ("template", "data_type", "field", "technique", "facility", "instrument", "year", "size", "access")
FACET_LABELS = {
    "template": "Analysis template",
    "data_type": "Data type",
    "field": "Scientific field",
    "technique": "Technique",
    "facility": "Facility",
    "instrument": "Instrument",
    "year": "Year",
    "size": "Size",
    "access": "Access",
}
DATASET_SORTS = ("relevance", "newest", "oldest", "title", "largest", "views", "launches")
PUBLICATION_SORTS = ("relevance", "newest", "oldest", "title", "views", "launches")
PER_PAGE = (10, 20, 50, 100)
MAX_PAGE = 1000
MAX_VALUES = 20  # values of one facet in one query
MAX_VALUE_LENGTH = 255
MAX_Q = 500

Getter = Callable[[str], list[str]]
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TEMPLATE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


@dataclass(frozen=True)
class SearchQuery:
    q: str = ""
    filters: tuple[tuple[str, tuple[str, ...]], ...] = ()
    sort: str = ""
    page: int = 1
    per_page: int = 20
    mine: bool = False

    def selected(self, facet: str) -> tuple[str, ...]:
        return dict(self.filters).get(facet, ())

    @property
    def order(self) -> str:
        """The sort in effect: relevance for a text search, else newest first."""
        return self.sort or ("relevance" if self.q.strip() else "newest")

    def params(self) -> list[tuple[str, str]]:
        """The query as URL parameters (defaults left out), in a stable order."""
        out = [("q", self.q)] if self.q else []
        for facet in FACETS:
            out += [(facet, v) for v in self.selected(facet)]
        if self.mine:
            out.append(("mine", "1"))
        if self.sort:
            out.append(("sort", self.sort))
        if self.per_page != 20:
            out.append(("per_page", str(self.per_page)))
        if self.page != 1:
            out.append(("page", str(self.page)))
        return out

    def toggled(self, facet: str, value: str) -> SearchQuery:
        """This query with ``value`` of ``facet`` added or removed, back on page 1."""
        chosen = self.selected(facet)
        chosen = tuple(v for v in chosen if v != value) if value in chosen else (*chosen, value)
        filters = tuple((f, chosen if f == facet else self.selected(f)) for f in FACETS)
        return dataclasses.replace(self, filters=tuple((f, v) for f, v in filters if v), page=1)

    def at_page(self, page: int) -> SearchQuery:
        return dataclasses.replace(self, page=page)


def _bad(name: str, problem: str) -> PanbinderError:
    return PanbinderError(f"'{name}' {problem}", reason="bad_search", status_code=400)


def _number(get: Getter, name: str, default: int, top: int) -> int:
    values = get(name)
    if not values or values[-1] == "":
        return default
    raw = values[-1].strip()
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9 or not 1 <= int(raw) <= top:
        raise _bad(name, f"must be a whole number from 1 to {top}, got {raw[:40]!r}.")
    return int(raw)


def _clean(value: str) -> str:
    """Control characters (NUL included, which PostgreSQL refuses in text) become spaces."""
    return _CONTROL.sub(" ", value).strip()


def _facet_values(get: Getter, facet: str) -> tuple[str, ...]:
    values = tuple(dict.fromkeys(_clean(v) for v in get(facet) if _clean(v)))
    if len(values) > MAX_VALUES:
        raise _bad(facet, f"has {len(values)} values; choose at most {MAX_VALUES}.")
    for v in values:
        if len(v) > MAX_VALUE_LENGTH:
            raise _bad(facet, f"values must be at most {MAX_VALUE_LENGTH} characters.")
    if facet == "data_type":
        wrong = [v for v in values if v not in DATA_TYPES]
        if wrong:
            raise _bad(facet, f"must be one of {', '.join(DATA_TYPES)}, got {wrong[0]!r}.")
    elif facet == "size":
        known = [b[0] for b in SIZE_BUCKETS]
        if any(v not in known for v in values):
            raise _bad(facet, f"must be one of {', '.join(known)}.")
    elif facet == "access":
        if any(v not in ACCESS for v in values):
            raise _bad(facet, "must be open or embargoed.")
    elif facet == "template":
        if any(not _TEMPLATE_NAME.match(v) for v in values):
            raise _bad(facet, "must be a template name: lower-case letters, digits and '-'.")
    elif facet == "year":
        if any(not (v.isascii() and v.isdigit() and len(v) == 4 and 1000 <= int(v) <= 9998) for v in values):
            raise _bad(facet, "must be a year like 2024.")
    elif facet == "technique":
        found = []
        for v in values:
            term = panet.lookup(v)
            if term is None or panet.label(term) is None:
                raise _bad(facet, f"{v!r} is not a PaNET technique; use an id like PaNET01188 or a label.")
            found.append(term)
        values = tuple(dict.fromkeys(found))
    return values


def parse(get: Getter, *, sorts: tuple[str, ...] = DATASET_SORTS, facets=FACETS) -> SearchQuery:
    """A SearchQuery from request arguments (``get(name)`` gives all values of ``name``)."""
    qs = get("q")
    q = " ".join(_clean(qs[-1] if qs else "").split())
    if len(q) > MAX_Q:
        raise _bad("q", f"is longer than {MAX_Q} characters; shorten the search.")
    sort = (get("sort") or [""])[-1].strip()
    if sort and sort not in sorts:
        raise _bad("sort", f"must be one of {', '.join(sorts)}, got {sort[:40]!r}.")
    per_page = _number(get, "per_page", 20, max(PER_PAGE))
    page = _number(get, "page", 1, MAX_PAGE)
    mine_raw = (get("mine") or [""])[-1].strip().lower()
    if mine_raw not in ("", "0", "1", "true", "false"):
        raise _bad("mine", "must be 1 or 0.")
    filters = tuple((f, v) for f in facets if (v := _facet_values(get, f)))
    return SearchQuery(q, filters, sort, page, per_page, mine_raw in ("1", "true"))
