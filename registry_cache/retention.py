"""Registry retention: which cached images may go, and removing them through the registry API.

Images of registered publications are pinned (their ``doi`` and ``git`` names at the pinned
commit) and never removed. Any other image under ``image_prefix`` is removed when it has been
idle longer than ``Retention.max_idle_days``.

"Idle" is measured from the last *build* of the image: the modification time of its kept build
log (``BuildManager.log_dir``, one file per image, rewritten by each build). panbinder keeps no
record of launches, so an image that is launched every day but was built long ago counts as idle
(launch it once via its URL after removal and it is rebuilt). Without a build log (logs rotated
away, image pushed by ``panbinder restore``) the ``created`` time of the image configuration
stored in the registry is used. An image with neither is kept.

Deleting a manifest removes the tags that point at it in the registry's index only; the blob
storage is reclaimed by the registry's own ``garbage-collect`` command, run by an operator.
Deleting needs ``storage.delete.enabled: true`` in the registry configuration.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tornado.httpclient import HTTPClientError
from traitlets import Float
from traitlets.config import LoggingConfigurable

from panbinder.errors import PanbinderError

from .naming import ImageRef
from .registry import MANIFEST_TYPES, Registry

GC_COMMAND = "docker-registry garbage-collect --delete-untagged <registry config.yml>"


@dataclass(frozen=True)
class CachedImage:
    name: str  # repository path in the registry
    tag: str
    digest: str
    last_used: datetime | None
    source: str  # where last_used comes from: "build log", "image created" or "unknown"

    @property
    def key(self) -> str:
        return f"{self.name}:{self.tag}"


def select_removals(
    images: Iterable[CachedImage], pinned: set[str], *, now: datetime, max_idle_days: float
) -> list[CachedImage]:
    """The images to remove: idle too long, not pinned, and not sharing a manifest with a
    pinned or kept tag of the same repository (deleting a digest removes all its tags)."""
    images = list(images)
    cutoff = now - timedelta(days=max_idle_days)
    idle = [i for i in images if i.key not in pinned and i.last_used is not None and i.last_used < cutoff]
    idle_keys = {i.key for i in idle}
    kept_digests = {(i.name, i.digest) for i in images if i.key not in idle_keys}
    return [i for i in idle if (i.name, i.digest) not in kept_digests]


def log_mtime(log_dir: Path, name: str, tag: str) -> datetime | None:
    """mtime of the kept build log of ``name:tag`` (file name as builder/build_logs.py makes it)."""
    path = log_dir / f"{name.replace('/', '_')}@{tag}.log"
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except OSError:
        return None


class RegistryAdmin:
    """The listing and deleting half of the distribution v2 API, for retention (through
    ``Registry.fetch``)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.base = registry.base

    async def _get(self, path: str) -> tuple[dict, dict]:
        try:
            resp = await self.registry.fetch("GET", path, headers={"Accept": MANIFEST_TYPES})
        except (HTTPClientError, OSError) as e:
            raise PanbinderError(f"The registry at {self.base} failed on GET {path}: {e}") from e
        return json.loads(resp.body or b"{}"), dict(resp.headers)

    async def repositories(self) -> list[str]:
        names: list[str] = []
        while True:  # pages of 1000, as distribution allows at most that many per request
            last = f"&last={names[-1]}" if names else ""
            body, _ = await self._get(f"/v2/_catalog?n=1000{last}")
            page = list(body.get("repositories") or [])
            names += page
            if len(page) < 1000:
                return names

    async def tags(self, name: str) -> list[str]:
        """The repository's tags; none when all were deleted (the catalogue still lists the
        repository, and distribution answers its tag list with 404 NAME_UNKNOWN)."""
        try:
            body, _ = await self._get(f"/v2/{name}/tags/list")
        except PanbinderError as e:
            if isinstance(e.__cause__, HTTPClientError) and e.__cause__.code == 404:
                return []
            raise
        return list(body.get("tags") or [])

    async def created(self, name: str, tag: str) -> datetime | None:
        """``created`` of the image configuration (single-platform manifests only)."""
        try:
            manifest, _ = await self._get(f"/v2/{name}/manifests/{tag}")
            config = (manifest.get("config") or {}).get("digest")
            if not config:
                return None
            blob, _ = await self._get(f"/v2/{name}/blobs/{config}")
            return _normalise(datetime.fromisoformat(blob["created"]))
        except (PanbinderError, KeyError, ValueError):
            return None

    async def delete(self, name: str, digest: str) -> None:
        try:
            await self.registry.fetch("DELETE", f"/v2/{name}/manifests/{digest}")
        except HTTPClientError as e:
            if e.code == 404:
                return  # already gone
            hint = " (enable storage.delete in the registry config)" if e.code == 405 else ""
            raise PanbinderError(f"The registry refused to delete {name}@{digest}: {e}{hint}") from e


class Retention(LoggingConfigurable):
    max_idle_days = Float(
        90.0, help="Remove a cached image not built for this many days, unless a publication pins it."
    ).tag(config=True)

    async def inventory(self, admin: RegistryAdmin, prefix: str, log_dir: Path) -> list[CachedImage]:
        """Every tag under ``prefix`` with its digest and last-use time."""
        out = []
        for name in await admin.repositories():
            if not name.startswith(prefix):
                continue
            for tag in await admin.tags(name):
                digest = await admin.registry.digest(ImageRef(admin.registry.host, name, tag))
                if digest is None:
                    continue
                when, source = log_mtime(log_dir, name, tag), "build log"
                if when is None:
                    when, source = await admin.created(name, tag), "image created"
                out.append(CachedImage(name, tag, digest, when, source if when else "unknown"))
        return out


def _normalise(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=UTC)
