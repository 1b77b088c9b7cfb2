"""The Prometheus gauge of verdicts (``panbinder_check_verdicts{verdict}``), read from the catalogue.

Checks are recorded by whichever process runs them (``panbinder check``, the scheduler), so the
portal reads the counts from the ``checks`` table (one grouped query), at most once every
``max_age`` seconds (scrapes come every 15-60 s). The query never runs on the event loop and a
scrape never waits for it: a scrape reads the cached counts, and when they are older than
``max_age`` it starts a refresh in the executor (one at a time) whose counts the next scrape
reports. Until the first read has finished the gauges say NaN (unknown), not 0. A catalogue
that is away or slow leaves the last counts in place.
"""

from __future__ import annotations

import asyncio
import time

from panbinder import metrics
from panbinder.executor import log_task_exception, run_blocking

from .records import CheckRecords
from .verdict import Verdict


class VerdictCounts:
    """The latest verdict counts, refreshed off the event loop once they are ``max_age`` old.

    ``loop`` is the event loop the portal serves /metrics on; without one (a command, a test)
    the counts are read in place."""

    def __init__(
        self, records: CheckRecords, *, max_age: float = 60.0, loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        self.records = records
        self.max_age = max_age
        self.loop = loop
        self.task: asyncio.Task | None = None
        self._counts: dict[str, int] | None = None  # None: never read
        self._read = float("-inf")

    def count(self, verdict: Verdict) -> float:
        """The cached count (NaN before the first read); starts a refresh when it is old."""
        if time.monotonic() - self._read > self.max_age:
            self.refresh_soon()
        return float("nan") if self._counts is None else self._counts.get(verdict.value, 0)

    def read(self) -> None:
        """Read the counts now (blocking); on failure keep the last ones."""
        try:
            self._counts = self.records.latest_counts()
        except Exception as error:  # the catalogue away: keep the last counts
            self.records.log.warning("verdict counts not read: %s", error)
        self._read = time.monotonic()

    async def refresh(self) -> None:
        """Read the counts in the executor."""
        await run_blocking(self.read)

    def refresh_soon(self) -> None:
        """Start a refresh on ``loop`` unless one runs (from any thread); without a loop, read now."""
        if self.loop is None or self.loop.is_closed():
            self.read()
            return
        try:
            on_loop = asyncio.get_running_loop() is self.loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            self._start()
        else:
            self.loop.call_soon_threadsafe(self._start)

    def _start(self) -> None:
        if self.task is not None and not self.task.done():
            return
        self.task = self.loop.create_task(self.refresh(), name="verdict-counts")
        self.task.add_done_callback(lambda task: log_task_exception(task, self.records.log))


def track_verdicts(records: CheckRecords, *, max_age: float = 60.0) -> VerdictCounts:
    """Make ``panbinder_check_verdicts`` report the counts of ``records`` (each verdict a label);
    made on the portal's event loop, the counts are refreshed there (in the executor)."""
    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    counts = VerdictCounts(records, max_age=max_age, loop=loop)
    for verdict in Verdict:
        metrics.CHECK_VERDICTS.labels(verdict.value).set_function(lambda v=verdict: counts.count(v))
    return counts
