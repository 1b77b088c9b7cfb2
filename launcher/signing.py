"""Launch options that reach the Hub are signed by the portal and checked by the spawner.

A launched server's token allows its owner to call the Hub API; without a signature, that
owner could restart the server with other user options (another dataset, another image).
The signature also names the Hub user the options were made for and when they expire, so a
set of options seen once (in a log, a leaked request, another user's launch) cannot start a
different user's server, nor the same user's server again after a few minutes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass

from panbinder.data_mounts import MountSpec
from panbinder.errors import PanbinderError

from .profiles import Profile


@dataclass(frozen=True)
class SignedFields:
    """What a signature covers: the options, who they are for and until when (Unix seconds)."""

    image: str
    mounts: tuple[MountSpec, ...]
    environment: dict[str, str]
    user: str
    expires: int
    profile: Profile | None = None  # the resource profile chosen at launch (None: the Hub's limits)
    workspace: str = ""  # the portal user whose persistent workspace is mounted ("": none)


def canonical(fields: SignedFields) -> bytes:
    data = {
        "image": fields.image,
        "mounts": sorted([m.host_path, m.container_path, m.read_only] for m in fields.mounts),
        "environment": dict(sorted(fields.environment.items())),
        "user": fields.user,
        "expires": fields.expires,
    }
    if fields.profile is not None:  # options without one sign as they always did
        data["profile"] = fields.profile.to_dict()
    if fields.workspace:
        data["workspace"] = fields.workspace
    return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()


def sign(key: str, fields: SignedFields) -> str:
    return hmac.new(key.encode(), canonical(fields), hashlib.sha256).hexdigest()


def _refused(message: str, reason: str, log_message: str | None = None) -> PanbinderError:
    return PanbinderError(message, reason=reason, status_code=403, log_message=log_message)


def verify(key: str, signature: str, fields: SignedFields, *, user: str, now: float | None = None) -> None:
    """Refuse (403) options not signed with ``key``, signed for another user than ``user``, or expired.

    The signature is checked first, so the user and expiry compared next are the signed ones.
    """
    if not key:
        raise _refused("This Hub has no signing key; it refuses launch options.", "unsigned")
    if not hmac.compare_digest(sign(key, fields), signature or ""):
        raise _refused("Launch options were not made by the panbinder portal.", "bad_signature")
    if not hmac.compare_digest(fields.user.encode(), user.encode()):
        raise _refused(
            "These launch options were made for another user; launch again from the portal.",
            "wrong_user",
            log_message=f"options signed for {fields.user!r} used by {user!r}",
        )
    current = time.time() if now is None else now
    if current > fields.expires:
        raise _refused(
            "These launch options have expired; launch again from the portal.",
            "expired",
            log_message=f"options for {user!r} expired {current - fields.expires:.0f} s ago",
        )


def signed_options(key: str, fields: SignedFields) -> dict:
    """The ``user_options`` the portal sends to the Hub for ``fields``."""
    options = {
        "image": fields.image,
        "mounts": to_options(fields.mounts),
        "environment": dict(fields.environment),
        "user": fields.user,
        "expires": fields.expires,
        "signature": sign(key, fields),
    }
    if fields.profile is not None:
        options["profile"] = fields.profile.to_dict()
    if fields.workspace:
        options["workspace"] = fields.workspace
    return options


def fields_from_options(options: dict) -> SignedFields:
    """The signed fields of ``user_options`` as received by the spawner (types checked)."""
    environment = options.get("environment", {})
    if not isinstance(environment, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in environment.items()
    ):
        raise PanbinderError("environment must map strings to strings", reason="bad_environment")
    image, user, expires = options.get("image", ""), options.get("user", ""), options.get("expires", 0)
    if not isinstance(image, str) or not isinstance(user, str):
        raise PanbinderError("image and user must be strings", reason="bad_options")
    if not isinstance(expires, int) or isinstance(expires, bool):
        raise PanbinderError("expires must be a whole number of seconds", reason="bad_options")
    mounts = from_options(options.get("mounts", []))
    raw_profile = options.get("profile")
    profile = None if raw_profile is None else Profile.from_dict(raw_profile)
    workspace = options.get("workspace", "")
    if not isinstance(workspace, str):
        raise PanbinderError("workspace must be a string", reason="bad_options")
    return SignedFields(image, mounts, environment, user, expires, profile, workspace)


def to_options(mounts: Iterable[MountSpec]) -> list[list]:
    return [[m.host_path, m.container_path, m.read_only] for m in mounts]


def from_options(raw: object) -> tuple[MountSpec, ...]:
    if not isinstance(raw, list):
        raise PanbinderError("mounts must be a list", reason="bad_mounts")
    specs = []
    for item in raw:
        if not (
            isinstance(item, list)
            and len(item) == 3
            and isinstance(item[0], str)
            and isinstance(item[1], str)
        ):
            raise PanbinderError("each mount is [host_path, container_path, read_only]", reason="bad_mounts")
        specs.append(MountSpec(item[0], item[1], bool(item[2])))
    return tuple(specs)
