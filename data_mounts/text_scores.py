"""Each search term's (row, rank) pairs as the database ranks them, kept per catalogue version.

On both databases the rank of a row for a query is the sum of its terms' ranks, added in the
query's order: SQLite's FTS5 ``bm25`` is such a sum by its definition (``fts5_scores.py``), and
PostgreSQL's rank is defined as one (``search_filters.pg_rank``, ``tsvector_scores.py``); a row
matches the terms ANDed when it matches each. So a term's (row, rank) pairs, asked of the
database once, rank every search made of that term with others, bit for bit
(``tests/data_mounts/test_text_scores.py`` compares them on both). Nothing is matched or scored
here: the pairs are the database's own, kept as numpy arrays.

Why: scoring in the database costs about 1.6 us a match in FTS5 and more in PostgreSQL (a word
found in 30,000 of 100,000 datasets: 48 ms in FTS5 against 12 ms to list its matches; about
100 ms to list and as much to rank in PostgreSQL), paid by every search of a broad word before
any facet narrows it. With the pairs kept, such a search intersects and sums arrays (under a
millisecond) and finds its matching rows the same way.

The pairs are kept beside the facet index (``facet_index.py``): valid for its catalogue write
version, dropped with it, at most ``budget`` bytes per catalogue (``Catalogue.search_scores_mib``,
least recently used first). Two arrays per term: the rank through every column (for open
datasets) and through the columns an embargoed dataset shows, the latter for the rows not
public (only they can be embargoed, at any time until the next write). When the index is
built, a background thread asks the database for the terms found in at least ``warm_share`` of
the datasets (``Catalogue.search_warm_share``), most frequent first, so the first search of a
broad word does not pay; a search whose terms are not all kept is matched and ranked by the
database as before, and when it matched at least that share too, its terms are scored in the
background for the next. The thread runs at the lowest priority (searches made while it
scored took 28-37 ms wall p50 at normal priority, 16-24 ms at the lowest, SQLite, 2 loaded
cores; PostgreSQL's scoring runs in its server, whose priority it cannot lower), reads the
catalogue's write counter before and after each term, and stops once it has moved (the index
is then rebuilt, with its own terms). Searches never wait for it.

What a term is keyed by, how its pairs are read and which terms are frequent is the scorer's
(``Scorer``: ``fts5_scores.Fts5Words``, ``tsvector_scores.TsvectorWords``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from sqlalchemy.engine import Engine
from sqlalchemy.pool import StaticPool

from . import fts

MAX_BYTES = 128 * 2**20  # kept pairs per catalogue (100,000 datasets: about 40 MiB warm)
WARM_SHARE = 0.02  # terms found in at least this share of the datasets are scored in advance
MAX_WANTED = 256  # terms missed by searches waiting to be scored

log = logging.getLogger(__name__)
Pairs = tuple[np.ndarray, np.ndarray]  # (dataset ids, ranks)


class Scorer(Protocol):
    """How one database keys, scores and lists the frequent terms."""

    def keys(self, session: Any, terms: list[fts.Term]) -> list[tuple[Hashable, str]] | None:
        """(key, text) per term of a query; None when it cannot be ranked from kept terms."""

    def begin(self, cursor: Any, hidden: np.ndarray) -> None:
        """Prepare the scoring connection (``hidden``: ids of the rows not public)."""

    def end(self, cursor: Any) -> None:
        """Undo ``begin``."""

    def score(self, cursor: Any, key: Hashable, text: str) -> tuple[Pairs, Pairs | None]:
        """The term's pairs through every column, and through the shown ones for the rows not
        public (None: the full pairs of those rows)."""

    def frequent(self, cursor: Any, min_rows: int) -> list[tuple[Hashable, str]]:
        """(key, text) of the terms found in at least ``min_rows`` rows, most frequent first."""


def scorer(dialect: str) -> Scorer | None:
    """The scorer of a database (None: its searches are ranked in SQL)."""
    if dialect == "sqlite":
        from .fts5_scores import Fts5Words

        return Fts5Words()
    if dialect == "postgresql":
        from .tsvector_scores import TsvectorWords

        return TsvectorWords()
    return None


@dataclass(frozen=True)
class Scored:
    """A term's matches: positions in the facet index (ascending) and the rank of each."""

    rows: np.ndarray
    ranks: np.ndarray

    @property
    def nbytes(self) -> int:
        return self.rows.nbytes + self.ranks.nbytes


Key = tuple[Hashable, bool]  # (the scorer's key, through the shown columns only)
WARM = ("", "", False)  # a worker's job: read the frequent terms


