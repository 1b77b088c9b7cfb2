"""Search results kept between requests, valid until the catalogue changes.

Two kinds, one store per catalogue: the total and facet counts of a whole query (keyed by the
normalised query and, for "my datasets", the reader), and, on SQLite, a text's matches in rank
order (keyed by its normalised words; the page of any facet choice is then read from it, so a
broad word's ranking, which scores every match, is paid once). An entry is used only while

- the catalogue's write counter (``search_state.version``, raised by triggers on every write a
  search reads, whoever writes: revision 0010) is what it was,
- no embargo has ended since it was computed (the next ``release_date`` after that moment),
- and it is younger than ``seconds``.

Measured on 100,000 datasets (``benchmarks/search.py``): ranking a word found in 29,525 of them
costs about 100 ms of CPU on SQLite (bm25 scores every match inside FTS5, before any filter),
so only SQLite keeps rankings; PostgreSQL ranks the rows left after the filters.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .access import Identity
from .models import Dataset, search_state
from .search_query import SearchQuery

MAX_RANKED = 200_000  # matches kept for one text (ids); a larger match is not kept


@dataclass(frozen=True)
class Stamp:
    """What a kept result was computed against."""

    version: int | None
    valid_until: datetime | None  # the next embargo end after it was computed


def stamp(session: Session, now: datetime) -> Stamp:
    """The catalogue's write counter and next embargo end; version None without revision 0010."""
    version = session.scalar(select(search_state.c.version).where(search_state.c.id == 1))
    ends = session.scalar(select(func.min(Dataset.release_date)).where(Dataset.release_date > now))
    return Stamp(version, ends)


class FacetCache:
    """Totals, facet counts and ranked text matches of recent searches (``seconds`` 0: off)."""

    def __init__(self, seconds: float, size: int = 512, ranked_size: int = 64) -> None:
        self.seconds, self.size, self.ranked_size = seconds, size, ranked_size
        self._entries: dict[tuple, tuple[float, Stamp, Any]] = {}
        self._ranked: dict[tuple, tuple[float, Stamp, tuple[int, ...]]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def key(query: SearchQuery, who: Identity) -> tuple:
        person = (who.name, tuple(sorted(who.groups))) if query.mine else None
        return (query.q, query.filters, query.mine, person)

    def _fresh(self, hit: tuple | None, current: Stamp | None, now: datetime | None) -> bool:
        if hit is None or time.monotonic() - hit[0] >= self.seconds:
            return False
        if current is None:  # no stamp given: age alone, as before revision 0010
            return True
        kept: Stamp = hit[1]
        if kept.version is None or kept.version != current.version:
            return False
        return kept.valid_until is None or now is None or now < kept.valid_until

    def get(self, key: tuple, current: Stamp | None = None, now: datetime | None = None) -> Any:
        with self._lock:
            hit = self._entries.get(key)
        return hit[2] if self._fresh(hit, current, now) else None

    def put(self, key: tuple, value: Any, current: Stamp | None = None) -> None:
        self._store(self._entries, self.size, key, value, current)

    def ranked(self, key: tuple, current: Stamp, now: datetime) -> tuple[int, ...] | None:
        """A text's matching ids in rank order, when kept and still valid."""
        if current.version is None:
            return None
        with self._lock:
            hit = self._ranked.get(key)
        return hit[2] if self._fresh(hit, current, now) else None

    def put_ranked(self, key: tuple, ids: tuple[int, ...], current: Stamp) -> None:
        if current.version is not None and len(ids) <= MAX_RANKED:
            self._store(self._ranked, self.ranked_size, key, ids, current)

    def _store(self, entries: dict, size: int, key: tuple, value: Any, current: Stamp | None) -> None:
        if self.seconds <= 0:
            return
        with self._lock:
            if len(entries) >= size:
                now = time.monotonic()
                for k in [k for k, v in entries.items() if now - v[0] >= self.seconds]:
                    del entries[k]
                while len(entries) >= size:
                    entries.pop(next(iter(entries)))
            entries[key] = (time.monotonic(), current or Stamp(None, None), value)
