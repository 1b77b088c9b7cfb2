"""Facet counts from a columnar copy of the datasets' facet columns, kept per database.

Counting in SQL groups every row that passes the text once per facet (a materialised CTE and
nine GROUP BYs): on 100,000 datasets that costs 1.1 s of CPU for the landing page, 0.3-0.5 s
for two facets without words and for a word found in 30 % of the datasets (SQLite, measured
with ``benchmarks/search.py`` on a loaded 2-core machine). Here each facet column is one
integer array (a code per dataset), read once per catalogue version; a search then asks the
database only for what changes per query, the ids that match its words (and, for "my
datasets", the reader's), and counts with numpy: a mask per chosen facet, and per facet one
``bincount`` of the rows that pass every other facet. The same search takes a few ms.

The copy is valid for one value of the catalogue's write counter (``search_state.version``,
revision 0010, raised by triggers on every write a search reads), read *before* the rows, so a
write in between can only make the copy newer than its label and rebuilt once more. Time
enters only at counting: open or embargoed (and so the size and access facets) is computed
from the release dates at ``now``. A rebuild reads 100,000 rows in about 0.3 s; while writes
keep coming, a database is rebuilt at most once every ``REBUILD_SECONDS`` and counted in SQL
in between. Each index also keeps its terms' ranks as the database computes them
(``text_scores.py``: FTS5's bm25 or PostgreSQL's ``ts_rank``), the frequent ones scored in the
background once it is built, within the catalogue's ``configure``d budget. Without revision 0010
everything is counted in SQL (``search.count_facets``).

Values follow the SQL counts exactly: years of the UTC creation date, size buckets and access
of open datasets at ``now``, empty values not counted, technique signatures
(``technique_key``) counted and expanded to PaNET ancestors by the caller, and each analysis
template counting the open datasets it fits (``analysis_templates.fits_clause``, read per
version like the rest).
"""

from __future__ import annotations

import functools
import itertools
import threading
import time
import weakref
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import Integer, case, cast, extract, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from . import fts, panet, text_scores
from .analysis_templates import fits_clause
from .models import Dataset, Technique, search_state
from .search_filters import text_match
from .search_query import SIZE_BUCKETS, SearchQuery
from .template_models import AnalysisTemplate

PLAIN = {
    "data_type": Dataset.data_type,
    "field": Dataset.scientific_field,
    "facility": Dataset.facility,
    "instrument": Dataset.instrument,
}
REBUILD_SECONDS = 2.0
NEVER = np.inf  # release time of a dataset without a release date


@dataclass
class Coded:
    """One facet column: a code per dataset (-1: no value) and the value of each code."""

    codes: np.ndarray
    values: list[str]

    def mask(self, chosen: tuple[str, ...]) -> np.ndarray:
        picked = set(chosen)
        return among(self.codes, [i for i, v in enumerate(self.values) if v in picked], len(self.values))


def among(codes: np.ndarray, wanted: Any, size: int) -> np.ndarray:
    """Which ``codes`` (0 to ``size`` - 1, or -1) are ``wanted``: a lookup table, where
    ``np.isin`` sorts (0.6 against 0.1 ms on 100,000 rows)."""
    table = np.zeros(size + 1, dtype=bool)  # code -1 reads the last entry, never set
    table[np.asarray(wanted, dtype=np.int64)] = True
    return table[codes]


