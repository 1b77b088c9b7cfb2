"""HTML pages: the home page and the launch page that follows the event stream."""

from __future__ import annotations

import json

from panbinder.builder import get_provider_class

from .base import BaseHandler


class HomeHandler(BaseHandler):
    def get(self) -> None:
        self.render("index.html", base_url=self.settings["base_url"])


class LaunchPageHandler(BaseHandler):
    def get(self, provider_name: str, _spec: str) -> None:
        provider_cls = get_provider_class(provider_name)
        spec = self.provider_spec("v2", provider_name)
        provider = provider_cls(spec, parent=self.settings["app"])  # 4xx on a malformed spec
        query = self.request.query
        stream_url = f"{self.settings['base_url']}build/{provider_name}/{spec}" + (
            f"?{query}" if query else ""
        )
        self.render(
            "launch.html",
            base_url=self.settings["base_url"],
            repo_url=provider.repo_url,
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
