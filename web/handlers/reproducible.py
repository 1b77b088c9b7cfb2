"""``/badge/doi/<doi>/reproducible.svg``: the verdict of a publication's last check, with its date;
and what the publication page shows of its checks (``page_checks``).

Rendered by ``checks.svg.badge`` (every value escaped for XML there); cached for a few minutes
(a check runs nightly, so a badge changes at most once a night).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from panbinder.checks.records import CheckRecords
from panbinder.checks.svg import badge, history_chart
from panbinder.checks.verdict import CheckResult
from panbinder.executor import run_blocking

from ..api.catalogue import CatalogueHandler

MAX_AGE = 300  # seconds


def badge_of(records: CheckRecords, doi: str) -> str:
    latest = records.latest(doi)
    return badge(doi, latest.result if latest is not None else None)


def page_checks(records: CheckRecords, doi: str, *, nights: int = 90) -> dict[str, Any]:
    """The last check (``CheckResult`` or None) and the history chart (SVG, every value escaped
    by ``checks.svg``) of the last ``nights`` nights."""
    history: list[CheckResult] = [c.result for c in records.history(doi, limit=nights * 2)]
    today = datetime.now(UTC).date()
    chart = history_chart(history, today=today, nights=nights) if history else ""
    return {"latest": history[0] if history else None, "chart": chart}


class ReproducibleBadge(CatalogueHandler):
    async def get(self, doi: str) -> None:
        records = CheckRecords(catalogue=self.catalogue, log=self.log)
        svg = await run_blocking(badge_of, records, doi)
        self.set_header("Content-Type", "image/svg+xml; charset=utf-8")
        self.set_header("Cache-Control", f"public, max-age={MAX_AGE}")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_cors()
        self.finish(svg)


routes = [(r"/badge/doi/(.+)/reproducible\.svg", ReproducibleBadge)]
