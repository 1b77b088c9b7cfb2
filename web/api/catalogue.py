"""JSON API for datasets and publications (read-only; the same access rules as launches).

Embargoed datasets show their metadata and title, never their files or previews; to readers who
may not open them, not their size, file count or sample name (read from the files) either.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import object_session

from panbinder.data_mounts.access import Identity, is_open, may_access
from panbinder.data_mounts.derived_models import lineage
from panbinder.errors import PanbinderError
from panbinder.executor import run_blocking

from ..handlers.base import BaseHandler
from ..urls import doi_links


def _date(value) -> str | None:
    return value.isoformat() if value else None


def dataset_summary(ds: Any, who: Identity) -> dict:
    accessible = may_access(ds, who)
    return {
        "pid": ds.pid,
        "title": ds.title,
        "facility": ds.facility,
        "instrument": ds.instrument,
        "techniques": [{"id": t.panet_id, "label": t.label} for t in ds.techniques],
        "data_type": ds.data_type,
        "size": ds.size if accessible else None,
        "file_count": ds.file_count if accessible else None,
        "creation_date": _date(ds.creation_date),
        "release_date": _date(ds.release_date),
        "open": is_open(ds),
        "accessible": accessible,
        "views": ds.views,
        "launches": ds.launches,
    }


def dataset_detail(ds: Any, who: Identity) -> dict:
    data = dataset_summary(ds, who)
    data.update(
        {
            "scientific_field": ds.scientific_field,
            "proposal_id": ds.proposal_id,
            "description": ds.description,
            "sample": ds.sample if data["accessible"] else None,
            "probe": ds.probe,
            "end_date": _date(ds.end_date),
            "publications": [{"doi": p.doi, "title": p.title} for p in ds.publications],
        }
    )
    session = object_session(ds)
    if session is not None:  # lineage (derived datasets); who registered it: for its readers only
        data.update(lineage(session, ds))
        if data["origin"] is not None and not data["accessible"]:
            data["origin"]["registered_by"] = None
    if data["accessible"]:
        data["files"] = [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in ds.files]
    else:
        data["files"] = None
        data["embargo"] = "The files of this dataset are under embargo."
    return data


def publication_detail(pub: Any, who: Identity, base: str) -> dict:
    return {
        "doi": pub.doi,
        "title": pub.title,
        "authors": list(pub.authors or ()),
        "year": pub.year,
        "repo_url": pub.repo_url,
        "ref": pub.ref,
        "resolved_sha": pub.resolved_sha,
        "datasets": [dataset_summary(ds, who) for ds in pub.datasets],
        "views": pub.views,
        "launches": pub.launches,
        **doi_links(base, pub.doi),
    }


class CatalogueHandler(BaseHandler):
    @property
    def catalogue(self):
        catalogue = self.settings["pipeline"].catalogue
        if catalogue is None:
            raise PanbinderError(
                "This service has no dataset catalogue.", reason="no_catalogue", status_code=501
            )
        return catalogue

    async def who(self) -> Identity:
        return await self.settings["identity"].identify(self)

    async def query(self, fn, *args):
        """Run ``fn(catalogue, session, *args)`` in the executor, inside one session."""
        catalogue = self.catalogue

        def work():
            with catalogue.session() as session:
                return fn(catalogue, session, *args)

        return await run_blocking(work)

    async def dataset_card(self, pid: str) -> dict:
        """One dataset as this user may see it (404 when unknown)."""
        who = await self.who()

        def fn(cat, session):
            ds = cat.get_dataset(session, pid)
            if ds is None:
                raise _not_found("dataset", pid)
            return dataset_detail(ds, who)

        return await self.query(fn)

    async def publication_card(self, doi: str) -> dict:
        """One publication with its datasets and launch badge (404 when unknown)."""
        who = await self.who()
        base = self.public_base

        def fn(cat, session):
            pub = cat.get_publication(session, doi)
            if pub is None:
                raise _not_found("publication with DOI", doi)
            return publication_detail(pub, who, base)

        return await self.query(fn)

    def int_arg(self, name: str, default: int, top: int) -> int:
        raw = self.get_argument(name, str(default))
        if not (raw.isascii() and raw.isdigit()):  # '²' is a digit to isdigit(), not to int()
            raise PanbinderError(f"'{name}' must be a whole number.", reason="bad_argument")
        digits = raw.lstrip("0") or "0"  # int() refuses more than 4300 digits: cap before
        return top if len(digits) > len(str(top)) else min(int(digits), top)


def _not_found(kind: str, key: str) -> PanbinderError:
    return PanbinderError(
        f"No {kind} '{key}' is registered here; check the identifier.", reason="not_found", status_code=404
    )


class DatasetListAPI(CatalogueHandler):
    async def get(self) -> None:
        who = await self.who()
        filters = {k: self.get_argument(k, "") for k in ("q", "technique", "instrument", "facility")}
        limit, offset = self.int_arg("limit", 50, 500), self.int_arg("offset", 0, 10**9)

        def fn(cat, session):
            rows = cat.list_datasets(session, limit=limit, offset=offset, **filters)
            return [dataset_summary(ds, who) for ds in rows]

        self.set_cors()
        self.finish({"datasets": await self.query(fn), "limit": limit, "offset": offset})


class DatasetAPI(CatalogueHandler):
    async def get(self, pid: str) -> None:
        card = await self.dataset_card(pid)
        self.set_cors()
        self.finish(card)


class PublicationListAPI(CatalogueHandler):
    async def get(self) -> None:
        who = await self.who()
        q = self.get_argument("q", "")
        limit, offset = self.int_arg("limit", 50, 500), self.int_arg("offset", 0, 10**9)
        base = self.public_base

        def fn(cat, session):
            return [
                publication_detail(p, who, base)
                for p in cat.list_publications(session, q=q, limit=limit, offset=offset)
            ]

        self.set_cors()
        self.finish({"publications": await self.query(fn), "limit": limit, "offset": offset})


class PublicationAPI(CatalogueHandler):
    async def get(self, doi: str) -> None:
        card = await self.publication_card(doi)
        self.set_cors()
        self.finish(card)


routes = [
    (r"/api/datasets", DatasetListAPI),
    (r"/api/datasets/(.+)", DatasetAPI),
    (r"/api/publications", PublicationListAPI),
    (r"/api/publications/(.+)", PublicationAPI),
]
