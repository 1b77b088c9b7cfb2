"""``/badge/doi/<doi>/reproducible.svg``: the verdict of a publication's last check, with its date.

Rendered by ``checks.svg.badge`` (every value escaped for XML there); cached for a few minutes
(a check runs nightly, so a badge changes at most once a night).
"""

from __future__ import annotations

from panbinder.checks.records import CheckRecords
from panbinder.checks.svg import badge
from panbinder.executor import run_blocking

from ..api.catalogue import CatalogueHandler

MAX_AGE = 300  # seconds


def badge_of(records: CheckRecords, doi: str) -> str:
    latest = records.latest(doi)
    return badge(doi, latest.result if latest is not None else None)


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
