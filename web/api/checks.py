"""``/api/publications/<doi>/checks``: a publication's reproducibility checks, newest first (JSON);
``/api/checks/summary``: the reproducibility overview (``/reproducibility``) as JSON.

The handler reads the catalogue's ``checks`` table (``checks.records``) and returns each check
as ``CheckResult.to_dict()`` with its id; ``latest`` is the newest (null when never checked).
The summary counts each publication's last frozen check (``never checked`` too), per night over
the last ``days`` nights, and lists the first ``limit`` publications by DOI with their verdict.
"""

from __future__ import annotations

from typing import Any

from panbinder.checks.records import CheckRecords
from panbinder.executor import run_blocking

from ..handlers.reproducible import OVERVIEW_DAYS, OVERVIEW_ROWS, VERDICT_ORDER
from .catalogue import CatalogueHandler


def checks_of(records: CheckRecords, doi: str, limit: int) -> dict:
    history = records.history(doi, limit=limit)
    checks = [{**c.result.to_dict(), "id": c.id} for c in history]
    return {"doi": doi, "latest": checks[0] if checks else None, "checks": checks}


class ChecksAPI(CatalogueHandler):
    async def get(self, doi: str) -> None:
        limit = self.int_arg("limit", 30, 366)
        records = CheckRecords(catalogue=self.catalogue, log=self.log)
        body = await run_blocking(checks_of, records, doi, limit)
        self.set_cors()
        self.finish(body)


def summary_json(records: CheckRecords, *, days: int, limit: int) -> dict[str, Any]:
    """``/api/checks/summary``: the overview page's figures as JSON."""
    summary = records.summary(days=days, limit=limit)
    return {
        "counts": {name: summary.counts.get(name, 0) for name in VERDICT_ORDER},
        "total": summary.total,
        "days": days,
        "nights": [
            {
                "night": n.night.isoformat(),
                "counts": n.counts,
                "registered": max(summary.registered.get(n.night, 0), n.total),
            }
            for n in summary.nights
        ],
        "limit": limit,
        "publications": [
            {
                "doi": p.doi,
                "title": p.title,
                "verdict": p.verdict,
                "failed_step": p.failed_step,
                "message": p.message,
                "checked": p.started.isoformat() if p.started else None,
            }
            for p in summary.publications
        ],
    }


class ChecksSummaryAPI(CatalogueHandler):
    async def get(self) -> None:
        days = max(self.int_arg("days", OVERVIEW_DAYS, 366), 1)
        limit = self.int_arg("limit", OVERVIEW_ROWS, 10_000)
        records = CheckRecords(catalogue=self.catalogue, log=self.log)
        body = await run_blocking(lambda: summary_json(records, days=days, limit=limit))
        self.set_cors()
        self.finish(body)


routes = [
    (r"/api/checks/summary", ChecksSummaryAPI),
    (r"/api/publications/(.+)/checks", ChecksAPI),
]
