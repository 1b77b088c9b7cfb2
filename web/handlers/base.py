"""Common handler behaviour: errors as JSON or HTML (never a traceback), CORS."""

from __future__ import annotations

import html
import json
from typing import Any
from urllib.parse import quote

from jupyterhub.services.auth import HubOAuthenticated
from tornado import web

from panbinder.errors import PanbinderError


class BaseHandler(HubOAuthenticated, web.RequestHandler):
    """Signed-in users come from the Hub's OAuth cookie (with JupyterHub's XSRF rules for
    requests that are not page views, such as the launch page's event stream)."""

    @property
    def hub_auth(self):
        identity = self.settings.get("identity")
        return identity.auth if identity is not None else None

    @hub_auth.setter
    def hub_auth(self, value) -> None:  # HubOAuthenticated assigns it; ours comes from settings
        pass

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
            login = ""
            if status_code == 403 and reason == "embargo" and "Authorization" not in self.request.headers:
                target = quote(self.request.uri, safe="")
                login = (
                    f"<p><a id='login' href='{self.settings['base_url']}login?next={target}'>Sign in</a></p>"
                )
            self.finish(
                f"<!doctype html><title>{status_code}</title><h1>{status_code}</h1>"
                f"<p id='message'>{html.escape(message)}</p>{login}"
                f"<p><a href='{self.settings['base_url']}'>panbinder home</a></p>"
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
