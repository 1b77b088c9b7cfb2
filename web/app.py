"""Build the tornado application from the portal's components."""

from __future__ import annotations

import logging
from pathlib import Path

from tornado import web

from .api import build
from .handlers import badge, base, health, pages
from .pipeline import PipelineContext

HERE = Path(__file__).parent


def make_app(
    *,
    pipeline: PipelineContext,
    app: object,
    log: logging.Logger,
    base_url: str = "/",
    cors_allow_origin: str = "",
    keepalive_interval: float = 20.0,
) -> web.Application:
    routes = [*pages.routes, *build.routes, *badge.routes, *health.routes]
    prefixed = [(base_url.rstrip("/") + path, handler) for path, handler in routes]
    return web.Application(
        prefixed,
        default_handler_class=base.NotFoundHandler,
        template_path=str(HERE / "templates"),
        static_path=str(HERE / "static"),
        static_url_prefix=base_url + "static/",
        pipeline=pipeline,
        app=app,
        log=log,
        base_url=base_url,
        cors_allow_origin=cors_allow_origin,
        keepalive_interval=keepalive_interval,
        compress_response=False,
    )
