"""The reproducibility badge and the history chart: well-formed SVG whatever the DOI or message says."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime, timedelta

import pytest

from panbinder.checks.svg import COLOURS, NO_CHECK, UNCHECKED, badge, history_chart
from panbinder.checks.verdict import CheckResult, Kind, Status, Step, StepResult, Verdict

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE_DOI = "10.1234/x\"><script>alert(1)</script><a href='javascript:0'>&amp;"
HOSTILE_MESSAGE = "cell 2 raised KeyError: '</title><script>alert(1)</script>' & \x00\x1b[31m \"quoted\""


def result(
    started: datetime, failed: Step | None = None, message: str = "", restored: bool = False
) -> CheckResult:
    steps = tuple(
        StepResult(
            step,
            Status.FAILED if step == failed else Status.PASSED,
            message=message if step == failed else "",
        )
        for step in (Step.ARCHIVE, Step.LAUNCH, Step.RUN, Step.RESULTS)
    )
    return CheckResult("10.1/x", Kind.FROZEN, started, steps, restored=restored)


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)  # raises on anything that is not well-formed XML
    assert root.tag == f"{SVG}svg"
    assert not list(root.iter(f"{SVG}script"))
    assert not [e for e in root.iter() if any(k.endswith("href") for k in e.attrib)]
    return root


@pytest.mark.parametrize(
    ("failed", "verdict"),
    [
        (None, Verdict.REPRODUCIBLE),
        (Step.RESULTS, Verdict.DIFFERS),
        (Step.RUN, Verdict.DOES_NOT_RUN),
        (Step.ARCHIVE, Verdict.ARCHIVE_DAMAGED),
    ],
)
def test_the_badge_shows_the_verdict_its_colour_and_the_date(failed, verdict):
    root = parse(badge("10.1/x", result(datetime(2026, 12, 1, 2, 0, tzinfo=UTC), failed, "why")))
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert texts == ["reproducible", f"{verdict.value} · 2026-12-01"]
    assert COLOURS[verdict] in [r.get("fill") for r in root.iter(f"{SVG}rect")]


def test_a_publication_never_checked_gets_a_grey_badge():
    root = parse(badge("10.1/x", None))
    assert [t.text for t in root.iter(f"{SVG}text")][1] == "not checked yet"
    assert UNCHECKED in [r.get("fill") for r in root.iter(f"{SVG}rect")]


def test_hostile_doi_and_message_are_escaped_in_the_badge():
    svg = badge(HOSTILE_DOI, result(datetime(2026, 12, 1, tzinfo=UTC), Step.RUN, HOSTILE_MESSAGE))
    root = parse(svg)
    title = root.find(f"{SVG}title").text
    assert HOSTILE_DOI in title  # the text survives, as text
    assert "<script>" not in svg and "\x00" not in svg and "\x1b" not in svg
    assert "'</title><script>alert(1)</script>'" in title


def test_the_history_chart_has_one_mark_per_night_coloured_by_that_nights_last_verdict():
    today = date(2026, 12, 10)
    night = datetime(2026, 12, 8, 2, tzinfo=UTC)
    checks = [
        result(night, Step.RUN, "raised"),
        result(night + timedelta(hours=2)),  # later the same night: this one counts
        result(night + timedelta(days=1), Step.RESULTS, HOSTILE_MESSAGE, restored=True),
    ]
    root = parse(history_chart(checks, today=today, nights=5, title=HOSTILE_DOI))
    marks = root.findall(f"{SVG}rect")
    assert [m.get("fill") for m in marks] == [
        NO_CHECK,
        NO_CHECK,
        COLOURS[Verdict.REPRODUCIBLE],
        COLOURS[Verdict.DIFFERS],
        NO_CHECK,
    ]
    tips = [m.find(f"{SVG}title").text for m in marks]
    assert tips[2] == "2026-12-08: reproducible"
    assert tips[3].startswith("2026-12-09: runs, results differ: cell 2 raised KeyError: '</title>")
    assert tips[3].endswith("(restored from the archive)")
    assert tips[0] == "2026-12-06: no check"
    assert root.get("aria-label") == HOSTILE_DOI
