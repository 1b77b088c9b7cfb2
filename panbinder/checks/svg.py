"""SVG renderings of checks: the reproducibility badge and the history chart (server-side, no assets).

Both are self-contained SVG documents: no scripts, fonts, links or external references, so a
paper, a README or the portal's CSP can embed them as images. Every value that comes from
outside (a DOI, a verdict's message, which may quote an exception or a printed value) is
escaped for XML where it is written, and characters XML 1.0 cannot hold at all (control
characters) are dropped first, so the document stays well-formed whatever a notebook printed.
``render_badge`` draws the launch badge (``web/handlers/badge.py``) too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, timedelta
from xml.sax.saxutils import escape

from .verdict import CheckResult, Verdict

COLOURS = {
    Verdict.REPRODUCIBLE: "#2e8540",
    Verdict.DIFFERS: "#dfb317",
    Verdict.DOES_NOT_RUN: "#e05d44",
    Verdict.DOES_NOT_BUILD: "#b0352b",
    Verdict.ARCHIVE_DAMAGED: "#6f42c1",
}
UNCHECKED = "#9f9f9f"
NO_CHECK = "#e4e4e4"
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

BADGE = """<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="20" role="img" aria-label="{left}: {right}">
<title>{title}</title>
<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient>
<clipPath id="r"><rect width="{w}" height="20" rx="3" fill="#fff"/></clipPath>
<g clip-path="url(#r)"><rect width="{lw}" height="20" fill="#555"/><rect x="{lw}" width="{rw}" height="20" fill="{color}"/><rect width="{w}" height="20" fill="url(#s)"/></g>
<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11">
<text x="{lx}" y="14">{left}</text><text x="{rx}" y="14">{right}</text></g></svg>"""


def xml(value: object) -> str:
    """``value`` as XML text or attribute content (quotes escaped too)."""
    text = _NOT_XML.sub("", str(value))
    return escape(text, {'"': "&quot;", "'": "&apos;"})


def badge(doi: str, latest: CheckResult | None) -> str:
    """The badge for ``/badge/doi/<doi>/reproducible.svg``: the verdict and the date of the check."""
    left = "reproducible"
    if latest is None:
        right, color, title = "not checked yet", UNCHECKED, f"{doi}: not checked yet"
    else:
        verdict = latest.verdict
        day = latest.started.astimezone(UTC).date().isoformat()
        right, color = f"{verdict.value} · {day}", COLOURS[verdict]
        title = f"{doi}: {verdict.value} (checked {day})" + (f": {latest.message}" if latest.message else "")
    return render_badge(left, right, color, title=title[:500])


def render_badge(left: str, right: str, color: str, *, title: str = "") -> str:
    """A two-part badge (grey ``left``, ``right`` on ``color``), every value escaped here; the
    launch badge (``web/handlers/badge.py``) and the reproducibility badge share it."""
    lw, rw = 7 * len(left) + 10, 7 * len(right) + 10
    return BADGE.format(
        w=lw + rw,
        lw=lw,
        rw=rw,
        lx=lw / 2,
        rx=lw + rw / 2,
        left=xml(left),
        right=xml(right),
        title=xml(title or f"{left}: {right}"),
        color=xml(color),
    )


def _per_night(checks: Iterable[CheckResult]) -> dict[date, CheckResult]:
    last: dict[date, CheckResult] = {}
    for check in sorted(checks, key=lambda c: c.started):
        last[check.started.astimezone(UTC).date()] = check
    return last


def history_chart(checks: Iterable[CheckResult], *, today: date, nights: int = 90, title: str = "") -> str:
    """One mark per night over the last ``nights`` nights, coloured by that night's (last) verdict.

    Nights without a check get a pale mark, so a gap in the schedule shows. Each mark's
    ``<title>`` (a tooltip) gives the date, the verdict and its message.
    """
    per_night = _per_night(checks)
    step, top, height = 6, 4, 24
    width = nights * step + 2
    marks = []
    for offset in range(nights):
        night = today - timedelta(days=nights - 1 - offset)
        check = per_night.get(night)
        if check is None:
            colour, tip = NO_CHECK, f"{night.isoformat()}: no check"
        else:
            colour = COLOURS[check.verdict]
            tip = f"{night.isoformat()}: {check.verdict.value}" + (
                f": {check.message}" if check.message else ""
            )
            tip += " (restored from the archive)" if check.restored else ""
        marks.append(
            f'<rect x="{1 + offset * step}" y="{top}" width="{step - 1}" height="{height}" '
            f'fill="{xml(colour)}"><title>{xml(tip[:500])}</title></rect>'
        )
    label = title or f"reproducibility over the last {nights} nights"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 2 * top}" '
        f'role="img" aria-label="{xml(label)}"><title>{xml(label)}</title>' + "".join(marks) + "</svg>"
    )
