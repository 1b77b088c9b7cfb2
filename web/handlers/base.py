"""Common handler behaviour: errors as JSON or HTML (never a traceback), CORS, and the security
headers every portal response carries (pages, JSON, event streams, errors, static files).

The Content-Security-Policy allows scripts only from the portal's own static files: no inline
script or event handler runs, so a value that slipped past escaping still cannot execute.
Pages need nothing more: the launch page's event stream and the preview's ``fetch`` go to the
same origin, thumbnails are ``blob:`` images, and opening the user's server on the Hub is a
navigation, which the policy does not restrict.
"""

from __future__ import annotations

import html
import json
from typing import Any
from urllib.parse import quote

from jupyterhub.services.auth import HubOAuthenticated
from tornado import web
from traitlets.config import Configurable

from panbinder.builder.buildpacks.desktop import Desktop
from panbinder.errors import PanbinderError

from ..formatting import human_size
from ..urls import path_segment

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob:",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'self'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "SAMEORIGIN",
}


class SecurityHeaders:
    """Mixed in first into every handler class of the portal (ours, static files, the OAuth
    callback). A plain mixin, so it leaves the order of HubAuthenticated's overrides alone."""

    def set_default_headers(self) -> None:
        super().set_default_headers()
        for name, value in SECURITY_HEADERS.items():
            self.set_header(name, value)


class StaticHandler(SecurityHeaders, web.StaticFileHandler):
    pass


class BaseHandler(SecurityHeaders, HubOAuthenticated, web.RequestHandler):
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

    def get_template_namespace(self) -> dict[str, Any]:
        """Templates escape with ``{{ }}``; links put values through ``path_segment``."""
        namespace = super().get_template_namespace()
        namespace.update(
            base_url=self.settings["base_url"],
            path_segment=path_segment,
            human_size=human_size,
            desktop_buttons=self.desktop_buttons,
        )
        return namespace

    @property
    def desktop_buttons(self) -> bool:
        """Whether pages offer 'Desktop' buttons (``Desktop.show_buttons``, read once)."""
        if "desktop_buttons" not in self.settings:
            app = self.settings.get("app")
            parent = app if isinstance(app, Configurable) else None
            self.settings["desktop_buttons"] = Desktop(parent=parent).show_buttons
        return self.settings["desktop_buttons"]

    @property
    def public_base(self) -> str:
        """Absolute URL of the portal from the configured public URL (never the Host header)."""
        return self.settings["public_base"]

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
            self.finish(self.error_page(status_code, message, reason))

    def error_page(self, status_code: int, message: str, reason: str) -> str:
        home = html.escape(self.settings["base_url"], quote=True)
        login = ""
        if status_code == 403 and reason == "embargo" and "Authorization" not in self.request.headers:
            target = html.escape(quote(self.request.uri, safe=""), quote=True)
            login = f'<p><a id="login" href="{home}login?next={target}">Sign in</a></p>'
        return (
            f"<!doctype html><title>{status_code}</title><h1>{status_code}</h1>"
            f'<p id="message">{html.escape(message)}</p>{login}'
            f'<p><a href="{home}">panbinder home</a></p>'
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
