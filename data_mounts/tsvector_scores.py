"""Each term's ``ts_rank`` as PostgreSQL computes it, for ``text_scores.WordScores``.

On PostgreSQL a search's rank is the sum of its included terms' ``-ts_rank``, in double
precision and in the query's order (``search_filters.pg_rank``), and a row matches the terms
ANDed when it matches each. So a term's (row, rank) pairs, asked of the server once, rank every
search made of it with others, bit for bit (``ts_rank`` is a ``real``; widening it to double is
exact, and numpy adds the doubles in the same order).

Terms are keyed by the server's own ``tsquery`` text: "Structures" becomes ``'structur'``,
"struct*" becomes ``'struct':*``, a phrase ``'in' <-> 'situ'``, so prefixes and phrases are
kept too (a term the configuration makes nothing of, a stop word, is left out of the query by
the server and out of the sum here). Excluded words go to the database. One pass reads each
row's rank through its full vector and, for a row not public, through ``search_vector_shown``
(revision 0015), the columns it shows while embargoed. The frequent lexemes come from
``ts_stat`` over the full vectors.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import numpy as np
from sqlalchemy import String, cast, select

from . import fts
from .search_filters import pg_term

TABLE = "datasets"
MAX_KEYS = 4096  # terms' tsquery texts remembered
Pairs = tuple[np.ndarray, np.ndarray]

_keys: OrderedDict[tuple[bool, str], str] = OrderedDict()
_keys_lock = threading.Lock()


def key_texts(session: Any, terms: list[fts.Term]) -> list[str]:
    """The server's ``tsquery`` text of each term (remembered: one round trip for new ones)."""
    wanted = [(t.prefix, t.text) for t in terms]
    with _keys_lock:
        missing = [w for w in dict.fromkeys(wanted) if w not in _keys]
    if missing:
        asked = [cast(pg_term(fts.Term(text, prefix=prefix)), String) for prefix, text in missing]
        found = session.execute(select(*asked)).one()
        with _keys_lock:
            for w, text in zip(missing, found, strict=True):
                _keys[w] = text or ""
            while len(_keys) > MAX_KEYS:
                _keys.popitem(last=False)
    with _keys_lock:
        return [_keys.get(w, "") for w in wanted]


class TsvectorWords:
    """Scores terms through the catalogue's ``search_vector`` columns."""

    def keys(self, session: Any, terms: list[fts.Term]) -> list[tuple[Any, str]] | None:
        """(tsquery text, text) per included term; None with an excluded word, or when no term
        makes a query (left to the database)."""
        if any(t.exclude for t in terms):
            return None
        if any(pg_term(t) is None for t in terms):  # a prefix without a word
            return None
        texts = key_texts(session, terms)
        keys = [(k, t.text) for k, t in zip(texts, terms, strict=True) if k]
        return keys or None

    def begin(self, cursor: Any, hidden: np.ndarray) -> None:
        """Nothing to name: the shown vector is stored for the rows not public only."""

    def end(self, cursor: Any) -> None:
        """Nothing to drop."""

    def score(self, cursor: Any, key: Any, text: str) -> tuple[Pairs, Pairs | None]:
        """The term's (id, -ts_rank) pairs through the full vector and through the shown one
        (rows not public), read in one pass."""
        shown = fts.SHOWN
        cursor.execute(
            f"SELECT id, -ts_rank(search_vector, q)::float8, search_vector @@ q, "
            f"CASE WHEN {shown} @@ q THEN -ts_rank({shown}, q)::float8 END "
            f"FROM {TABLE}, CAST(%s AS tsquery) AS q "
            f"WHERE search_vector @@ q OR {shown} @@ q",
            (key,),
        )
        rows = cursor.fetchall()
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        full_rank = np.fromiter((r[1] for r in rows), dtype=np.float64, count=len(rows))
        in_full = np.fromiter((bool(r[2]) for r in rows), dtype=bool, count=len(rows))
        shown_rank = np.fromiter(
            (np.nan if r[3] is None else r[3] for r in rows), dtype=np.float64, count=len(rows)
        )
        in_shown = ~np.isnan(shown_rank)
        return (ids[in_full], full_rank[in_full]), (ids[in_shown], shown_rank[in_shown])

    def frequent(self, cursor: Any, min_rows: int) -> list[tuple[Any, str]]:
        """(tsquery text, lexeme) of the lexemes found in at least ``min_rows`` rows, most
        frequent first."""
        quoted = r"'''' || replace(replace(word, '\', '\\'), '''', '''''') || ''''"  # a lexeme
        cursor.execute(
            f"SELECT ({quoted})::tsquery::text, word FROM ts_stat('SELECT search_vector FROM {TABLE}') "
            "WHERE ndoc >= %s ORDER BY ndoc DESC, word",
            (min_rows,),
        )
        return [(key, word) for key, word in cursor.fetchall() if key]
