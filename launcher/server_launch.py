"""What a running server was launched with, as the Hub holds it: its signed launch options.

A server's own requests prove only which Hub user they come from (its token). What the server
is (its image, its mounted datasets, whose workspace it mounts) is read here from the Hub as
the portal's service (admin), and trusted only after the portal's signature over it is checked
again: the container itself could claim anything. The signature's expiry is not checked here:
it bounds when the Hub may *start* a server with the options, and the spawner checked it then.
"""

from __future__ import annotations

from panbinder.errors import PanbinderError

from . import signing
from .hub_client import HubClient


def _refused(
    message: str, reason: str, status_code: int = 403, log_message: str | None = None
) -> PanbinderError:
    return PanbinderError(message, reason=reason, status_code=status_code, log_message=log_message)


def running_options(model: dict | None) -> dict:
    """The user options of the user's default server when it is running (else a 409)."""
    servers = (model or {}).get("servers") or {}
    server = servers.get("")
    if not isinstance(server, dict) or not server.get("ready"):
        raise _refused(
            "No running server of yours was found; run this from inside a running server.",
            "no_server",
            409,
        )
    options = server.get("user_options")
    return options if isinstance(options, dict) else {}


ANONYMOUS_SERVER = (
    "This server has no workspace: it was launched without signing in, so its files are "
    "temporary and cannot be registered. Sign in on the portal, launch again, save your "
    "results in your workspace (~/work) and register them from there."
)


def checked_fields(options: dict, *, signing_key: str, hub_user: str) -> signing.SignedFields:
    """The signed fields of ``options`` once the signature (for ``hub_user``) is checked; a
    server without a workspace (anonymous launch) is refused with what to do instead."""
    if not options.get("workspace"):
        raise _refused(ANONYMOUS_SERVER, "anonymous_server")
    try:
        fields = signing.fields_from_options(options)
    except PanbinderError as e:
        raise _refused(
            "This server's launch options are not the portal's; launch again from the portal.",
            "bad_options",
            log_message=f"options of {hub_user!r}: {e.log_message}",
        ) from e
    signing.verify(signing_key, str(options.get("signature", "")), fields, user=hub_user, now=fields.expires)
    return fields


async def signed_launch(hub: HubClient, *, signing_key: str, hub_user: str) -> signing.SignedFields:
    """The checked launch options of ``hub_user``'s running server."""
    options = running_options(await hub.user(hub_user))
    return checked_fields(options, signing_key=signing_key, hub_user=hub_user)
