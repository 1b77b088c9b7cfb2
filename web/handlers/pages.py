"""HTML pages: the home page and the launch page that follows the event stream.

The launch page hands its values (event stream URL, launch targets) to ``launch.js`` in
``data-`` attributes escaped by the template, never in an inline script.
"""

from __future__ import annotations

from urllib.parse import quote

from panbinder.data_mounts.search import count_dataset_launches, count_launch
from panbinder.executor import run_blocking
from panbinder.providers import get_provider_class
from panbinder.providers.doi import DoiProvider
from panbinder.providers.template import TemplateProvider

from ..api.review_links import launch_identity
from ..urls import LAUNCH_TARGETS, launch_targets
from .base import BaseHandler


class HomeHandler(BaseHandler):
    def get(self) -> None:
        self.render("index.html")


class LaunchPageHandler(BaseHandler):
    async def get(self, provider_name: str, _spec: str) -> None:
        # a target that leaves the user's server is refused before anything else happens
        targets = launch_targets({name: self.get_argument(name, "", strip=False) for name in LAUNCH_TARGETS})
        provider_cls = get_provider_class(provider_name)
        spec = self.provider_spec("v2", provider_name)
        provider = self.settings["pipeline"].provider(provider_cls, spec)  # 4xx on a malformed spec
        # refusals (unknown DOI, embargo) show here as a page, before any event stream starts
        who = await launch_identity(self, provider, record=False)
        await provider.prepare(who)
        self.settings["pipeline"].check_policy(provider)
        catalogue = self.settings["pipeline"].catalogue
        if isinstance(provider, DoiProvider) and catalogue is not None:  # launches shown on cards
            await run_blocking(_count_launch, catalogue, provider.doi)
        if isinstance(provider, TemplateProvider) and catalogue is not None:
            await run_blocking(_count_dataset_launches, catalogue, provider.pids)
        self.render(
            "launch.html",
            repo_url=provider.repo_url or provider.spec,
            ref=provider.unresolved_ref,
            stream_url=self.stream_url(provider_name, spec),
            targets=targets,
            workspace=self.settings["pipeline"].launcher.workspace_path(who.name or ""),
        )

    def stream_url(self, provider_name: str, spec: str) -> str:
        query = self.request.query
        if self.hub_auth is not None:  # the event stream is not a page view: it carries the XSRF token
            query = "&".join(q for q in (query, f"_xsrf={quote(self.xsrf_token)}") if q)
        return f"{self.settings['base_url']}build/{provider_name}/{spec}" + (f"?{query}" if query else "")


def _count_launch(catalogue, doi: str) -> None:
    with catalogue.session() as session:
        count_launch(session, doi)


def _count_dataset_launches(catalogue, pids: list[str]) -> None:
    with catalogue.session() as session:
        count_dataset_launches(session, pids)


routes = [(r"/", HomeHandler), (r"/v2/([^/]+)/(.+)", LaunchPageHandler)]
