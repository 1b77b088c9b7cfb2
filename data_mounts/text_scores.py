"""Each word's bm25 scores as SQLite's FTS5 computes them, kept per catalogue version.

FTS5's ``bm25`` is a sum over the query's phrases, added in the query's order, of one term per
phrase: the phrase's idf times its column-weighted frequency in the row, saturated by the row's
length. The idf, the average length and the weights are the table's, whatever else the query
holds, and a row matches ``"a" AND "b"`` when it matches both. So FTS5's rank of a row for
``"a" AND "b"`` is exactly its rank for ``"a"`` plus its rank for ``"b"`` (the same floating
point additions in the same order; ``tests/data_mounts/test_text_scores.py`` compares them),
and a word's (row, rank) pairs, asked of FTS5 once, rank every search made of that word with
others. Nothing is matched or scored here: the pairs are FTS5's own, kept as numpy arrays.

Why: scoring inside FTS5 costs about 1.6 us a match (a word found in 30,000 of 100,000 datasets:
48 ms, against 12 ms to list its matches; SQLite 3.40), paid by every search of a broad word
before any facet narrows it. With the pairs kept, such a search intersects and sums arrays
(under a millisecond) and finds its matching rows the same way, without asking FTS5 again.

The pairs are kept beside the facet index (``facet_index.py``): valid for its catalogue write
version, dropped with it, at most ``MAX_BYTES`` per catalogue (least recently used first). Two
arrays per word: the rank through every column (for open datasets) and through the columns an
embargoed dataset shows (``fts.fts5_visible``), the latter for the rows not public (only they can
be embargoed, at any time until the next write). When the index is built, a background thread
asks FTS5 for the words found in at least ``WARM_SHARE`` of the datasets (read from the index's
own vocabulary, ``fts5vocab``), most frequent first, so the first search of a broad word does
not pay; a search whose words are not all kept is matched and ranked by FTS5 as before, and
when it matched at least that share too, its words are scored in the background for the next.
The thread runs at the lowest priority (searches made while it scored took 28-37 ms wall p50 at
normal priority, 16-24 ms at the lowest, 2 loaded cores), reads the catalogue's write counter before and after each word, and stops
once it has moved (the index is then rebuilt, with its own words). Searches never wait
for it. Phrases are kept as one entry (a phrase is one FTS5 phrase); prefixes and excluded
words always go through FTS5.

Words are keyed by their tokens as FTS5 makes them (``tokens``, with the catalogue's own
tokenizer in a table in memory), so "Structures" finds the scores kept for "structur".
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import sqlite3
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy.engine import Engine
from sqlalchemy.pool import StaticPool

from . import fts

MAX_BYTES = 128 * 2**20  # kept pairs per catalogue (100,000 datasets: about 40 MiB warm)
WARM_SHARE = 0.02  # words found in at least this share of the datasets are scored in advance
MAX_WANTED = 256  # words missed by searches waiting to be scored
TABLE = "datasets"
HIDDEN_ROWS = "temp.search_hidden_rows"  # the rows not public, in the scoring connection

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scored:
    """A word's matches: positions in the facet index (ascending) and FTS5's bm25 for each."""

    rows: np.ndarray
    ranks: np.ndarray

    @property
    def nbytes(self) -> int:
        return self.rows.nbytes + self.ranks.nbytes


Key = tuple[tuple[str, ...], bool]  # (tokens, through the shown columns only)
WARM = ((), "", False)  # a worker's job: read the frequent words


class WordScores:
    """The scored words of one facet index (one catalogue version)."""

    def __init__(self, version: int, ids: np.ndarray, hidden: np.ndarray, budget: int = MAX_BYTES) -> None:
        self.version, self.ids, self.budget = version, ids, budget
        self.hidden = hidden  # rows that are not public: the only ones an embargo can hide
        self._entries: OrderedDict[Key, Scored] = OrderedDict()
        self._bytes = 0
        self._wanted: OrderedDict[tuple[str, ...], str] = OrderedDict()  # tokens -> text
        self._frequent: list[tuple[tuple[str, ...], str]] = []  # (token, a word making it)
        self._warming = False  # the frequent words are still to be read
        self._worker: threading.Thread | None = None
        self._stopped = False
        self._lock = threading.Lock()
        self.tokenizer: str | None = None
        self.spent = 0.0  # seconds of CPU the background scoring took
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

    def score(self, cursor: Any, text: str, visible: bool) -> Scored:
        """FTS5's (row, bm25) pairs for the one phrase ``text``, through every column or, with
        ``visible``, through the shown ones for the rows not public."""
        match = fts.fts5_query([fts.Term(text)])
        weights = ", ".join(str(w) for w in fts.SQLITE_TABLES[TABLE][1])
        sql = f"SELECT rowid, bm25({TABLE}_fts, {weights}) FROM {TABLE}_fts WHERE {TABLE}_fts MATCH ?"
        args: tuple = (fts.fts5_visible(match, TABLE) if visible else match,)
        if visible:  # only the rows not public (``+``: one MATCH, not one per row): 2 s against
            # 3.9 s for the frequent words of 100,000 datasets
            sql += f" AND +rowid IN {HIDDEN_ROWS}"
        pairs = np.array(cursor.execute(sql, args).fetchall(), dtype=np.float64).reshape(-1, 2)
        ids = pairs[:, 0].astype(np.int64)
        at = np.minimum(np.searchsorted(self.ids, ids), max(len(self.ids) - 1, 0))
        inside = self.ids[at] == ids if len(self.ids) else np.zeros(len(ids), dtype=bool)
        return Scored(at[inside].astype(np.int32), pairs[inside, 1].copy())

    def shown(self, cursor: Any, text: str, full: Scored) -> Scored:
        """``score(cursor, text, True)``, taken from ``full`` (the word's rank through every
        column) when no row holds the word in a hidden column: FTS5 then finds the same
        instances in the same rows, so the same idf and ranks, bit for bit (the benchmark's
        frequent words of 100,000 datasets: 0.3 s against 2.4 s)."""
        hidden = fts.EMBARGOED_HIDDEN[TABLE]
        inside = f"{{{' '.join(hidden)}}} : ({fts.fts5_query([fts.Term(text)])})"
        sql = f"SELECT 1 FROM {TABLE}_fts WHERE {TABLE}_fts MATCH ? LIMIT 1"
        if hidden and cursor.execute(sql, (inside,)).fetchone() is not None:
            return self.score(cursor, text, True)
        keep = self.hidden[full.rows]
        return Scored(full.rows[keep], full.ranks[keep])

    def want(self, engine: Engine, words: list[tuple[tuple[str, ...], str]]) -> None:
        """Score ``words`` (tokens, text) in the background for the next search."""
        with self._lock:
            for key, text in words:
                if len(self._wanted) < MAX_WANTED:
                    self._wanted.setdefault(key, text)
        self._start(engine)

    def warm(self, engine: Engine) -> None:
        """Score the words found in at least ``WARM_SHARE`` of the datasets, in the background."""
        with self._lock:
            self._warming = True
        self._start(engine)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            self._wanted.clear()
            self._frequent, self._warming = [], False

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until no word is being scored (tests, benchmarks); False on timeout."""
        return self.idle.wait(timeout)

    def _start(self, engine: Engine) -> None:
        if not background_allowed(engine):
            return
        with self._lock:
            if self._worker is not None or self._stopped:
                return
            self.idle.clear()
            self._worker = threading.Thread(target=self._run, args=(engine,), name="word-scores", daemon=True)
            self._worker.start()

    def _next(self) -> tuple[tuple[str, ...], str, bool] | None:
        """The next word to score: searches' first, then (once read) the frequent ones; None
        when done. ``WARM``: read the frequent words first."""
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
            self._worker = None  # a word wanted from now on starts another thread
            return None

    def _has(self, key: tuple[str, ...]) -> bool:
        return (key, False) in self._entries and (key, True) in self._entries

    def _run(self, engine: Engine) -> None:
        began = time.thread_time()
        with contextlib.suppress(AttributeError, OSError):  # Linux: a nice value per thread
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        try:
            with engine.connect() as conn:
                raw = conn.connection.dbapi_connection
                cursor = raw.cursor()
                try:
                    cursor.execute(f"CREATE TABLE IF NOT EXISTS {HIDDEN_ROWS} (id INTEGER PRIMARY KEY)")
                    cursor.execute(f"DELETE FROM {HIDDEN_ROWS}")
                    cursor.executemany(
                        f"INSERT INTO {HIDDEN_ROWS} VALUES (?)", ((int(i),) for i in self.ids[self.hidden])
                    )
                    raw.commit()
                    self._work(cursor)
                finally:
                    cursor.execute(f"DROP TABLE IF EXISTS {HIDDEN_ROWS}")
                    raw.commit()
                    cursor.close()
        except Exception:
            log.exception("scoring words for the search failed; searches rank them in FTS5")
            self.stop()
        finally:
            with self._lock:
                self.spent += time.thread_time() - began
                if self._worker is threading.current_thread():  # it failed
                    self._worker = None
                if self._worker is None:
                    self.idle.set()

    def _work(self, cursor: Any) -> None:
        while (job := self._next()) is not None:
            if job is WARM:
                self._read_frequent(cursor)
                continue
            key, text, asked = job
            if _version(cursor) != self.version:
                self.stop()
                return
            full = self.score(cursor, text, False)
            shown = self.shown(cursor, text, full)
            if _version(cursor) != self.version:  # a write in between: the scores may be newer
                self.stop()
                return
            kept = self.put((key, False), full, evict=asked) and self.put((key, True), shown, evict=asked)
            if not kept and not asked:  # the budget is full: no more frequent words
                with self._lock:
                    self._frequent = []

    def _read_frequent(self, cursor: Any) -> None:
        frequent = frequent_words(cursor, max(1, int(WARM_SHARE * len(self.ids))))
        if self.tokenizer is None:
            self.tokenizer = tokenizer_of(cursor)
        found = [(w, spelling(self.tokenizer, w)) for w in reversed(frequent)]  # popped from the end
        with self._lock:
            self._frequent = [((w,), text) for w, text in found if text is not None]


