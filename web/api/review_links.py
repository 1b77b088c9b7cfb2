"""Review links over HTTP: the JSON API of a publication's owners, and the grant a launch carries.

``GET /api/review-links?doi=DOI`` lists a publication's links, ``POST /api/review-links`` (JSON
``{"doi", "expires": "30d", "note"}``) makes one and answers its URL (the only time the token is
shown), ``DELETE /api/review-links/<id>`` revokes one and stops the servers launched through it
(``review_servers.py``; the answer counts them); owners only (``review_links.may_share``).
A launch (``/v2/doi/DOI?review_token=…`` and its ``/build`` stream) takes the token through
``launch_identity``: the request stays anonymous (or its signed-in user) and carries the checked
grant, which only the launch's mount check reads.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from panbinder.data_mounts.access import Identity
from panbinder.data_mounts.review_links import ReviewLinks, link_number
from panbinder.errors import PanbinderError
from panbinder.executor import run_blocking
from panbinder.providers.base import RepoProvider
from panbinder.providers.doi import DoiProvider

from ..handlers.base import BaseHandler
from ..urls import review_url

REVIEW_ARGUMENT = "review_token"  # "...token=" is what the log scrubber removes


def review_links(handler: BaseHandler) -> ReviewLinks:
    links = handler.settings.get("review_links")
    if links is None or handler.settings["pipeline"].catalogue is None:
        raise PanbinderError(
            "This service has no review links; open the publication's usual launch link.",
            reason="no_review_links",
            status_code=403,
        )
    return links


async def launch_identity(handler: BaseHandler, provider: RepoProvider, *, record: bool) -> Identity:
    """Who launches, with the grant of the request's review link if it has one (checked here:
    signature, publication, expiry, revocation; a 403 otherwise). ``record``: a use."""
    who = await handler.settings["identity"].identify(handler)
    token = handler.get_argument(REVIEW_ARGUMENT, "")
    if not token:
        return who
    links = review_links(handler)
    if not isinstance(provider, DoiProvider):
        raise PanbinderError(
            "A review link launches only its publication (v2/doi/...); open the link as you received it.",
            reason="review_wrong_publication",
            status_code=403,
        )
    catalogue = handler.settings["pipeline"].catalogue
    grant = await run_blocking(links.redeem, catalogue, token, provider.doi, record=record)
    return dataclasses.replace(who, review=grant)


async def revoke(handler: BaseHandler, link_id: str, who: Identity) -> dict:
    """Revoke link ``link_id`` for ``who`` and stop the servers launched through it: the API's
    answer (the link, how many servers were stopped, how many are left to the sweep)."""
    links, number = review_links(handler), link_number(link_id)
    pipeline = handler.settings["pipeline"]
    if pipeline.review_servers is None:  # a portal that launches nothing
        link = await run_blocking(lambda: links.revoke(pipeline.catalogue, number, who=who))
        return {"review_link": link, "stopped_servers": 0, "servers_left": 0}
    link, stopped, left = await pipeline.review_servers.revoke(number, who=who)
    return {"review_link": link, "stopped_servers": len(stopped), "servers_left": len(left)}


class ReviewLinksAPI(BaseHandler):
    """Signed-in owners; a browser's cookie counts only with the XSRF token (JupyterHub's rule)."""

    def body(self) -> dict[str, Any]:
        try:
            data = json.loads(self.request.body or b"{}")
        except ValueError:
            data = None
        if not isinstance(data, dict) or not all(isinstance(data.get(k, ""), str) for k in data):
            raise PanbinderError(
                'Send JSON like {"doi": "10.5555/x", "expires": "30d", "note": "..."}.', reason="bad_body"
            )
        return data

    async def get(self, link_id: str = "") -> None:
        links, who = review_links(self), await self.settings["identity"].identify(self)
        doi = self.get_argument("doi", "")
        rows = await run_blocking(lambda: links.listing(self.settings["pipeline"].catalogue, doi, who=who))
        self.finish({"doi": doi, "review_links": rows})

    async def post(self, link_id: str = "") -> None:
        links, who = review_links(self), await self.settings["identity"].identify(self)
        data = self.body()
        catalogue = self.settings["pipeline"].catalogue
        token, link = await run_blocking(
            lambda: links.create(
                catalogue, data.get("doi", ""), data.get("expires", "30d"), note=data.get("note", ""), who=who
            )
        )
        self.set_status(201)
        self.finish({"url": review_url(self.public_base, link["doi"], token), "review_link": link})

    async def delete(self, link_id: str = "") -> None:
        self.finish(await revoke(self, link_id, await self.settings["identity"].identify(self)))


routes = [(r"/api/review-links", ReviewLinksAPI), (r"/api/review-links/([^/]+)", ReviewLinksAPI)]
