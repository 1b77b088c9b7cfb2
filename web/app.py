"""Build the tornado application from the portal's components."""

from __future__ import annotations

import logging
from pathlib import Path

from tornado import web

from panbinder.checks.gauges import track_verdicts
from panbinder.checks.records import CheckRecords
from panbinder.data_mounts.sandbox import PreviewSandbox
from panbinder.docker_engine import Docker
from panbinder.launcher.hub_process import HubProcess
from panbinder.pipeline import PipelineContext

from . import auth
from .api import build, openapi
from .api import catalogue as catalogue_api
from .api import checks as checks_api
from .handlers import badge, base, build_logs, health, pages, reproducible
from .handlers import catalogue as catalogue_pages
from .urls import public_base

HERE = Path(__file__).parent


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
) -> web.Application:
    """``public_url`` (scheme, host, port) starts every absolute link the portal hands out;
    ``hub`` is the JupyterHub the portal started (None: a Hub run elsewhere); ``docker`` is the
    run engine's client, which /health pings."""
    routes = [
        *pages.routes,
        *build.routes,
        *build_logs.routes,
        *badge.routes,
        *health.routes,
        *reproducible.routes,  # before the catalogue's: /badge/doi/(.+)\.svg would take them
        *checks_api.routes,
        *catalogue_pages.routes,
        *catalogue_api.routes,
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
        compress_response=False,
    )
