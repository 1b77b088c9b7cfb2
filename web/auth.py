"""Who is asking: users come from JupyterHub's authenticator, checked through the Hub API.

A request carrying a Hub token (``Authorization: token …`` or ``Bearer …``) is that token's
user, with the groups the Hub knows; anything else is anonymous and sees only open data.
"""

from __future__ import annotations

from jupyterhub.services.auth import HubAuth
from tornado import web

from panbinder.data_mounts.access import ANONYMOUS, Identity
from panbinder.errors import PanbinderError


class HubIdentity:
    def __init__(self, *, hub_url: str, api_token: str, cache_seconds: int = 60) -> None:
        self.auth = HubAuth(
            api_token=api_token, api_url=f"{hub_url.rstrip('/')}/hub/api", cache_max_age=cache_seconds
        )

    @staticmethod
    def token_of(handler: web.RequestHandler) -> str:
        header = handler.request.headers.get("Authorization", "")
        kind, _, value = header.partition(" ")
        return value.strip() if kind.lower() in ("token", "bearer") else ""

    async def identify(self, handler: web.RequestHandler) -> Identity:
        token = self.token_of(handler)
        if not token:
            return ANONYMOUS
        try:
            model = await self.auth.user_for_token(token, use_cache=True, sync=False)
        except Exception as e:
            raise PanbinderError(
                "Could not check your token with JupyterHub; try again later.",
                reason="hub_auth",
                status_code=503,
                log_message=f"user_for_token: {e}",
            ) from e
        if not model or model.get("kind", "user") != "user":
            raise PanbinderError(
                "This token is not valid here; sign in again or leave the token out to see open data.",
                reason="bad_token",
                status_code=403,
            )
        return Identity(model["name"], frozenset(model.get("groups") or ()))
