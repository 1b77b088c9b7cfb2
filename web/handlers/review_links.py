"""The review-link pages of a publication's owners (the button on the publication page).

``POST /review-links`` (form: doi, expires, note) makes a link and shows its URL once;
``GET /review-links?doi=DOI`` lists the links; ``POST /review-links/<id>/revoke`` revokes one and
stops the servers launched through it.
Plain forms with JupyterHub's XSRF token: no script, and a cookie without the token is no one.
"""

from __future__ import annotations

from urllib.parse import quote

from panbinder.executor import run_blocking

from ..api.review_links import review_links, revoke
from ..urls import review_url
from .base import BaseHandler


class ReviewLinksPage(BaseHandler):
    async def show(self, doi: str, new_url: str = "") -> None:
        links, who = review_links(self), await self.settings["identity"].identify(self)
        catalogue = self.settings["pipeline"].catalogue
        rows = await run_blocking(lambda: links.listing(catalogue, doi, who=who))
        self.render("review_links.html", doi=doi, links=rows, new_url=new_url)

    async def get(self) -> None:
        await self.show(self.get_argument("doi", ""))

    async def post(self) -> None:
        links, who = review_links(self), await self.settings["identity"].identify(self)
        catalogue = self.settings["pipeline"].catalogue
        doi, expires, note = (self.get_argument(k, "") for k in ("doi", "expires", "note"))
        token, link = await run_blocking(
            lambda: links.create(catalogue, doi, expires or "30d", note=note, who=who)
        )
        await self.show(link["doi"], review_url(self.public_base, link["doi"], token))


class RevokePage(BaseHandler):
    async def post(self, link_id: str) -> None:
        answer = await revoke(self, link_id, await self.settings["identity"].identify(self))
        doi = answer["review_link"]["doi"]
        self.redirect(f"{self.settings['base_url']}review-links?doi={quote(doi, safe='')}")


routes = [(r"/review-links", ReviewLinksPage), (r"/review-links/([^/]+)/revoke", RevokePage)]
