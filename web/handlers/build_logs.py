"""GET /build-logs/<name>: a kept build log as plain text (the link in a failed event)."""

from __future__ import annotations

from panbinder.builder.build_logs import log_path
from panbinder.errors import PanbinderError
from panbinder.executor import run_blocking

from .base import BaseHandler


class BuildLogHandler(BaseHandler):
    async def get(self, name: str) -> None:
        log_dir = self.settings["pipeline"].manager.log_dir
        if not log_dir:
            raise PanbinderError("This service keeps no build logs.", reason="no_build_logs", status_code=404)
        path = log_path(log_dir, name)
        try:
            body = await run_blocking(path.read_bytes)
        except OSError:
            raise PanbinderError(
                "This build log is no longer kept; start the build again to see its log.",
                reason="log_not_found",
                status_code=404,
            ) from None
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Cache-Control", "no-cache")
        self.set_cors()
        self.finish(body)


routes = [(r"/build-logs/([^/]+)", BuildLogHandler)]
