"""Launch options that reach the Hub are signed by the portal and checked by the spawner.

A launched server's token allows its owner to call the Hub API; without a signature, that
owner could restart the server with other user options (another dataset, another image).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable

from panbinder.errors import PanbinderError

from . import MountSpec


def canonical(image: str, mounts: Iterable[MountSpec], environment: dict[str, str]) -> bytes:
    data = {
        "image": image,
        "mounts": sorted([m.host_path, m.container_path, m.read_only] for m in mounts),
        "environment": dict(sorted(environment.items())),
    }
    return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()


def sign(key: str, image: str, mounts: Iterable[MountSpec], environment: dict[str, str]) -> str:
    return hmac.new(key.encode(), canonical(image, mounts, environment), hashlib.sha256).hexdigest()


def verify(
    key: str, signature: str, image: str, mounts: Iterable[MountSpec], environment: dict[str, str]
) -> None:
    if not key:
        raise PanbinderError(
            "This Hub has no signing key; it refuses launch options.", reason="unsigned", status_code=403
        )
    expected = sign(key, image, mounts, environment)
    if not hmac.compare_digest(expected, signature or ""):
        raise PanbinderError(
            "Launch options were not made by the panbinder portal.", reason="bad_signature", status_code=403
        )


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
