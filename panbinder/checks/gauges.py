"""The Prometheus gauge of verdicts (``panbinder_check_verdicts{verdict}``), read from the catalogue.

Checks are recorded by whichever process runs them (``panbinder check``, the scheduler), so the
portal reads the counts from the ``checks`` table when /metrics is scraped, at most once every
``max_age`` seconds (one grouped query; scrapes come every 15-60 s).
"""

from __future__ import annotations

import time

from panbinder import metrics

from .records import CheckRecords
from .verdict import Verdict


class VerdictCounts:
    """The latest verdict counts, cached for ``max_age`` seconds."""

    def __init__(self, records: CheckRecords, *, max_age: float = 60.0) -> None:
        self.records = records
        self.max_age = max_age
        self._counts: dict[str, int] = {}
        self._read = float("-inf")

    def count(self, verdict: Verdict) -> int:
        if time.monotonic() - self._read > self.max_age:
            try:
                self._counts = self.records.latest_counts()
            except Exception as error:  # the catalogue away: keep the last counts
                self.records.log.warning("verdict counts not read: %s", error)
            self._read = time.monotonic()
        return self._counts.get(verdict.value, 0)


def track_verdicts(records: CheckRecords, *, max_age: float = 60.0) -> VerdictCounts:
    """Make ``panbinder_check_verdicts`` report the counts of ``records`` (each verdict a label)."""
    counts = VerdictCounts(records, max_age=max_age)
    for verdict in Verdict:
        metrics.CHECK_VERDICTS.labels(verdict.value).set_function(lambda v=verdict: counts.count(v))
    return counts
