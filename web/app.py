"""Build the tornado application from the portal's components."""

from __future__ import annotations

import logging
from pathlib import Path

from tornado import web
from tornado.log import access_log

from panbinder.checks.gauges import track_verdicts
from panbinder.checks.kept import KeptNotebooks
from panbinder.checks.records import CheckRecords
from panbinder.data_mounts.derived_data import DerivedData
from panbinder.data_mounts.review_links import ReviewLinks
from panbinder.data_mounts.sandbox import PreviewSandbox
from panbinder.docker_engine import Docker
from panbinder.launcher.hub_process import HubProcess
from panbinder.logs import scrub
from panbinder.pipeline import PipelineContext

from . import auth
from .api import build, openapi
from .api import catalogue as catalogue_api
from .api import checks as checks_api
from .api import derived as derived_api
from .api import panosc as panosc_api
from .api import restore as restore_api
from .api import review_links as review_links_api
from .api import search as search_api
from .handlers import badge, base, build_logs, health, notebooks, pages, reproducible
from .handlers import catalogue as catalogue_pages
from .handlers import review_links as review_link_pages
from .handlers import search as search_pages
from .urls import public_base

HERE = Path(__file__).parent


def log_request(handler: web.RequestHandler) -> None:
    """Tornado's access log line, with the tokens of the URL removed (``?review_token=`` of a
    review link, ``?token=``): the request line is logged before any handler could clean it."""
    status = handler.get_status()
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    request = handler.request
    access_log.log(
        level,
        "%d %s %s (%s) %.2fms",
        status,
        request.method,
        scrub(request.uri or ""),
        request.remote_ip,
        1000.0 * request.request_time(),
    )


def make_app(
    *,
    pipeline: PipelineContext,
    docker: Docker,
    app: object,
    log: logging.Logger,
    public_url: str,
    base_url: str = "/",
    cors_allow_origin: str = "",
    keepalive_interval: float = 20.0,
    health_timeout: float = 5.0,
    health_cache: float = 10.0,
    identity: object = None,
    hub: HubProcess | None = None,
    thumbnail_cache: object = None,
    preview_sandbox: PreviewSandbox | None = None,
    cookie_secret: str = "",
    kept_notebooks: KeptNotebooks | None = None,
    review_links: ReviewLinks | None = None,
    derived_data: DerivedData | None = None,
    manifest_dir: str = "",
) -> web.Application:
    """``public_url`` (scheme, host, port) starts every absolute link the portal hands out;
    ``hub`` is the JupyterHub the portal started (None: a Hub run elsewhere); ``docker`` is the
    run engine's client, which /health pings; ``kept_notebooks`` holds the notebooks of each
    publication's last check (None: the publication page lists none); ``review_links`` makes and
    checks review links (None: the portal takes none); ``derived_data`` the settings of derived
    datasets registered from servers (None: defaults) and ``manifest_dir`` the folder of the
    launches' MANIFEST.json files (which name a server's publication)."""
    routes = [
        *pages.routes,
        *build.routes,
        *build_logs.routes,
        *badge.routes,
        *health.routes,
        *reproducible.routes,  # before the catalogue's: /badge/doi/(.+)\.svg would take them
        *checks_api.routes,
        *notebooks.routes,  # before the catalogue's: /publications/(.+) would take them
        *search_pages.routes,  # /datasets and /publications: the search pages
        *search_api.routes,
        *catalogue_pages.routes,
        *catalogue_api.routes,
        *panosc_api.routes,
        *review_links_api.routes,
        *restore_api.routes,
        *review_link_pages.routes,
        *derived_api.routes,
        *openapi.routes,
        *auth.routes,
    ]
    prefixed = [(base_url.rstrip("/") + path, handler) for path, handler in routes]
    if pipeline.catalogue is not None:  # /metrics reports the checks' verdicts
        track_verdicts(CheckRecords(catalogue=pipeline.catalogue, log=log))
    return web.Application(
        prefixed,
        default_handler_class=base.NotFoundHandler,
        template_path=str(HERE / "templates"),
        static_path=str(HERE / "static"),
        static_url_prefix=base_url + "static/",
        static_handler_class=base.StaticHandler,
        pipeline=pipeline,
        docker=docker,
        app=app,
        log=log,
        base_url=base_url,
        public_base=public_base(public_url, base_url),
        cors_allow_origin=cors_allow_origin,
        keepalive_interval=keepalive_interval,
        health_timeout=health_timeout,
        health_cache=health_cache,
        identity=identity,
        hub=hub,
        thumbnail_cache=thumbnail_cache,
        preview_sandbox=preview_sandbox or PreviewSandbox(log=log),
        cookie_secret=cookie_secret or None,
        kept_notebooks=kept_notebooks,
        review_links=review_links,
        derived_data=derived_data or DerivedData(log=log),
        manifest_dir=manifest_dir,
        log_function=log_request,
        compress_response=False,
    )


STATIC_SETTINGS = ("static_path", "static_url_prefix", "static_handler_class", "template_path")


def derived_app(portal: web.Application) -> web.Application:
    """The portal's second application, for its listener on the address servers reach: the
    registration of derived datasets (``api/derived.py``) and nothing else, with the portal's
    settings (catalogue, launcher, identity)."""
    settings = {k: v for k, v in portal.settings.items() if k not in STATIC_SETTINGS}
    base_url = settings["base_url"]
    routes = [(base_url.rstrip("/") + path, handler) for path, handler in derived_api.routes]
    return web.Application(routes, **{**settings, "default_handler_class": base.NotFoundHandler})