class WordScores:
    """The scored terms of one facet index (one catalogue version)."""

    def __init__(
        self,
        version: int,
        ids: np.ndarray,
        hidden: np.ndarray,
        scorer: Scorer | None = None,
        budget: int = MAX_BYTES,
        warm_share: float = WARM_SHARE,
    ) -> None:
        self.version, self.ids, self.scorer = version, ids, scorer
        self.budget, self.warm_share = budget, warm_share
        self.hidden = hidden  # rows that are not public: the only ones an embargo can hide
        self._entries: OrderedDict[Key, Scored] = OrderedDict()
        self._bytes = 0
        self._wanted: OrderedDict[Hashable, str] = OrderedDict()  # key -> text
        self._frequent: list[tuple[Hashable, str]] = []
        self._warming = False  # the frequent terms are still to be read
        self._worker: threading.Thread | None = None
        self._stopped = False
        self._lock = threading.Lock()
        self.spent = 0.0  # seconds of CPU the background scoring took
        self.elapsed = 0.0  # seconds it ran
        self.idle = threading.Event()
        self.idle.set()

    # lookups -----------------------------------------------------------------------------

    def get(self, key: Key) -> Scored | None:
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
            return found

    def put(self, key: Key, scored: Scored, *, evict: bool = True) -> bool:
        """Keep ``scored``; without ``evict``, only if it fits in what is left of the budget."""
        with self._lock:
            if key in self._entries or scored.nbytes > self.budget:
                return key in self._entries
            while self._bytes + scored.nbytes > self.budget and evict and self._entries:
                self._bytes -= self._entries.popitem(last=False)[1].nbytes
            if self._bytes + scored.nbytes > self.budget:
                return False
            self._entries[key] = scored
            self._bytes += scored.nbytes
            return True

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    # scoring ---------------------------------------------------------------------------------

    def positions(self, pairs: Pairs) -> Scored:
        """(id, rank) pairs as positions in the index (ids not in it left out), ascending."""
        ids, ranks = pairs
        order = np.argsort(ids, kind="stable")
        ids, ranks = ids[order], ranks[order]
        at = np.minimum(np.searchsorted(self.ids, ids), max(len(self.ids) - 1, 0))
        inside = self.ids[at] == ids if len(self.ids) else np.zeros(len(ids), dtype=bool)
        return Scored(at[inside].astype(np.int32), ranks[inside].astype(np.float64, copy=True))

    def score(self, cursor: Any, key: Hashable, text: str) -> tuple[Scored, Scored]:
        """A term's (full, shown) scores, asked of the database through the scorer."""
        assert self.scorer is not None
        full_pairs, shown_pairs = self.scorer.score(cursor, key, text)
        full = self.positions(full_pairs)
        if shown_pairs is not None:
            return full, self.positions(shown_pairs)
        keep = self.hidden[full.rows]
        return full, Scored(full.rows[keep], full.ranks[keep])

    def want(self, engine: Engine, words: list[tuple[Hashable, str]]) -> None:
        """Score ``words`` (key, text) in the background for the next search."""
        with self._lock:
            for key, text in words:
                if len(self._wanted) < MAX_WANTED:
                    self._wanted.setdefault(key, text)
        self._start(engine)

    def warm(self, engine: Engine) -> None:
        """Score the terms found in at least ``warm_share`` of the datasets, in the background."""
        if self.warm_share <= 0:
            return
        with self._lock:
            self._warming = True
        self._start(engine)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            self._wanted.clear()
            self._frequent, self._warming = [], False

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until no term is being scored (tests, benchmarks); False on timeout."""
        return self.idle.wait(timeout)

    def _start(self, engine: Engine) -> None:
        if self.scorer is None or self.budget <= 0 or not background_allowed(engine):
            return
        with self._lock:
            if self._worker is not None or self._stopped:
                return
            self.idle.clear()
            self._worker = threading.Thread(target=self._run, args=(engine,), name="word-scores", daemon=True)
            self._worker.start()

    def _next(self) -> tuple[Hashable, str, bool] | None:
        """The next term to score: searches' first, then (once read) the frequent ones; None
        when done. ``WARM``: read the frequent terms first."""
        with self._lock:
            while self._wanted:
                key, text = self._wanted.popitem(last=False)
                if not self._has(key):
                    return key, text, True
            if self._warming:
                self._warming = False
                return WARM
            while self._frequent:
                key, text = self._frequent.pop()
                if not self._has(key):
                    return key, text, False
            self._worker = None  # a term wanted from now on starts another thread
            return None

    def _has(self, key: Hashable) -> bool:
        return (key, False) in self._entries and (key, True) in self._entries

    def _run(self, engine: Engine) -> None:
        began, began_wall = time.thread_time(), time.monotonic()
        with contextlib.suppress(AttributeError, OSError):  # Linux: a nice value per thread
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        assert self.scorer is not None
        try:
            with engine.connect() as conn:
                raw = conn.connection.dbapi_connection
                cursor = raw.cursor()
                try:
                    self.scorer.begin(cursor, self.ids[self.hidden])
                    raw.commit()
                    self._work(cursor, raw)
                finally:
                    with contextlib.suppress(Exception):  # the connection may be gone
                        raw.rollback()
                        self.scorer.end(cursor)
                        raw.commit()
                        cursor.close()
        except Exception as e:  # the database went away, or refused: searches rank in SQL
            log.warning("scoring search terms stopped (%s); searches are ranked by the database", e)
            self.stop()
        finally:
            with self._lock:
                self.spent += time.thread_time() - began
                self.elapsed += time.monotonic() - began_wall
                if self._worker is threading.current_thread():  # it failed
                    self._worker = None
                if self._worker is None:
                    self.idle.set()

    def _work(self, cursor: Any, raw: Any) -> None:
        assert self.scorer is not None
        while (job := self._next()) is not None:
            if job is WARM:
                frequent = self.scorer.frequent(cursor, max(1, int(self.warm_share * len(self.ids))))
                raw.commit()
                with self._lock:
                    self._frequent = list(reversed(frequent))  # popped from the end
                continue
            key, text, asked = job
            if _version(cursor) != self.version:
                self.stop()
                return
            full, shown = self.score(cursor, key, text)
            if _version(cursor) != self.version:  # a write in between: the scores may be newer
                self.stop()
                return
            raw.commit()  # no transaction held open between terms
            kept = self.put((key, False), full, evict=asked) and self.put((key, True), shown, evict=asked)
            if not kept and not asked:  # the budget is full: no more frequent terms
                with self._lock:
                    self._frequent = []


def background_allowed(engine: Engine) -> bool:
    """Terms are scored in a thread of its own on an SQLite file or a PostgreSQL server (an
    SQLite database in memory has one connection, which the thread would share)."""
    if engine.dialect.name == "sqlite":
        return not isinstance(engine.pool, StaticPool)
    return engine.dialect.name == "postgresql"


def _version(cursor: Any) -> int | None:
    cursor.execute("SELECT version FROM search_state WHERE id = 1")
    row = cursor.fetchone()
    return row[0] if row else None


# searches ------------------------------------------------------------------------------------


def _terms(session: Any, words: WordScores, q: str) -> list[tuple[Hashable, str]] | None:
    """(key, text) of each term of ``q`` that the scorer can keep; None for a query it cannot
    rank from kept terms (left to the database)."""
    terms = fts.parse_terms(q)
    if not terms or words.scorer is None:
        return None
    return words.scorer.keys(session, terms)


def lookup(session: Any, words: WordScores, q: str) -> list[tuple[Scored, Scored]] | None:
    """Each term's (full, shown) scores when all are kept; None otherwise (a term the scorer
    cannot keep, or one not scored yet)."""
    keys = _terms(session, words, q)
    if keys is None:
        return None
    found = [(words.get((k, False)), words.get((k, True))) for k, _t in keys]
    if any(a is None or b is None for a, b in found):
        return None
    return found  # type: ignore[return-value]


def ask_if_broad(session: Any, words: WordScores, q: str, matches: int) -> None:
    """Score in the background the terms of a query the database has just matched in
    ``matches`` rows, when that is at least ``warm_share`` of them (ranking fewer in the
    database costs a few ms; the thread would take a core from the searches meanwhile)."""
    if words.warm_share <= 0 or matches < words.warm_share * len(words.ids):
        return
    keys = _terms(session, words, q)
    missing = [(k, t) for k, t in keys or () if words.get((k, False)) is None or words.get((k, True)) is None]
    if missing:
        words.want(session.get_bind(), missing)


def combined(parts: list[Scored]) -> Scored:
    """The rows every part matches, ranked as the database ranks the terms ANDed in this order."""
    rows = parts[0].rows
    for part in parts[1:]:
        rows = np.intersect1d(rows, part.rows, assume_unique=True)
    ranks = parts[0].ranks[np.searchsorted(parts[0].rows, rows)]
    for part in parts[1:]:
        ranks = ranks + part.ranks[np.searchsorted(part.rows, rows)]
    return Scored(rows, ranks)


def matched(found: list[tuple[Scored, Scored]], n: int, is_open: np.ndarray) -> np.ndarray:
    """The rows the query matches (as ``facet_index.text_rows``): an open row through every
    column, an embargoed one through those it shows."""
    full = np.zeros(n, dtype=bool)
    full[combined([f for f, _s in found]).rows] = True
    shown = np.zeros(n, dtype=bool)
    shown[combined([s for _f, s in found]).rows] = True
    return (is_open & full) | (~is_open & shown)  # a phrase may match what a row shows only


def ranked(
    found: list[tuple[Scored, Scored]],
    ids: np.ndarray,
    kept: np.ndarray,
    is_open: np.ndarray,
    start: int,
    count: int,
) -> list[int]:
    """Ids ``start`` to ``start + count`` of the ``kept`` rows in rank order, then id: an open
    row ranked through every column, an embargoed one through those it shows."""
    rows, ranks = [], []
    for scored, wanted in (
        (combined([f for f, _s in found]), kept & is_open),
        (combined([s for _f, s in found]), kept & ~is_open),
    ):
        take = wanted[scored.rows]
        rows.append(scored.rows[take])
        ranks.append(scored.ranks[take])
    at, rank = np.concatenate(rows), np.concatenate(ranks)
    end = start + count
    if len(rank) > end > 0:  # the rows up to the page's last rank (ties included), then sorted
        chosen = rank <= np.partition(rank, end - 1)[end - 1]
        at, rank = at[chosen], rank[chosen]
    order = np.lexsort((ids[at], rank))[start:end]
    return [int(i) for i in ids[at[order]]]