@dataclass
class FacetIndex:
    version: int
    ids: np.ndarray  # dataset ids, ascending
    columns: dict[str, Coded]  # PLAIN facets, year, technique signature
    bucket: np.ndarray  # size bucket index, whatever the access
    public: np.ndarray
    release: np.ndarray  # release time (epoch seconds), NEVER when none
    covers: tuple[np.ndarray, np.ndarray, list[str]] = (np.zeros(0), np.zeros(0), [])
    fits: dict[int, np.ndarray] = field(default_factory=dict)  # template id -> mask
    dialect: str = "sqlite"
    scores: tuple[int, float] = (text_scores.MAX_BYTES, text_scores.WARM_SHARE)  # budget, warm share
    words: text_scores.WordScores = field(init=False)  # terms' ranks, this version's

    def __post_init__(self) -> None:
        budget, warm_share = self.scores
        scorer = text_scores.scorer(self.dialect)
        self.words = text_scores.WordScores(self.version, self.ids, ~self.public, scorer, budget, warm_share)

    def open_at(self, now: datetime) -> np.ndarray:
        return self.public | (self.release <= now.timestamp())

    @functools.cached_property
    def by_term(self) -> tuple[np.ndarray, np.ndarray]:
        """The signatures covering each term: ``covers``' signature codes sorted by term, and
        where each term's run starts (``len(terms) + 1`` offsets)."""
        pair_sig, pair_term, terms = self.covers
        order = np.argsort(pair_term, kind="stable")
        return pair_sig[order], np.searchsorted(pair_term[order], np.arange(len(terms) + 1))

    @functools.cached_property
    def by_signature(self) -> np.ndarray:
        """Where each signature's run of ``covers`` pairs starts (they are in signature order)."""
        return np.searchsorted(self.covers[0], np.arange(len(self.columns["technique"].values) + 1))

    def mask_of(self, ids: Any) -> np.ndarray:
        """The rows of ``ids`` (ids not in the index are left out)."""
        wanted = ids if isinstance(ids, np.ndarray) else np.fromiter(ids, dtype=np.int64)
        at = np.searchsorted(self.ids, wanted)
        inside = at < len(self.ids)
        at = at[inside]
        mask = np.zeros(len(self.ids), dtype=bool)
        mask[at[self.ids[at] == wanted[inside]]] = True
        return mask


