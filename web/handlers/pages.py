"""HTML pages: the home page and the launch page that follows the event stream."""

from __future__ import annotations

import json
from urllib.parse import quote

from panbinder.builder import get_provider_class

from .base import BaseHandler


class HomeHandler(BaseHandler):
    def get(self) -> None:
        self.render("index.html", base_url=self.settings["base_url"])


class LaunchPageHandler(BaseHandler):
    async def get(self, provider_name: str, _spec: str) -> None:
        provider_cls = get_provider_class(provider_name)
        spec = self.provider_spec("v2", provider_name)
        provider = provider_cls(spec, parent=self.settings["app"])  # 4xx on a malformed spec
        # refusals (unknown DOI, embargo) show here as a page, before any event stream starts
        await provider.prepare(await self.settings["identity"].identify(self))
        self.settings["pipeline"].check_policy(provider)
        query = self.request.query
        if self.hub_auth is not None:  # the event stream is not a page view: it carries the XSRF token
            query = "&".join(q for q in (query, f"_xsrf={quote(self.xsrf_token)}") if q)
        stream_url = f"{self.settings['base_url']}build/{provider_name}/{spec}" + (
            f"?{query}" if query else ""
        )
        self.render(
            "launch.html",
            base_url=self.settings["base_url"],
            repo_url=provider.repo_url or provider.spec,
            ref=provider.unresolved_ref,
            stream_url_json=json.dumps(stream_url),
            targets_json=json.dumps(
                {
                    "urlpath": self.get_argument("urlpath", ""),
                    "labpath": self.get_argument("labpath", ""),
                    "filepath": self.get_argument("filepath", ""),
                }
            ),
        )


routes = [(r"/", HomeHandler), (r"/v2/([^/]+)/(.+)", LaunchPageHandler)]
