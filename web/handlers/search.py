"""The search pages: /datasets (faceted search, "my datasets" with ?mine=1) and /publications.

Rendered on the server from the same results as the JSON twin (``api/search.py``); every
link is the whole query, so facets, sorting and paging work without a script and with the
keyboard alone, and the address bar is always a permalink.
"""

from __future__ import annotations

import dataclasses
from urllib.parse import quote, urlencode

from panbinder.data_mounts.search_query import (
    DATASET_SORTS,
    FACET_LABELS,
    PER_PAGE,
    PUBLICATION_SORTS,
    SearchQuery,
)

from ..api.search import SearchHandler


class Links:
    """URLs of a search page for the template: the query with one thing changed."""

    def __init__(self, path: str, query: SearchQuery, api_path: str = "") -> None:
        self.path, self.query, self.api_path = path, query, api_path

    def api(self) -> str:
        """The same search from the JSON API."""
        params = urlencode(self.query.params())
        return self.api_path + (f"?{params}" if params else "")

    def url(self, query: SearchQuery) -> str:
        params = urlencode(query.params())
        return self.path + (f"?{params}" if params else "")

    def facet(self, name: str, value: str) -> str:
        return self.url(self.query.toggled(name, value))

    def page(self, number: int) -> str:
        return self.url(self.query.at_page(number))

    def sort(self, order: str) -> str:
        return self.url(dataclasses.replace(self.query, sort=order, page=1))

    def per_page(self, n: int) -> str:
        return self.url(dataclasses.replace(self.query, per_page=n, page=1))

    def mine(self, on: bool) -> str:
        return self.url(dataclasses.replace(self.query, mine=on, page=1))

    def hidden(self) -> list[tuple[str, str]]:
        """The query's parameters other than the text, for the search form."""
        return [(k, v) for k, v in self.query.params() if k not in ("q", "page")]


def pages(total: int, query: SearchQuery) -> list[int]:
    """Page numbers to offer: first, last and two either side of the current one."""
    last = max(1, -(-total // query.per_page))
    near = range(max(1, query.page - 2), min(last, query.page + 2) + 1)
    return sorted({1, last, *near})


class DatasetSearchPage(SearchHandler):
    async def get(self) -> None:
        query = self.search_query()
        who = await self.who()
        if query.mine and who.anonymous:  # sign in first, then come back to this very search
            self.redirect(f"{self.settings['base_url']}login?next={quote(self.request.uri, safe='')}")
            return
        found, who = await self.dataset_results(query)
        base = self.settings["base_url"]
        links = Links(f"{base}datasets", query, f"{base}api/search/datasets")
        self.render(
            "datasets.html",
            query=query,
            found=found,
            links=links,
            pages=pages(found["total"], query),
            sorts=DATASET_SORTS,
            per_pages=PER_PAGE,
            facet_labels=FACET_LABELS,
            who=who,
        )


class PublicationSearchPage(SearchHandler):
    async def get(self) -> None:
        query = self.search_query(PUBLICATION_SORTS, ("year",))
        found = await self.publication_results(query)
        links = Links(f"{self.settings['base_url']}publications", query)
        self.render(
            "publications.html",
            query=query,
            found=found,
            links=links,
            pages=pages(found["total"], query),
            sorts=PUBLICATION_SORTS,
            per_pages=PER_PAGE,
        )


routes = [(r"/datasets", DatasetSearchPage), (r"/publications", PublicationSearchPage)]
