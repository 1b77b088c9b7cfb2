"""``/api/publications/<doi>/checks``: a publication's reproducibility checks, newest first (JSON).

The handler reads the catalogue's ``checks`` table (``checks.records``) and returns each check
as ``CheckResult.to_dict()`` with its id; ``latest`` is the newest (null when never checked).
"""

from __future__ import annotations

from panbinder.checks.records import CheckRecords
from panbinder.executor import run_blocking

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


routes = [(r"/api/publications/(.+)/checks", ChecksAPI)]
