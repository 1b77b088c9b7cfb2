"""The PaNOSC search API (``/api/Datasets``, ``/api/Documents``, ``/api/Instruments``), so the
facility's catalogue can join the PaNOSC federated search.

Each handler reads the ``filter`` (or, for ``/count``, ``where``) query parameter and the
optional ``query`` words, and calls one function of ``data_mounts.panosc.search``. Requests are
answered as for an anonymous user: embargoed datasets show no files or size. The portal that
federates providers calls the plural paths with a capital (``/api/Documents``); its search page
also calls ``/api/documents``, so documents and instruments answer in lower case too
(``/api/datasets`` is panbinder's own dataset list).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from panbinder.data_mounts.panosc import filters, search
from panbinder.errors import PanbinderError

from .catalogue import CatalogueHandler


class PanoscHandler(CatalogueHandler):
    model = "Dataset"

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Content-Type", "application/json; charset=UTF-8")

    def parsed_filter(self) -> filters.Filter:
        raw = filters.decode(self.get_argument("filter", None), "filter")
        return filters.parse_filter(self.model, raw, query=self.get_argument("query", ""))

    async def answer(self, fn) -> Any:
        now = datetime.now(UTC)
        cap = max(1, self.catalogue.panosc_max_limit)
        most = max(1, self.catalogue.panosc_max_records)
        result = await self.query(lambda cat, session: fn(session, now, cap, most))
        self.set_cors()
        return result


class FindHandler(PanoscHandler):
    async def get(self) -> None:
        flt = self.parsed_filter()
        records = await self.answer(
            lambda s, now, cap, most: search.find(s, flt, now=now, cap=cap, max_records=most)
        )
        self.finish(json.dumps(records))


class CountHandler(PanoscHandler):
    async def get(self) -> None:
        where = filters.parse_where(self.model, filters.decode(self.get_argument("where", None), "where"))
        total = await self.answer(lambda s, now, cap, most: search.count(s, self.model, where, now=now))
        self.finish({"count": total})


class GetHandler(PanoscHandler):
    async def get(self, pid: str) -> None:
        flt = self.parsed_filter()
        record = await self.answer(
            lambda s, now, cap, most: search.get(s, flt, pid, now=now, cap=cap, max_records=most)
        )
        if record is None:
            raise PanbinderError(
                f"No {self.model.lower()} with PID '{pid}' is in this catalogue; check the PID.",
                reason="not_found",
                status_code=404,
            )
        self.finish(record)


def _handlers(model: str) -> tuple[type, type, type]:
    attrs = {"model": model}
    return tuple(
        type(f"{model}{base.__name__}", (base,), attrs) for base in (FindHandler, CountHandler, GetHandler)
    )


DATASETS, DOCUMENTS, INSTRUMENTS = (_handlers(m) for m in ("Dataset", "Document", "Instrument"))

routes = [
    (r"/api/Datasets", DATASETS[0]),
    (r"/api/Datasets/count", DATASETS[1]),
    (r"/api/Datasets/(.+)", DATASETS[2]),
    (r"/api/(?:Documents|documents)", DOCUMENTS[0]),
    (r"/api/(?:Documents|documents)/count", DOCUMENTS[1]),
    (r"/api/(?:Documents|documents)/(.+)", DOCUMENTS[2]),
    (r"/api/(?:Instruments|instruments)", INSTRUMENTS[0]),
    (r"/api/(?:Instruments|instruments)/count", INSTRUMENTS[1]),
    (r"/api/(?:Instruments|instruments)/(.+)", INSTRUMENTS[2]),
]
