"""The reproducibility overview: its aggregate queries on a catalogue (a fixed number of queries,
whatever the number of publications), the page, its JSON twin, and the publication page's light
read (frozen history, the last fresh check apart)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from xml.etree import ElementTree

import pytest
from sqlalchemy import event

from panbinder.checks.records import NEVER_CHECKED, CheckRecords
from panbinder.checks.verdict import CheckResult, Kind, Status, Step, StepResult
from panbinder.data_mounts.catalogue import Catalogue
from panbinder.data_mounts.models import Publication
from tests.web_app import web_portal

NIGHT = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
HOSTILE = '<script>alert("x")</script> & ]]>'


def check(
    doi: str, started: datetime, failing: Step | None = None, *, kind: Kind = Kind.FROZEN
) -> CheckResult:
    first = [StepResult(Step.FRESH_REBUILD if kind == Kind.FRESH else Step.ARCHIVE, Status.PASSED, 0.1)]
    steps = [*first, StepResult(Step.LAUNCH, Status.PASSED, 1.0), StepResult(Step.RUN, Status.PASSED, 1.0)]
    steps.append(StepResult(Step.RESULTS, Status.PASSED, 0.1))
    if failing is not None:
        steps = [
            StepResult(s.step, Status.FAILED, 0.1, f"{s.step.value} failed: {HOSTILE}")
            if s.step == failing
            else s
            for s in steps
        ]
    return CheckResult(doi, kind, started, tuple(steps))


def add(catalogue: Catalogue, *dois: str, title: str = "") -> None:
    with catalogue.session() as session:
        for doi in dois:
            session.add(
                Publication(
                    doi=doi,
                    title=title or f"paper {doi}",
                    repo_url="https://git.example.org/a.git",
                    ref="v1",
                    resolved_sha="a" * 40,
                    created=NIGHT - timedelta(days=10),
                )
            )


@pytest.fixture
def catalogue(tmp_path) -> Catalogue:
    cat = Catalogue(db_url=f"sqlite:///{tmp_path}/catalogue.sqlite")
    cat.start()
    yield cat
    cat.close()


def test_the_summary_counts_each_publications_last_frozen_check_in_a_few_grouped_queries(catalogue):
    records = CheckRecords(catalogue=catalogue)
    many = [f"10.5555/many.{i:03d}" for i in range(40)]
    add(catalogue, "10.5555/a", "10.5555/b", "10.5555/c", "10.5555/d", *many)
    records.record(check("10.5555/a", NIGHT, Step.RESULTS))
    records.record(check("10.5555/a", NIGHT + timedelta(days=1)))  # a's last: reproducible
    records.record(check("10.5555/a", NIGHT + timedelta(days=1, hours=2), kind=Kind.FRESH))  # not counted
    records.record(check("10.5555/b", NIGHT, Step.RUN))
    records.record(check("10.5555/b", NIGHT + timedelta(hours=1), Step.ARCHIVE))  # same night: counts once
    records.record(check("10.5555/c", NIGHT + timedelta(days=1), Step.RESULTS))
    for doi in many[:10]:
        records.record(check(doi, NIGHT + timedelta(days=1)))

    statements: list[str] = []

    def count(conn, cursor, statement, *args) -> None:
        statements.append(statement)

    with catalogue.session() as session:
        engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", count)
    try:
        summary = records.summary(now=NIGHT + timedelta(days=2), limit=5)
    finally:
        event.remove(engine, "before_cursor_execute", count)

    assert summary.counts == {
        "reproducible": 11,
        "archive damaged": 1,
        "runs, results differ": 1,
        NEVER_CHECKED: 31,
    }
    assert summary.total == 44
    assert [(n.night, n.counts) for n in summary.nights] == [
        (date(2026, 12, 1), {"archive damaged": 1, "runs, results differ": 1}),
        (date(2026, 12, 2), {"reproducible": 11, "runs, results differ": 1}),
    ]
    assert summary.registered == {date(2026, 12, 1): 44, date(2026, 12, 2): 44}
    rows = {p.doi: p for p in summary.publications}
    assert list(rows) == ["10.5555/a", "10.5555/b", "10.5555/c", "10.5555/d", many[0]]  # by DOI, limited
    assert (rows["10.5555/b"].verdict, rows["10.5555/b"].failed_step) == ("archive damaged", "archive intact")
    assert rows["10.5555/b"].message.startswith("archive intact failed: <script>")
    assert rows["10.5555/b"].started == NIGHT + timedelta(hours=1)
    assert (rows["10.5555/d"].verdict, rows["10.5555/d"].started) == (NEVER_CHECKED, None)
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) <= 4, selects  # grouped in the database, not a query per publication


def test_the_publication_page_reads_frozen_marks_and_the_last_fresh_check_apart(catalogue):
    records = CheckRecords(catalogue=catalogue)
    add(catalogue, "10.5555/a")
    records.record(check("10.5555/a", NIGHT - timedelta(days=200), Step.RUN))  # outside the window
    records.record(check("10.5555/a", NIGHT, Step.RESULTS))
    records.record(check("10.5555/a", NIGHT + timedelta(hours=1), kind=Kind.FRESH))
    records.record(check("10.5555/a", NIGHT + timedelta(days=1)))
    records.record(
        check("10.5555/a", NIGHT + timedelta(days=1, hours=1), Step.FRESH_REBUILD, kind=Kind.FRESH)
    )
    page = records.publication_checks("10.5555/a", nights=90, now=NIGHT + timedelta(days=2))
    assert [(m.started, m.verdict.value) for m in page.marks] == [
        (NIGHT, "runs, results differ"),
        (NIGHT + timedelta(days=1), "reproducible"),
    ]
    assert (
        page.latest is not None
        and page.latest.kind == Kind.FROZEN
        and page.latest.verdict.value == "reproducible"
    )
    assert page.fresh is not None and page.fresh.verdict.value == "does not build"
    assert page.fresh.failed_step == "fresh rebuild" and HOSTILE in page.fresh.message


async def test_the_overview_page_and_its_json(tmp_path):
    async with web_portal(tmp_path) as p:
        for doi in ("10.5555/good", "10.5555/bad", "10.5555/never"):
            p.add_publication(doi)
        with p.pipeline.catalogue.session() as session:
            p.pipeline.catalogue.get_publication(session, "10.5555/bad").title = HOSTILE
        records = CheckRecords(catalogue=p.pipeline.catalogue)
        now = datetime.now(UTC)
        records.record(check("10.5555/good", now - timedelta(days=1), Step.RUN))
        records.record(check("10.5555/good", now))
        records.record(check("10.5555/bad", now, Step.RESULTS))

        response = await p.fetch("/reproducibility", accept="text/html")
        assert response.code == 200 and "script-src 'self'" in response.headers["Content-Security-Policy"]
        page = response.body.decode()
        for verdict, count in (("reproducible", 1), ("runs, results differ", 1), (NEVER_CHECKED, 1)):
            assert f'data-verdict="{verdict}"><td>{verdict}</td><td class="n">{count}</td>' in page, verdict
        assert 'data-verdict="does not run"><td>does not run</td><td class="n">0</td>' in page
        assert "<script>alert" not in page and "&lt;script&gt;alert" in page  # title and message escaped
        assert 'href="/publications/10.5555/good"' in page
        chart = page[page.index("<figure") + len('<figure class="check-overview">') : page.index("</figure>")]
        svg = ElementTree.fromstring(chart)  # well-formed, self-contained
        assert not [e for e in svg.iter() if e.tag.endswith(("script", "image", "foreignObject", "a"))]
        tips = [e.text for e in svg.iter() if e.tag.endswith("title")]
        assert f"{now.date().isoformat()}: 1 reproducible" in tips
        assert f"{(now - timedelta(days=1)).date().isoformat()}: 1 does not run" in tips

        body = json.loads((await p.fetch("/api/checks/summary?days=7&limit=2")).body)
        assert body["counts"] == {
            "reproducible": 1,
            "runs, results differ": 1,
            "does not run": 0,
            "does not build": 0,
            "archive damaged": 0,
            NEVER_CHECKED: 1,
        }
        assert body["total"] == 3 and body["days"] == 7 and body["limit"] == 2
        assert [r["doi"] for r in body["publications"]] == ["10.5555/bad", "10.5555/good"]
        assert (
            body["publications"][0]["title"] == HOSTILE
            and body["publications"][0]["failed_step"] == "same results"
        )
        assert body["nights"][-1]["night"] == now.date().isoformat()
        assert body["nights"][-1]["counts"] == {"reproducible": 1, "runs, results differ": 1}
        bad = await p.fetch("/api/checks/summary?days=x")
        assert bad.code == 400 and "'days' must be a whole number" in json.loads(bad.body)["message"]

        home = (await p.fetch("/", accept="text/html")).body.decode()
        assert 'href="/reproducibility"' in home
