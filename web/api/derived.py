"""``POST /api/derived-datasets``: a running server registers files of its workspace.

Called by ``panbinder-publish`` inside a signed-in user's server with the server's own Hub
token (``Authorization: token …``) and JSON ``{"paths": [...], "title": "...", "description":
"..."}``; answers 201 with the new dataset's PID, URL, files (sha256) and lineage. Served by the
portal and by its second listener on the address servers reach (``DerivedData.internal_port``),
which serves nothing else. The work is ``panbinder.derived.register_from_server``.
"""

from __future__ import annotations

from panbinder.data_mounts.derived_data import parse_request
from panbinder.derived import register_from_server
from panbinder.errors import PanbinderError

from ..handlers.base import BaseHandler
from ..urls import path_segment

ROUTE = r"/api/derived-datasets"


def bearer(header: str) -> str:
    """The token of an ``Authorization: token X`` (or ``Bearer X``) header ("" without one)."""
    scheme, _, token = header.strip().partition(" ")
    return token.strip() if scheme.lower() in ("token", "bearer") else ""


class DerivedDatasetsAPI(BaseHandler):
    def wants_json(self) -> bool:
        return True

    async def hub_user(self) -> str:
        """The Hub user of the request's token (403 without a valid user token)."""
        token = bearer(self.request.headers.get("Authorization", ""))
        if not token:
            raise PanbinderError(
                "Send the server's token: Authorization: token $JUPYTERHUB_API_TOKEN (run "
                "panbinder-publish inside your server, where it is set).",
                reason="no_token",
                status_code=403,
            )
        try:
            model = await self.settings["identity"].auth.user_for_token(token, sync=False)
        except Exception as e:
            raise PanbinderError(
                "Could not check the token with JupyterHub; try again later.",
                reason="hub_auth",
                status_code=503,
                log_message=f"derived-datasets token check: {e}",
            ) from e
        if not model or model.get("kind", "user") != "user" or not model.get("name"):
            raise PanbinderError(
                "This token is not a valid server token here; run panbinder-publish inside a "
                "running server launched from this portal.",
                reason="bad_token",
                status_code=403,
            )
        return str(model["name"])

    async def post(self) -> None:
        hub_user = await self.hub_user()
        request = parse_request(self.request.body)
        pipeline = self.settings["pipeline"]
        result = await register_from_server(
            hub_user=hub_user,
            request=request,
            launcher=pipeline.launcher,
            catalogue=pipeline.catalogue,
            settings=self.settings["derived_data"],
            manifest_dir=self.settings["manifest_dir"],
            groups_of=self.settings["identity"].groups_of,
        )
        url = f"{self.public_base}datasets/{path_segment(result['pid'])}"
        self.set_status(201)
        self.finish({**result, "url": url})


routes = [(ROUTE, DerivedDatasetsAPI)]
