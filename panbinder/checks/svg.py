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
from datetime import UTC, date, datetime, timedelta
from typing import Protocol
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


class Checked(Protocol):
    """What the history chart reads of a check: a ``CheckResult`` or a ``records.CheckMark``."""

    started: datetime
    restored: bool

    @property
    def verdict(self) -> Verdict: ...

    @property
    def message(self) -> str: ...


def _per_night(checks: Iterable[Checked]) -> dict[date, Checked]:
    last: dict[date, Checked] = {}
    for check in sorted(checks, key=lambda c: c.started):
        last[check.started.astimezone(UTC).date()] = check
    return last


def history_chart(checks: Iterable[Checked], *, today: date, nights: int = 90, title: str = "") -> str:
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


NOT_CHECKED_NIGHT = "not checked that night"


def overview_chart(
    nights: Iterable[tuple[date, dict[str, int], int]], *, today: date, days: int = 90, title: str = ""
) -> str:
    """Stacked counts per night over the last ``days`` nights: for each night, how many
    publications got each verdict (``(night, {verdict value: count}, registered by then)``),
    the most severe at the bottom (so failures line up on the axis), reproducible above them, and
    in pale grey how many registered ones were not checked that night. Each bar segment's
    ``<title>`` gives the night, the verdict and the count; the legend lists them top to bottom.
    Every value is escaped here."""
    by_night = {night: (counts, registered) for night, counts, registered in nights}
    order = [*reversed(list(COLOURS))]  # from the bottom: archive damaged ... reproducible
    step, top, height, legend_h = 8, 16, 120, 18 * (len(order) + 1) + 8
    tallest = max([max(r, sum(c.values())) for c, r in by_night.values()] + [1])
    width = days * step + 40
    parts = []
    for offset in range(days):
        night = today - timedelta(days=days - 1 - offset)
        counts, registered = by_night.get(night, ({}, 0))
        unchecked = max(registered - sum(counts.values()), 0) if night in by_night else 0
        segments = [(v.value, COLOURS[v], counts.get(v.value, 0)) for v in order]
        segments.append((NOT_CHECKED_NIGHT, NO_CHECK, unchecked))
        y = top + height
        for label, colour, count in segments:
            if count <= 0:
                continue
            h = height * count / tallest
            y -= h
            parts.append(
                f'<rect x="{36 + offset * step}" y="{y:.2f}" width="{step - 1}" height="{h:.2f}" '
                f'fill="{xml(colour)}"><title>{xml(f"{night.isoformat()}: {count} {label}")}</title></rect>'
            )
    first = today - timedelta(days=days - 1)
    axis = (
        f'<g font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="10" fill="#333">'
        f'<text x="32" y="{top + 4}" text-anchor="end">{tallest}</text>'
        f'<text x="32" y="{top + height}" text-anchor="end">0</text>'
        f'<text x="36" y="{top + height + 14}">{xml(first.isoformat())}</text>'
        f'<text x="{width - 2}" y="{top + height + 14}" text-anchor="end">{xml(today.isoformat())}</text>'
    )
    legend_top = top + height + 28
    for index, (label, colour) in enumerate(
        [(NOT_CHECKED_NIGHT, NO_CHECK)] + [(v.value, COLOURS[v]) for v in reversed(order)]
    ):
        y = legend_top + 18 * index
        axis += (
            f'<rect x="36" y="{y}" width="12" height="12" fill="{xml(colour)}"/>'
            f'<text x="54" y="{y + 10}">{xml(label)}</text>'
        )
    axis += "</g>"
    label = title or f"publications by verdict, per night, over the last {days} nights"
    total_height = legend_top + legend_h
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{total_height}" '
        f'role="img" aria-label="{xml(label)}"><title>{xml(label)}</title>'
        f'<line x1="35" y1="{top + height}" x2="{width}" y2="{top + height}" stroke="#999"/>'
        + "".join(parts)
        + axis
        + "</svg>"
    )
