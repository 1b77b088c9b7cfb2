"""Common handler behaviour: errors as JSON or HTML (never a traceback), CORS."""

from __future__ import annotations

import html
import json
from typing import Any

from tornado import web

from panbinder.errors import PanbinderError


class BaseHandler(web.RequestHandler):
    @property
    def log(self):
        return self.settings["log"]

    @property
    def cors_origin(self) -> str:
        return self.settings.get("cors_allow_origin", "")

    def set_cors(self) -> None:
        if self.cors_origin:
            self.set_header("Access-Control-Allow-Origin", self.cors_origin)

    def provider_spec(self, prefix: str, provider: str) -> str:
        """The spec after /<prefix>/<provider>/, taken from the raw (still quoted) path."""
        raw = self.request.path
        head = f"{self.settings['base_url']}{prefix}/{provider}/"
        if not raw.startswith(head):
            raise PanbinderError("Malformed path.", reason="malformed_spec")
        return raw[len(head) :]

    def wants_json(self) -> bool:
        accept = self.request.headers.get("Accept", "")
        return "text/html" not in accept

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, PanbinderError):
            message, reason = exc.message, exc.reason
        elif isinstance(exc, web.HTTPError) and exc.reason:
            message, reason = exc.reason, "http"
        else:
            message, reason = self._reason, "http"
        self.set_cors()
        if self.wants_json():
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"status": status_code, "reason": reason, "message": message}))
        else:
            self.set_header("Content-Type", "text/html; charset=utf-8")
            self.finish(
                f"<!doctype html><title>{status_code}</title><h1>{status_code}</h1>"
                f"<p>{html.escape(message)}</p><p><a href='{self.settings['base_url']}'>panbinder home</a></p>"
            )

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, PanbinderError):
            self.log.info("%s %s: %s", self.request.method, self.request.path, e.log_message)
            if not self._finished:
                self.send_error(e.status_code, exc_info=(type(e), e, e.__traceback__))
            return
        super()._handle_request_exception(e)


class NotFoundHandler(BaseHandler):
    def prepare(self) -> None:
        raise PanbinderError(
            "Nothing here; see / for how to launch a repository.", reason="not_found", status_code=404
        )
