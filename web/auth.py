"""Who is asking: users come from JupyterHub's authenticator, through the Hub's OAuth.

A browser signs in at ``/login`` (the Hub's login page, whatever authenticator the facility
runs) and comes back with a cookie; API clients send a Hub token (``Authorization: token …``).
Groups (proposal membership) are read from the Hub with the portal's service token. Anyone
else is anonymous and sees only open data.
"""

from __future__ import annotations

import json
import time
from urllib.parse import quote

from jupyterhub.services.auth import HubOAuth, HubOAuthCallbackHandler
from tornado.httpclient import AsyncHTTPClient

from panbinder.data_mounts.access import ANONYMOUS, Identity
from panbinder.errors import PanbinderError

from .handlers.base import BaseHandler, SecurityHeaders
from .urls import local_next

OAUTH_CLIENT_ID = "service-panbinder"


class HubIdentity:
    def __init__(
        self, *, hub_url: str, public_hub_url: str, api_token: str, portal_url: str, base_url: str = "/"
    ) -> None:
        self.hub_api = f"{hub_url.rstrip('/')}/hub/api"
        self.api_token = api_token
        self.auth = HubOAuth(
            api_token=api_token,
            api_url=self.hub_api,
            oauth_client_id=OAUTH_CLIENT_ID,
            oauth_redirect_uri=f"{portal_url.rstrip('/')}{base_url}oauth_callback",
            hub_host=public_hub_url.rstrip("/"),
            hub_prefix="/hub/",
            base_url=base_url,
            cache_max_age=60,
        )
        self._groups: dict[str, tuple[float, frozenset[str]]] = {}

    async def groups_of(self, name: str) -> frozenset[str]:
        hit = self._groups.get(name)
        if hit and time.monotonic() - hit[0] < 60:
            return hit[1]
        groups = frozenset((await self._user_model(name)).get("groups") or ())
        self._groups[name] = (time.monotonic(), groups)
        return groups

    async def is_admin(self, name: str) -> bool:
        """Whether the Hub lists ``name`` as an admin (operators see details others do not)."""
        return bool((await self._user_model(name)).get("admin"))

    async def _user_model(self, name: str) -> dict:
        """The Hub's model of user ``name`` (raises on errors, 404 included)."""
        resp = await AsyncHTTPClient().fetch(
            f"{self.hub_api}/users/{quote(name)}",
            headers={"Authorization": f"token {self.api_token}"},
            request_timeout=10,
        )
        return json.loads(resp.body)

    async def identify(self, handler) -> Identity:
        header = handler.request.headers.get("Authorization", "")
        try:
            model = await self.auth.get_user(handler, sync=False)
            if model is None and header:
                raise PanbinderError(
                    "This token is not valid here; sign in again, or leave the token out to see open data.",
                    reason="bad_token",
                    status_code=403,
                )
            if model is None or model.get("kind", "user") != "user":
                return ANONYMOUS
            return Identity(model["name"], await self.groups_of(model["name"]))
        except PanbinderError:
            raise
        except Exception as e:
            raise PanbinderError(
                "Could not check who you are with JupyterHub; try again later.",
                reason="hub_auth",
                status_code=503,
                log_message=f"identify: {e}",
            ) from e


class LoginHandler(BaseHandler):
    """Send the browser to the Hub's login, then back to ?next= (a path under the base URL;
    anything else, such as ``//host`` or ``/\\host``, goes back to the portal's home)."""

    async def get(self) -> None:
        base_url = self.settings["base_url"]
        target = local_next(self.get_argument("next", base_url), base_url)
        who = await self.settings["identity"].identify(self)
        if not who.anonymous:
            self.redirect(target)
            return
        self.request.uri = target  # the OAuth state remembers where to return
        self.redirect(self.get_login_url())


class CallbackHandler(SecurityHeaders, HubOAuthCallbackHandler):
    def initialize(self) -> None:
        self.hub_auth = self.settings["identity"].auth


routes = [(r"/login", LoginHandler), (r"/oauth_callback", CallbackHandler)]