def background_allowed(engine: Engine) -> bool:
    """Words are scored in a thread of its own only on an SQLite file (a database in memory
    has one connection, which the thread would share)."""
    return engine.dialect.name == "sqlite" and not isinstance(engine.pool, StaticPool)


def _version(cursor: Any) -> int | None:
    row = cursor.execute("SELECT version FROM search_state WHERE id = 1").fetchone()
    return row[0] if row else None


def frequent_words(cursor: Any, min_rows: int) -> list[str]:
    """The index's terms found in at least ``min_rows`` rows, most frequent first."""
    vocab = f"temp.{TABLE}_fts_rows"
    cursor.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS {vocab} USING fts5vocab(main, {TABLE}_fts, row)")
    try:
        found = cursor.execute(
            f"SELECT term FROM {vocab} WHERE doc >= ? ORDER BY doc DESC, term", (min_rows,)
        )
        return [row[0] for row in found.fetchall()]
    finally:
        cursor.execute(f"DROP TABLE IF EXISTS {vocab}")


_TOKENIZE_RE = re.compile(r"tokenize\s*=\s*'((?:[^']|'')*)'", re.IGNORECASE)


def tokenizer_of(cursor: Any) -> str:
    """The ``tokenize`` option of the catalogue's FTS5 table ('' when it names none)."""
    row = cursor.execute("SELECT sql FROM sqlite_master WHERE name = ?", (f"{TABLE}_fts",)).fetchone()
    found = _TOKENIZE_RE.search(row[0] or "") if row else None
    return found.group(1).replace("''", "'") if found else ""


