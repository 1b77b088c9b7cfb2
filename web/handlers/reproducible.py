"""``/badge/doi/<doi>/reproducible.svg``: the verdict of a publication's last check, with its date;
what the publication page shows of its checks (``page_checks``); and ``/reproducibility``, the
overview of every publication's last verdict, now and per night (``overview_page``).

Both pages read light (``CheckRecords.publication_checks`` and ``summary``: a few columns, the
counting done by GROUP BY in the database), in the executor, never on the event loop.

Rendered by ``checks.svg.badge`` (every value escaped for XML there); cached for a few minutes
(a check runs nightly, so a badge changes at most once a night).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from panbinder.checks.records import NEVER_CHECKED, CheckRecords
from panbinder.checks.svg import COLOURS, badge, history_chart, overview_chart
from panbinder.executor import run_blocking

from ..api.catalogue import CatalogueHandler

MAX_AGE = 300  # seconds


def badge_of(records: CheckRecords, doi: str) -> str:
    latest = records.latest(doi)
    return badge(doi, latest.result if latest is not None else None)


# the overview's rows: reproducible first, the most severe last, then the never checked
VERDICT_ORDER = [*(v.value for v in COLOURS), NEVER_CHECKED]
OVERVIEW_DAYS, OVERVIEW_ROWS = 90, 1000


def page_checks(records: CheckRecords, doi: str, *, nights: int = 90) -> dict[str, Any]:
    """The last frozen check (``CheckResult`` or None), the last fresh check (``CheckMark`` or
    None: "would still build today") and the frozen checks' history chart (SVG, every value
    escaped by ``checks.svg``) of the last ``nights`` nights."""
    now = datetime.now(UTC)
    checks = records.publication_checks(doi, nights=nights, now=now)
    chart = history_chart(checks.marks, today=now.date(), nights=nights) if checks.marks else ""
    return {"latest": checks.latest, "fresh": checks.fresh, "chart": chart}


def overview_page(records: CheckRecords, *, days: int = OVERVIEW_DAYS, limit: int = OVERVIEW_ROWS) -> dict:
    """The overview's figures (``CheckRecords.summary``) and its chart of counts per night."""
    now = datetime.now(UTC)
    summary = records.summary(days=days, limit=limit, now=now)
    nights = [(n.night, n.counts, summary.registered.get(n.night, 0)) for n in summary.nights]
    chart = overview_chart(nights, today=now.date(), days=days)
    counts = {name: summary.counts.get(name, 0) for name in VERDICT_ORDER}
    return {"summary": summary, "counts": counts, "chart": chart, "days": days, "limit": limit}


class ReproducibleBadge(CatalogueHandler):
    async def get(self, doi: str) -> None:
        records = CheckRecords(catalogue=self.catalogue, log=self.log)
        svg = await run_blocking(badge_of, records, doi)
        self.set_header("Content-Type", "image/svg+xml; charset=utf-8")
        self.set_header("Cache-Control", f"public, max-age={MAX_AGE}")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_cors()
        self.finish(svg)


class ReproducibilityPage(CatalogueHandler):
    """``/reproducibility``: how many publications are reproducible, differ, fail or were never
    checked, now and per night, and each publication's last verdict."""

    async def get(self) -> None:
        records = CheckRecords(catalogue=self.catalogue, log=self.log)
        data = await run_blocking(overview_page, records)
        self.render("reproducibility.html", **data)


routes = [
    (r"/badge/doi/(.+)/reproducible\.svg", ReproducibleBadge),
    (r"/reproducibility", ReproducibilityPage),
]
