"""The nightly scheduler's pure parts: when the next round starts, its setting, yielding to
readers' builds, and a round that goes on after a publication whose check cannot be made."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from traitlets import TraitError

from panbinder.checks.notify import CheckNotifier
from panbinder.checks.records import CheckRecords
from panbinder.checks.scheduler import CheckScheduler, next_round
from panbinder.checks.verdict import CheckResult, Kind, Status, Step, StepResult
from panbinder.data_mounts.catalogue import Catalogue
from panbinder.data_mounts.models import Publication


def test_next_round_is_the_next_time_of_day_in_utc():
    now = datetime(2026, 12, 2, 1, 30, tzinfo=UTC)
    assert next_round(now, "02:00") == datetime(2026, 12, 2, 2, 0, tzinfo=UTC)
    assert next_round(now, "01:30") == datetime(2026, 12, 3, 1, 30, tzinfo=UTC)  # strictly after
    assert next_round(now, "00:15") == datetime(2026, 12, 3, 0, 15, tzinfo=UTC)


def test_nightly_at_must_be_a_time_of_day():
    for bad in ("2am", "24:00", "2:00", "02:60"):
        with pytest.raises(TraitError, match="HH:MM"):
            CheckScheduler(runner=None, records=None, notifier=None, manager=None, nightly_at=bad)


class Builds:
    """A build manager's counters as the scheduler reads them: ``background`` are the checks' own
    rebuilds, which hold slots but are not readers' builds."""

    def __init__(self) -> None:
        self.running, self.queued, self.background = 1, 1, 0

    @property
    def readers_building(self) -> int:
        return self.running + self.queued - self.background


class Runner:
    """Checks in order; one publication's check raises. With a ``gate``, each check waits for it
    and the most checks at once is kept."""

    def __init__(self, gate: asyncio.Event | None = None) -> None:
        self.checked: list[str] = []
        self.gate = gate
        self.now = self.peak = 0

    async def check(self, doi: str, kind: Kind = Kind.FROZEN) -> CheckResult:
        self.checked.append(doi if kind == Kind.FROZEN else f"{doi} (fresh)")
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            if self.gate is not None:
                await self.gate.wait()
        finally:
            self.now -= 1
        if doi.endswith("broken"):
            raise RuntimeError("the Hub is away")
        steps = (StepResult(Step.LAUNCH, Status.PASSED), StepResult(Step.RUN, Status.PASSED))
        return CheckResult(doi, kind, datetime.now(UTC), steps)


@pytest.fixture
def catalogue(tmp_path):
    cat = Catalogue(db_url=f"sqlite:///{tmp_path}/catalogue.sqlite")
    cat.start()
    with cat.session() as session:
        for doi in ("10.5555/a", "10.5555/b.broken", "10.5555/c"):
            session.add(
                Publication(
                    doi=doi, repo_url="https://git.example.org/a.git", ref="v1", resolved_sha="a" * 40
                )
            )
    yield cat
    cat.close()


async def test_a_round_waits_for_readers_builds_and_goes_on_after_an_error(catalogue):
    builds, runner = Builds(), Runner()
    scheduler = CheckScheduler(
        runner=runner,
        records=CheckRecords(catalogue=catalogue),
        notifier=CheckNotifier(),
        manager=builds,
        yield_interval=0.01,
        fresh_every_days=0,
    )
    round_ = asyncio.ensure_future(scheduler.run_round())
    await asyncio.sleep(0.1)
    assert runner.checked == []  # a reader's build runs: the round waits
    builds.running = 0
    await asyncio.sleep(0.05)
    assert runner.checked == []  # and one waits for a slot
    builds.queued = 0
    outcome = await asyncio.wait_for(round_, 5)
    assert runner.checked == ["10.5555/a", "10.5555/b.broken", "10.5555/c"]
    assert outcome["10.5555/a"] == outcome["10.5555/c"] == "reproducible"
    assert outcome["10.5555/b.broken"] == "not checked: the Hub is away"
    assert CheckRecords(catalogue=catalogue).latest("10.5555/c").result.verdict.value == "reproducible"


async def test_a_fresh_check_comes_after_the_frozen_one_when_due(catalogue):
    runner = Runner()
    records = CheckRecords(catalogue=catalogue)
    builds = Builds()
    builds.running = builds.queued = 0
    scheduler = CheckScheduler(
        runner=runner, records=records, notifier=CheckNotifier(), manager=builds, fresh_every_days=7
    )
    await scheduler.run_round()
    assert runner.checked == [
        "10.5555/a",
        "10.5555/a (fresh)",
        "10.5555/b.broken",
        "10.5555/c",
        "10.5555/c (fresh)",
    ]
    assert records.latest("10.5555/a", kind=Kind.FRESH) is not None
    runner.checked.clear()
    await scheduler.run_round()  # the next night: fresh checks are a week apart
    assert runner.checked == ["10.5555/a", "10.5555/b.broken", "10.5555/c"]


async def test_the_checks_own_rebuilds_do_not_hold_the_round(catalogue):
    """A background build (a check's rebuild, waiting behind readers in serve's queue) holds a
    slot; the round goes on. A reader's build arriving beside it stops the next check."""
    builds, runner = Builds(), Runner()
    builds.running, builds.queued, builds.background = 1, 0, 1
    scheduler = CheckScheduler(
        runner=runner,
        records=CheckRecords(catalogue=catalogue),
        notifier=CheckNotifier(),
        manager=builds,
        yield_interval=0.01,
        fresh_every_days=0,
    )
    await asyncio.wait_for(scheduler.run_round(), 5)
    assert len(runner.checked) == 3
    builds.queued = 1  # a reader's build waits behind the check's
    runner.checked.clear()
    round_ = asyncio.ensure_future(scheduler.run_round())
    await asyncio.sleep(0.1)
    assert runner.checked == []
    builds.queued = 0
    await asyncio.wait_for(round_, 5)
    assert len(runner.checked) == 3


@pytest.mark.parametrize("concurrency", [1, 2])
async def test_a_round_checks_at_most_concurrency_publications_at_once(catalogue, concurrency):
    gate = asyncio.Event()
    builds, runner = Builds(), Runner(gate)
    builds.running = builds.queued = 0
    scheduler = CheckScheduler(
        runner=runner,
        records=CheckRecords(catalogue=catalogue),
        notifier=CheckNotifier(),
        manager=builds,
        fresh_every_days=0,
        concurrency=concurrency,
    )
    round_ = asyncio.ensure_future(scheduler.run_round())
    await asyncio.sleep(0.1)
    assert runner.now == concurrency  # the others wait for a worker
    gate.set()
    outcome = await asyncio.wait_for(round_, 5)
    assert runner.peak == concurrency
    assert list(outcome) == ["10.5555/a", "10.5555/b.broken", "10.5555/c"]  # in DOI order
    assert outcome["10.5555/b.broken"] == "not checked: the Hub is away"


def test_concurrency_is_at_least_one():
    with pytest.raises(TraitError):
        CheckScheduler(runner=None, records=None, notifier=None, manager=None, concurrency=0)