ENDINGS = ("", "e", "s", "es", "ion", "ing", "ed", "y", "al", "ation", "ity", "ic", "ive", "ous", "ment")


def spelling(tokenizer: str, token: str) -> str | None:
    """A word FTS5 makes into the one ``token`` (the index's vocabulary holds stems, and a
    stem is not always its own stem: Porter makes "poros" of "porosity" but "poro" of
    "poros"), or None when no ending tried gives it."""
    for ending in ENDINGS:
        if tokens(tokenizer, token + ending) == (token,):
            return token + ending
    return None


_tokenizing = threading.Lock()
_tokenizers: dict[str, sqlite3.Connection] = {}


@functools.lru_cache(maxsize=8192)
def tokens(tokenizer: str, text: str) -> tuple[str, ...]:
    """The tokens FTS5 makes of ``text`` with ``tokenizer`` (an FTS5 table in memory holding
    ``text`` for a moment, read through its ``fts5vocab``)."""
    with _tokenizing:
        conn = _tokenizers.get(tokenizer)
        if conn is None:
            conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
            option = f", tokenize='{tokenizer.replace(chr(39), chr(39) * 2)}'" if tokenizer else ""
            conn.execute(f"CREATE VIRTUAL TABLE t USING fts5(x{option})")
            conn.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, instance)")
            _tokenizers[tokenizer] = conn
        conn.execute("BEGIN")
        try:
            conn.execute("INSERT INTO t(rowid, x) VALUES (1, ?)", (text,))
            return tuple(row[0] for row in conn.execute("SELECT term FROM v ORDER BY offset"))
        finally:
            conn.execute("ROLLBACK")


