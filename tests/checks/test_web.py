"""The checks' routes: /api/publications/<doi>/checks and /badge/doi/<doi>/reproducible.svg."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from xml.etree import ElementTree

from panbinder.checks.records import CheckRecords
from panbinder.checks.verdict import CheckResult, Difference, Kind, Status, Step, StepResult
from tests.web_app import web_portal

DOI = "10.5555/checked.paper"
HOSTILE = '<script>alert("x")</script> & ]]>'


def result(started: datetime, printed: str = "") -> CheckResult:
    steps = [
        StepResult(Step.ARCHIVE, Status.PASSED, 0.1),
        StepResult(Step.LAUNCH, Status.PASSED, 2.0),
        StepResult(Step.RUN, Status.PASSED, 3.0),
    ]
    differences: tuple[Difference, ...] = ()
    if printed:
        steps.append(StepResult(Step.RESULTS, Status.FAILED, 0.1, f"a.ipynb, cell 1: {printed}"))
        differences = (Difference("a.ipynb", 1, "", "text", "42", printed),)
    else:
        steps.append(StepResult(Step.RESULTS, Status.PASSED, 0.1))
    return CheckResult(DOI, Kind.FROZEN, started, tuple(steps), differences=differences)


async def scrape_until(p, line: str, timeout: float = 10.0) -> str:
    """/metrics until it has ``line``: a scrape reports the cached verdict counts and starts
    their refresh off the event loop, so the counts show on a later scrape."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        scraped = (await p.fetch("/metrics", accept="text/plain")).body.decode()
        if line in scraped or asyncio.get_running_loop().time() > deadline:
            return scraped
        await asyncio.sleep(0.05)


async def test_checks_api_and_badge(tmp_path):
    async with web_portal(tmp_path) as p:
        p.add_publication(DOI)
        badge = await p.fetch(f"/badge/doi/{DOI}/reproducible.svg", accept="image/svg+xml")
        assert badge.code == 200 and b"not checked yet" in badge.body
        empty = json.loads((await p.fetch(f"/api/publications/{DOI}/checks")).body)
        assert empty == {"doi": DOI, "latest": None, "checks": []}

        records = CheckRecords(catalogue=p.pipeline.catalogue)
        now = datetime.now(UTC)
        first = records.record(result(now - timedelta(days=1)))
        second = records.record(result(now, printed=HOSTILE))

        body = json.loads((await p.fetch(f"/api/publications/{DOI}/checks")).body)
        assert [c["id"] for c in body["checks"]] == [second, first]
        assert body["latest"]["verdict"] == "runs, results differ"
        assert body["latest"]["differences"][0]["executed"] == HOSTILE
        assert body["checks"][1]["verdict"] == "reproducible"
        limited = json.loads((await p.fetch(f"/api/publications/{DOI}/checks?limit=1")).body)
        assert [c["id"] for c in limited["checks"]] == [second]

        badge = await p.fetch(f"/badge/doi/{DOI}/reproducible.svg", accept="image/svg+xml")
        assert badge.code == 200
        assert badge.headers["Content-Type"].startswith("image/svg+xml")
        assert "max-age" in badge.headers["Cache-Control"]
        assert b"<script" not in badge.body
        svg = ElementTree.fromstring(badge.body)  # well-formed whatever the message held
        assert "runs, results differ" in "".join(svg.itertext())
        assert HOSTILE in "".join(svg.itertext())  # as text, escaped in the document

        p.add_publication("10.5555/other.paper")
        records.record(CheckResult.from_dict({**result(now).to_dict(), "doi": "10.5555/other.paper"}))
        scraped = await scrape_until(p, 'panbinder_check_verdicts{verdict="runs, results differ"} 1.0')
        assert 'panbinder_check_verdicts{verdict="reproducible"} 1.0' in scraped  # the last check only
        assert 'panbinder_check_verdicts{verdict="does not run"} 0.0' in scraped

        unknown = await p.fetch("/api/publications/10.5555/nobody/checks")
        assert unknown.code == 404
        assert "No publication with DOI 10.5555/nobody" in json.loads(unknown.body)["message"]
        launch = await p.fetch(f"/badge/doi/{DOI}.svg", accept="image/svg+xml")
        assert launch.code == 200 and b"launch" in launch.body  # the launch badge is still there


async def test_publication_page_shows_the_last_verdict_and_history(tmp_path):
    async with web_portal(tmp_path) as p:
        p.add_publication(DOI)
        page = (await p.fetch(f"/publications/{DOI}", accept="text/html")).body.decode()
        assert "Not checked yet." in page
        records = CheckRecords(catalogue=p.pipeline.catalogue)
        now = datetime.now(UTC)
        records.record(result(now - timedelta(days=2)))
        records.record(
            CheckResult.from_dict({**result(now, printed=HOSTILE).to_dict(), "diff": f"- 42\n+ {HOSTILE}"})
        )
        page = (await p.fetch(f"/publications/{DOI}", accept="text/html")).body.decode()
        assert "reproducible.svg" in page and "last checked " + now.strftime("%Y-%m-%d") in page
        assert "same results: a.ipynb, cell 1: &lt;script&gt;" in page
        assert "<script>alert" not in page  # the message, the steps, the diff and the chart escape it
        chart = page[page.index("<figure") : page.index("</figure>")]
        assert chart.count("<rect ") == 90 and "#dfb317" in chart and "#2e8540" in chart
        assert "What changed" in page and "+ &lt;script&gt;" in page
