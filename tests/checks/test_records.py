"""The checks table: migration on a fresh SQLite catalogue, record and read back, history, nightly counts."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import inspect

from panbinder.checks.records import CheckRecords
from panbinder.checks.verdict import CheckResult, Difference, Kind, Status, Step, StepResult
from panbinder.data_mounts import db
from panbinder.data_mounts.catalogue import Catalogue
from panbinder.data_mounts.models import Publication
from panbinder.errors import PanbinderError

NIGHT = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
DOIS = ("10.5281/zenodo.111", "10.5281/zenodo.222")


@pytest.fixture
def catalogue(tmp_path) -> Catalogue:
    cat = Catalogue(db_url=f"sqlite:///{tmp_path}/catalogue.sqlite")
    cat.start()
    with cat.session() as session:
        for doi in DOIS:
            session.add(
                Publication(
                    doi=doi, repo_url="https://git.example.org/a.git", ref="v1", resolved_sha="a" * 40
                )
            )
    yield cat
    cat.close()


@pytest.fixture
def records(catalogue) -> CheckRecords:
    return CheckRecords(catalogue=catalogue)


def run(
    doi: str, started: datetime, *, results: bool = True, kind: Kind = Kind.FROZEN, **kwargs
) -> CheckResult:
    steps = (
        StepResult(Step.ARCHIVE, Status.PASSED, 0.4, started=started),
        StepResult(Step.LAUNCH, Status.PASSED, 2.5, started=started),
        StepResult(Step.RUN, Status.PASSED, 11.0, started=started),
        StepResult(
            Step.RESULTS,
            Status.PASSED if results else Status.FAILED,
            0.2,
            "" if results else "cell 4 differs",
        ),
    )
    return CheckResult(doi, kind, started, steps, **kwargs)


def test_the_migration_creates_the_checks_table_on_a_fresh_catalogue(tmp_path):
    url = f"sqlite:///{tmp_path}/fresh.sqlite"
    db.upgrade(url)
    engine = db.make_engine(url)
    try:
        assert db.current_revision(engine) >= "0003"  # later revisions keep the table
        columns = {c["name"] for c in inspect(engine).get_columns("checks")}
        assert {
            "publication_id",
            "kind",
            "started",
            "verdict",
            "failed_step",
            "steps",
            "restored",
            "diff",
        } <= columns
        db.upgrade(url)  # idempotent
    finally:
        engine.dispose()


def test_a_recorded_check_reads_back_unchanged(records):
    difference = Difference("fig.ipynb", 4, "c4", "number", "1.5", "1.7", "1.5 became 1.7")
    result = run(
        DOIS[0],
        NIGHT,
        results=False,
        image="127.0.0.1:5000/pb/x:1",
        restored=True,
        differences=(difference,),
        diff="-1.5\n+1.7",
    )
    check_id = records.record(result)
    [stored] = records.history(DOIS[0])
    assert stored.id == check_id and stored.result == result
    assert stored.result.verdict.value == "runs, results differ" and stored.result.restored


def test_history_is_newest_first_per_publication_and_kind(records):
    for night in range(3):
        records.record(run(DOIS[0], NIGHT + timedelta(days=night), results=night != 1))
    records.record(run(DOIS[0], NIGHT + timedelta(days=5), kind=Kind.FRESH, results=False))
    records.record(run(DOIS[1], NIGHT))
    history = records.history("https://doi.org/10.5281/ZENODO.111", kind=Kind.FROZEN)
    assert [h.result.started.day for h in history] == [3, 2, 1]
    assert [h.result.verdict.value for h in history] == [
        "reproducible",
        "runs, results differ",
        "reproducible",
    ]
    assert len(records.history(DOIS[0])) == 4
    latest = records.latest(DOIS[0])
    assert latest is not None and latest.result.started.day == 3
    fresh = records.latest(DOIS[0], kind=Kind.FRESH)
    assert fresh is not None and fresh.result.verdict.value == "runs, results differ"
    assert records.latest(DOIS[1], kind=Kind.FRESH) is None


def test_nightly_counts_take_each_publications_last_check_of_the_night(records):
    records.record(run(DOIS[0], NIGHT, results=False))
    records.record(run(DOIS[0], NIGHT + timedelta(hours=3)))  # re-checked the same night: counts once
    records.record(run(DOIS[1], NIGHT, results=False))
    records.record(run(DOIS[1], NIGHT + timedelta(days=1)))
    records.record(run(DOIS[0], NIGHT - timedelta(days=200)))  # outside the window
    nights = records.overview(days=30, now=NIGHT + timedelta(days=2))
    assert [(n.night, n.counts, n.total) for n in nights] == [
        (date(2026, 12, 1), {"reproducible": 1, "runs, results differ": 1}, 2),
        (date(2026, 12, 2), {"reproducible": 1}, 1),
    ]


def test_an_unknown_publication_is_refused(records):
    with pytest.raises(PanbinderError, match=r"No publication with DOI 10\.5281/zenodo\.999"):
        records.record(run("10.5281/zenodo.999", NIGHT))
    with pytest.raises(PanbinderError):
        records.history("10.5281/zenodo.999")


def test_large_diffs_are_capped(catalogue):
    records = CheckRecords(catalogue=catalogue, max_differences=2, max_diff_chars=100)
    differences = tuple(Difference("a.ipynb", i, "", "text", "a", "b") for i in range(5))
    records.record(run(DOIS[0], NIGHT, results=False, differences=differences, diff="x" * 1000))
    stored = records.latest(DOIS[0]).result
    assert [d.kind for d in stored.differences] == ["text", "text", "more"]
    assert stored.differences[-1].detail == "3 more differences"
    assert stored.diff.startswith("x" * 100) and stored.diff.endswith("(900 more characters)")


def test_deleting_a_publication_deletes_its_checks(records, catalogue):
    records.record(run(DOIS[0], NIGHT))
    with catalogue.session() as session:
        session.delete(catalogue.get_publication(session, DOIS[0]))
    assert records.overview(days=30, now=NIGHT) == []