# searches ------------------------------------------------------------------------------------


def _terms(session: Any, words: WordScores, q: str) -> list[tuple[tuple[str, ...], str]] | None:
    """(tokens, text) of each term of a query of included words and phrases; None for a query
    with a prefix, an excluded word or a term FTS5 makes no token of (left to FTS5)."""
    terms = fts.parse_terms(q)
    if not terms or any(t.exclude or t.prefix for t in terms):
        return None
    if words.tokenizer is None:
        cursor = session.connection().connection.cursor()
        try:
            words.tokenizer = tokenizer_of(cursor)
        finally:
            cursor.close()
    keys = [(tokens(words.tokenizer, t.text), t.text) for t in terms]
    return keys if all(k for k, _t in keys) else None


def lookup(session: Any, words: WordScores, q: str) -> list[tuple[Scored, Scored]] | None:
    """Each term's (full, shown) scores for a query of included words and phrases, when all are
    kept; None otherwise (a prefix or an excluded word, or a word not scored yet)."""
    keys = _terms(session, words, q)
    if keys is None:
        return None
    found = [(words.get((k, False)), words.get((k, True))) for k, _t in keys]
    if any(a is None or b is None for a, b in found):
        return None
    return found  # type: ignore[return-value]


def ask_if_broad(session: Any, words: WordScores, q: str, matches: int) -> None:
    """Score in the background the words of a query FTS5 has just matched in ``matches`` rows,
    when that is at least ``WARM_SHARE`` of them (ranking fewer in FTS5 costs a few ms; the
    thread would take a core from the searches meanwhile)."""
    if matches < WARM_SHARE * len(words.ids):
        return
    keys = _terms(session, words, q)
    missing = [(k, t) for k, t in keys or () if words.get((k, False)) is None or words.get((k, True)) is None]
    if missing:
        words.want(session.get_bind(), missing)


def combined(parts: list[Scored]) -> Scored:
    """The rows every part matches, ranked as FTS5 ranks the phrases ANDed in this order."""
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
    return full & (is_open | shown)


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
