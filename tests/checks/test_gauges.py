"""The verdict gauges (checks/gauges.py): a scrape never waits for the catalogue."""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time

from panbinder.checks.gauges import VerdictCounts
from panbinder.checks.verdict import Verdict


class SlowRecords:
    """``latest_counts`` blocks until ``release`` is set, as a slow or locked database would."""

    log = logging.getLogger("test-gauges")

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0
        self.threads: list[str] = []

    def latest_counts(self) -> dict[str, int]:
        self.calls += 1
        self.threads.append(threading.current_thread().name)
        assert self.release.wait(10)
        return {Verdict.REPRODUCIBLE.value: 3}


async def test_a_scrape_reads_the_cache_and_refreshes_off_the_loop():
    records = SlowRecords()
    counts = VerdictCounts(records, max_age=60, loop=asyncio.get_running_loop())
    began = time.monotonic()
    first = counts.count(Verdict.REPRODUCIBLE)  # the database blocks: the scrape does not
    assert time.monotonic() - began < 0.5 and math.isnan(first)
    assert math.isnan(counts.count(Verdict.DIFFERS))  # one refresh at a time
    await asyncio.sleep(0.05)
    assert records.calls == 1 and records.threads[0] != threading.current_thread().name
    records.release.set()
    await counts.task
    assert (counts.count(Verdict.REPRODUCIBLE), counts.count(Verdict.DIFFERS)) == (3, 0)
    assert records.calls == 1  # fresh for max_age seconds


async def test_a_failed_read_keeps_the_last_counts():
    records = SlowRecords()
    records.release.set()
    counts = VerdictCounts(records, max_age=0, loop=asyncio.get_running_loop())
    counts.count(Verdict.REPRODUCIBLE)
    await counts.task
    records.latest_counts = lambda: 1 / 0  # the catalogue away
    counts.count(Verdict.REPRODUCIBLE)
    await counts.task
    assert counts.count(Verdict.REPRODUCIBLE) == 3


def test_without_an_event_loop_the_counts_are_read_in_place():
    records = SlowRecords()
    records.release.set()
    assert VerdictCounts(records).count(Verdict.REPRODUCIBLE) == 3
