"""GET /api/search/datasets and /api/search/publications: the search pages' JSON twin.

The same query parameters as ``/datasets`` and ``/publications`` (``search_query.parse``), the
same cards, the facet counts and the permalink of the page. A card is what a reader may see:
an embargoed dataset shows its lock and release date, never files or a thumbnail, and to readers
who may not open it neither its size nor its sample name.

A card's ``templates`` lists the analysis templates that fit the dataset ("Analyse with"), each
with its launch URL for this one dataset; the basket (``basket.js``) joins several datasets into
one launch of a template. ``/api/templates`` lists every template.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from panbinder.data_mounts import analysis_templates, panet, search
from panbinder.data_mounts.access import Identity, is_open, may_access
from panbinder.data_mounts.search_query import (
    DATASET_SORTS,
    FACET_LABELS,
    FACETS,
    PUBLICATION_SORTS,
    SearchQuery,
    parse,
)
from panbinder.errors import PanbinderError

from ..formatting import human_size
from ..urls import doi_links, path_segment, template_launch_url
from .catalogue import CatalogueHandler

EXCERPT = 220


def _date(value: datetime | None) -> str | None:
    return value.date().isoformat() if value else None


def _excerpt(ds: Any, accessible: bool) -> str:
    """The description, else sample (only to readers who may open the dataset), instrument, probe."""
    text = " ".join((ds.description or "").split())
    if not text:
        sample = f"Sample {ds.sample}" if ds.sample and accessible else ""
        parts = [sample, ds.instrument or "", ds.probe or ""]
        text = " · ".join(p for p in parts if p)
    return text if len(text) <= EXCERPT else text[: EXCERPT - 1].rsplit(" ", 1)[0] + "…"


def thumbnail_url(base_url: str, ds: Any, size: int = 96) -> str | None:
    file, _, path = (ds.preview or "").partition("::")
    if not (file and path):
        return None
    query = urlencode({"file": file, "path": path, "size": size})
    return f"{base_url}api/preview/thumbnail/{path_segment(ds.pid)}?{query}"


def template_link(tpl: Any, pids: list[str], public_base: str) -> dict:
    return {
        "name": tpl.name,
        "title": tpl.title,
        "notebook": tpl.notebook,
        "launch_url": template_launch_url(public_base, tpl.name, pids, tpl.notebook),
    }


def template_json(tpl: Any, base_url: str) -> dict:
    return {
        "name": tpl.name,
        "title": tpl.title,
        "repo_url": tpl.repo_url,
        "ref": tpl.ref,
        "resolved_sha": tpl.resolved_sha,
        "notebook": tpl.notebook,
        "techniques": [{"id": t, "label": panet.label(t) or t} for t in tpl.techniques],
        "formats": list(tpl.formats),
        "search_url": f"{base_url}datasets?{urlencode({'template': tpl.name})}",
    }


def dataset_card(ds: Any, who: Identity, base_url: str, public_base: str, templates: Any = ()) -> dict:
    accessible = may_access(ds, who)
    return {
        "pid": ds.pid,
        "url": f"{base_url}datasets/{path_segment(ds.pid)}",
        "title": ds.title or ds.pid,
        "excerpt": _excerpt(ds, accessible),
        "techniques": [{"id": t.panet_id, "label": t.label or t.panet_id} for t in ds.techniques],
        "facility": ds.facility,
        "instrument": ds.instrument,
        "data_type": ds.data_type,
        "created": _date(ds.creation_date),
        "size": ds.size if accessible else None,
        "size_text": human_size(ds.size) if accessible else "under embargo",
        "file_count": ds.file_count if accessible else None,
        "views": ds.views,
        "launches": ds.launches,
        "open": is_open(ds),
        "accessible": accessible,
        "release_date": _date(ds.release_date),
        "thumbnail": thumbnail_url(base_url, ds) if accessible else None,
        "publications": [
            {"doi": p.doi, "title": p.title, "launch_url": doi_links(public_base, p.doi)["launch_url"]}
            for p in ds.publications
        ],
        # a template's fit may rest on the files' suffixes, which an embargo hides
        "templates": [template_link(t, [ds.pid], public_base) for t in templates] if accessible else [],
    }


def publication_card(pub: Any, base_url: str, public_base: str) -> dict:
    links = doi_links(public_base, pub.doi)
    return {
        "doi": pub.doi,
        "url": f"{base_url}publications/{path_segment(pub.doi)}",
        "title": pub.title or pub.doi,
        "authors": list(pub.authors or ()),
        "year": pub.year,
        "datasets": [
            {"pid": d.pid, "title": d.title or d.pid, "url": f"{base_url}datasets/{path_segment(d.pid)}"}
            for d in pub.datasets
        ],
        "views": pub.views,
        "launches": pub.launches,
        "launch_url": links["launch_url"],
        "badge_url": f"{base_url}badge/doi/{path_segment(pub.doi)}.svg",
    }


def facets_json(result: search.SearchResult) -> list[dict]:
    return [
        {
            "name": name,
            "label": FACET_LABELS.get(name, name),
            "values": [
                {"value": v.value, "label": v.label, "count": v.count, "selected": v.selected} for v in values
            ],
        }
        for name, values in result.facets.items()
    ]


class SearchHandler(CatalogueHandler):
    """Parsing, the signed-in check of "my datasets", and the search run in the executor."""

    def search_query(self, sorts: tuple[str, ...] = DATASET_SORTS, facets=FACETS) -> SearchQuery:
        return parse(lambda name: self.get_arguments(name, strip=False), sorts=sorts, facets=facets)

    async def dataset_results(self, query: SearchQuery) -> tuple[dict, Identity]:
        who = await self.who()
        if query.mine and who.anonymous:
            raise PanbinderError(
                "Sign in to see your datasets (or send a Hub token); leave out 'mine' to search all.",
                reason="sign_in",
                status_code=403,
            )
        base_url, public = self.settings["base_url"], self.public_base

        def fn(cat, session):
            result = search.search_datasets(session, query, who, cache=cat.facet_cache)
            fits = analysis_templates.fitting(session, [ds.id for ds in result.items])
            cards = [dataset_card(ds, who, base_url, public, fits.get(ds.id, ())) for ds in result.items]
            return {"total": result.total, "items": cards, "facets": facets_json(result)}

        return await self.query(fn), who

    async def publication_results(self, query: SearchQuery) -> dict:
        base_url, public = self.settings["base_url"], self.public_base

        def fn(cat, session):
            result = search.search_publications(session, query)
            cards = [publication_card(p, base_url, public) for p in result.items]
            return {"total": result.total, "items": cards, "facets": facets_json(result)}

        return await self.query(fn)

    def envelope(self, query: SearchQuery, found: dict, page_path: str) -> dict:
        params = urlencode(query.params())
        return {
            **found,
            "query": {"q": query.q, "filters": {f: list(v) for f, v in query.filters}, "mine": query.mine},
            "sort": query.order,
            "page": query.page,
            "per_page": query.per_page,
            "permalink": f"{self.public_base}{page_path}" + (f"?{params}" if params else ""),
        }


class DatasetSearchAPI(SearchHandler):
    async def get(self) -> None:
        query = self.search_query()
        found, _who = await self.dataset_results(query)
        self.set_cors()
        self.finish(self.envelope(query, found, "datasets"))


class PublicationSearchAPI(SearchHandler):
    async def get(self) -> None:
        query = self.search_query(PUBLICATION_SORTS, ("year",))
        self.set_cors()
        self.finish(self.envelope(query, await self.publication_results(query), "publications"))


class TemplatesAPI(SearchHandler):
    """Every registered analysis template, by title."""

    async def get(self) -> None:
        base_url = self.settings["base_url"]

        def fn(cat, session):
            return [template_json(t, base_url) for t in analysis_templates.list_templates(session)]

        self.set_cors()
        self.finish({"items": await self.query(fn)})


routes = [
    (r"/api/templates", TemplatesAPI),
    (r"/api/search/datasets", DatasetSearchAPI),
    (r"/api/search/publications", PublicationSearchAPI),
]