_indexes: weakref.WeakKeyDictionary[Engine, FacetIndex] = weakref.WeakKeyDictionary()
_built: weakref.WeakKeyDictionary[Engine, float] = weakref.WeakKeyDictionary()
_settings: weakref.WeakKeyDictionary[Engine, tuple[int, float]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def configure(engine: Engine, *, budget: int, warm_share: float) -> None:
    """The kept terms' budget (bytes; 0 keeps none) and the share of the datasets a term must
    be found in to be scored in advance (0: none), for the indexes of ``engine`` built from now
    on (``Catalogue.search_scores_mib``, ``Catalogue.search_warm_share``)."""
    if budget < 0 or not 0 <= warm_share <= 1:
        raise ValueError("the kept terms' budget is at least 0 and the warm share within 0 to 1")
    with _lock:
        _settings[engine] = (budget, warm_share)


def forget(engine: Engine, timeout: float = 10.0) -> None:
    """Drop the index of ``engine`` and stop its background scoring (before the engine is
    disposed of: a thread still scoring would lose its connection mid-query)."""
    with _lock:
        index = _indexes.pop(engine, None)
        _settings.pop(engine, None)
    if index is not None:
        index.words.stop()
        index.words.wait(timeout)


def _state(session: Session) -> tuple[int | None, bool]:
    """The catalogue's write version, and whether the session's transaction holds writes not
    committed yet: an index read then could hold rows that never commit, under a version
    another transaction may take (counted in SQL instead). One statement on PostgreSQL."""
    dialect = session.get_bind().dialect.name
    at = search_state.c.id == 1
    if dialect == "postgresql":
        row = session.execute(
            select(search_state.c.version, func.txid_current_if_assigned().is_not(None)).where(at)
        ).first()
        return (row[0], bool(row[1])) if row else (None, False)
    version = session.scalar(select(search_state.c.version).where(at))
    if dialect == "sqlite":  # Python's sqlite3 opens a transaction at the first write only
        return version, bool(session.connection().connection.dbapi_connection.in_transaction)
    return version, False


def current(session: Session) -> FacetIndex | None:
    """The index of ``session``'s database at its present version, built when needed; None
    without revision 0010, or while writes keep it from being rebuilt (count in SQL then)."""
    version, writing = _state(session)
    if version is None or writing:
        return None
    engine = session.get_bind()
    try:
        weakref.ref(engine)
    except TypeError:
        return None
    with _lock:
        index = _indexes.get(engine)
        if index is not None and index.version == version:
            return index
        if index is not None and time.monotonic() - _built.get(engine, 0.0) < REBUILD_SECONDS:
            return None
        _built[engine] = time.monotonic()
    index = build(session, version, _settings.get(engine))
    with _lock:
        _indexes[engine] = index
    index.words.warm(engine)
    return index


def _epoch(column: ColumnElement, dialect: str) -> ColumnElement:
    if dialect == "sqlite":
        return cast(func.strftime("%s", column), Integer)
    return extract("epoch", column)


def _year(column: ColumnElement, dialect: str) -> ColumnElement:
    if dialect == "sqlite":
        return cast(func.substr(column, 1, 4), Integer)
    return cast(extract("year", column), Integer)


def _coded(raw: list[Any]) -> Coded:
    values = [v for v in dict.fromkeys(raw) if v not in (None, "")]
    code = {v: i for i, v in enumerate(values)} | {None: -1, "": -1}
    return Coded(np.array([code[v] for v in raw], dtype=np.int32), [str(v) for v in values])


def build(session: Session, version: int, scores: tuple[int, float] | None = None) -> FacetIndex:
    """Read the facet columns of every dataset (one query, id order); ``scores``: the kept
    terms' budget and warm share (``configure``)."""
    dialect = session.get_bind().dialect.name
    bucket = case(
        *(
            (Dataset.size < high, i)
            for i, (_n, _l, _low, high) in enumerate(SIZE_BUCKETS)
            if high is not None
        ),
        else_=len(SIZE_BUCKETS) - 1,
    )
    query = select(
        Dataset.id,
        *PLAIN.values(),
        _year(Dataset.creation_date, dialect),
        Dataset.technique_key,
        bucket,
        Dataset.is_public,
        _epoch(Dataset.release_date, dialect),
    ).order_by(Dataset.id)
    rows = session.execute(query).all()
    cols = list(zip(*rows, strict=True)) if rows else [()] * 10
    names = [*PLAIN, "year", "technique"]
    release = np.array([NEVER if r is None else float(r) for r in cols[9]], dtype=np.float64)
    columns = {name: _coded(list(cols[i + 1])) for i, name in enumerate(names)}
    return FacetIndex(
        version=version,
        ids=np.array(cols[0], dtype=np.int64),
        columns=columns,
        bucket=np.array(cols[7], dtype=np.int8),
        public=np.array([bool(p) for p in cols[8]], dtype=bool),
        release=release,
        covers=_covers(session, columns["technique"].values),
        dialect=dialect,
        scores=scores or (text_scores.MAX_BYTES, text_scores.WARM_SHARE),
    )


def _covers(session: Session, signatures: list[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(signature code, term code) pairs: each set of terms with every term it counts for, its
    own and their broader ones, as ``search.technique_counts``; and the terms."""
    from .search import ancestors

    names = dict(session.execute(select(Technique.id, Technique.panet_id)).all())
    terms: dict[str, int] = {}
    covered = {
        str(i): frozenset(terms.setdefault(t, len(terms)) for t in ancestors(panet_id))
        for i, panet_id in names.items()
    }
    empty: frozenset[int] = frozenset()
    lists = [sorted(empty.union(*(covered.get(i, empty) for i in sig.split(",")))) for sig in signatures]
    sig_codes = np.repeat(np.arange(len(lists), dtype=np.int64), [len(x) for x in lists])
    term_codes = np.fromiter(itertools.chain.from_iterable(lists), dtype=np.int64, count=len(sig_codes))
    return sig_codes, term_codes, list(terms)


def _fits(session: Session, index: FacetIndex, template_id: int) -> np.ndarray:
    mask = index.fits.get(template_id)
    if mask is None:
        ids = session.scalars(select(Dataset.id).where(fits_clause(Dataset.id, template_id)))
        mask = index.fits[template_id] = index.mask_of(ids)
    return mask


def _chosen(
    session: Session, index: FacetIndex, facet: str, values: tuple[str, ...], is_open: np.ndarray
) -> np.ndarray:
    """The rows a facet's chosen values keep (as ``search_filters.filter_clause``)."""
    if facet in index.columns and facet != "technique":
        return index.columns[facet].mask(values)
    if facet == "size":
        wanted = [i for i, (name, *_rest) in enumerate(SIZE_BUCKETS) if name in values]
        return is_open & among(index.bucket, wanted, len(SIZE_BUCKETS))
    if facet == "access":
        if set(values) >= {"open", "embargoed"}:
            return np.ones(len(index.ids), dtype=bool)
        return is_open if "open" in values else ~is_open
    if facet == "technique":  # a set of terms counts for a term exactly when it has a narrower one
        chosen = {panet.lookup(v) or v for v in values}
        signatures = index.columns["technique"]
        sigs, starts = index.by_term
        hit = _runs(starts, [i for i, t in enumerate(index.covers[2]) if t in chosen])
        return among(signatures.codes, sigs[hit], len(signatures.values))
    # template: open datasets fitting one of the named templates
    named = session.scalars(select(AnalysisTemplate.id).where(AnalysisTemplate.name.in_(values)))
    fit = np.zeros(len(index.ids), dtype=bool)
    for template_id in named:
        fit |= _fits(session, index, template_id)
    return is_open & fit


def count(
    session: Session,
    index: FacetIndex,
    query: SearchQuery,
    now: datetime,
    base: np.ndarray | None,
    templates: list[tuple[int, str]],
) -> tuple[int, dict[str, dict[str, int]]]:
    """The total and per facet {value: count} (values as the SQL counts write them; techniques
    with their narrower terms' datasets), for the rows in ``base`` (None: all) and the chosen
    facets."""
    is_open = index.open_at(now)
    rows = np.ones(len(index.ids), dtype=bool) if base is None else base
    flags = {f: _chosen(session, index, f, v, is_open) for f, v in query.filters if v}
    found: dict[str, Any] = {}

    def passing(skip: str) -> Any:
        """The rows passing every chosen facet but ``skip`` (each set found once): their
        positions, or every row (reading a column by positions costs more than whole)."""
        skip = skip if skip in flags else ""
        if skip not in found:
            out = rows.copy()
            for f, mask in flags.items():
                if f != skip:
                    out &= mask
            at = np.flatnonzero(out)
            found[skip] = slice(None) if len(at) == len(out) else at
        return found[skip]

    raw: dict[str, dict[str, int]] = {}
    for name, coded in index.columns.items():
        if name != "technique":
            raw[name] = _tally(coded.codes[passing(name)], coded.values)
    at = passing("size")
    sizes = np.where(is_open[at], index.bucket[at], -1)
    raw["size"] = _tally(sizes, [name for name, *_rest in SIZE_BUCKETS])
    shown = is_open[passing("access")]
    opened = int(np.count_nonzero(shown))
    raw["access"] = {k: n for k, n in (("open", opened), ("embargoed", len(shown) - opened)) if n}
    at = passing("template")
    open_rows = is_open if isinstance(at, slice) else at[is_open[at]]
    raw["template"] = {}
    for template_id, name in templates:
        n = int(np.count_nonzero(_fits(session, index, template_id)[open_rows]))
        if n:
            raw["template"][name] = raw["template"].get(name, 0) + n
    sigs = index.columns["technique"].codes[passing("technique")]
    per_sig = np.bincount(sigs[sigs >= 0], minlength=len(index.columns["technique"].values))
    pair_sig, pair_term, terms = index.covers
    present = np.flatnonzero(per_sig)
    if len(present) < len(per_sig) // 2:  # only the pairs of the signatures found are added up
        pairs = _runs(index.by_signature, present)
        weights = np.repeat(per_sig[present], np.diff(index.by_signature)[present])
        per_term = np.bincount(pair_term[pairs], weights=weights, minlength=len(terms)) if terms else []
    else:
        per_term = np.bincount(pair_term, weights=per_sig[pair_sig], minlength=len(terms)) if terms else []
    raw["technique"] = {terms[i]: int(n) for i, n in enumerate(per_term) if n}
    everything = passing("")
    return len(index.ids) if isinstance(everything, slice) else len(everything), raw


def kept(
    session: Session, index: FacetIndex, query: SearchQuery, now: datetime, base: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """The rows in ``base`` (None: all) that pass every chosen facet, and the rows open at
    ``now`` (masks)."""
    is_open = index.open_at(now)
    rows = np.ones(len(index.ids), dtype=bool) if base is None else base.copy()
    for f, values in query.filters:
        if values:
            rows &= _chosen(session, index, f, values, is_open)
    return rows, is_open


def _runs(starts: np.ndarray, chosen: Any) -> np.ndarray:
    """The positions of runs ``chosen`` (run i: ``starts[i]`` to ``starts[i + 1]``), in order."""
    chosen = np.asarray(chosen, dtype=np.int64)
    first, lengths = starts[chosen], starts[chosen + 1] - starts[chosen]
    ends = np.cumsum(lengths)
    return np.repeat(first - ends + lengths, lengths) + np.arange(ends[-1] if len(ends) else 0)


def _tally(codes: np.ndarray, values: list[str]) -> dict[str, int]:
    counts = np.bincount(codes[codes >= 0], minlength=len(values)) if len(values) else np.zeros(0)
    return {values[i]: int(n) for i, n in enumerate(counts) if n}


def text_rows(session: Session, index: FacetIndex, q: str, now: datetime) -> np.ndarray | None:
    """The rows matching ``q``, as ``search_filters.text_condition`` finds them (an embargoed
    row through the columns it shows): from its terms' kept matches (``text_scores.py``), else
    from the FTS5 table's row ids alone (SQLite) or the matching ids (PostgreSQL); None when
    ``q`` has no terms or the database is neither."""
    terms = fts.parse_terms(q)
    dialect = session.get_bind().dialect.name
    if not terms or dialect not in ("sqlite", "postgresql"):
        return None
    match = fts.fts5_query(terms)
    if not match:
        return None
    scored = text_scores.lookup(session, index.words, q)
    if scored is not None:  # every term's matches kept with its scores
        return text_scores.matched(scored, len(index.ids), index.open_at(now))
    if dialect == "postgresql":
        found = text_match(session, "datasets", q, ranked=False, now=now)
        rows = index.mask_of(session.scalars(select(found.c.id))) if found is not None else None
        if rows is not None:
            text_scores.ask_if_broad(session, index.words, q, int(np.count_nonzero(rows)))
        return rows
    cursor = session.connection().connection.cursor()

    def found_ids(expression: str) -> np.ndarray:  # one string of ids: no Python object per row
        cursor.execute(
            "SELECT group_concat(rowid) FROM datasets_fts WHERE datasets_fts MATCH ?", (expression,)
        )
        ids = cursor.fetchone()[0] or ""
        return index.mask_of(np.array(ids.split(",") if ids else [], dtype=np.int64))

    try:
        full = found_ids(match)
        text_scores.ask_if_broad(session, index.words, q, int(np.count_nonzero(full)))
        if not fts.EMBARGOED_HIDDEN["datasets"]:
            return full
        shown, is_open = found_ids(fts.fts5_visible(match, "datasets")), index.open_at(now)
    finally:
        cursor.close()
    if not any(t.exclude for t in terms):
        return full & (is_open | shown)
    return (is_open & full) | (~is_open & shown)


def conditions_met(session: Session, index: FacetIndex, condition: ColumnElement | None) -> np.ndarray | None:
    """The rows meeting ``condition`` (text, "my datasets"), asked of the database; None: all."""
    if condition is None:
        return None
    return index.mask_of(session.scalars(select(Dataset.id).where(condition)))
