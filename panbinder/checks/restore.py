"""Put a publication's image back into the registry from its archive (what ``panbinder restore``
does for the image), for a check that found the registry had lost it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from panbinder.registry_cache.archive import Archive
from panbinder.registry_cache.transfer import RegistryClient

if TYPE_CHECKING:
    from .runner import CheckContext


def restore_image(archive: Archive, bag: Path, context: CheckContext) -> str:
    """Push the image of the opened, verified archive ``bag`` (``Archive.open``) under today's
    names, load it into the run engine and record its lock; returns the restored digest
    (blocking). ``Archive.restore_image`` checks the blobs it reads while they stream."""
    ctx = context.pipeline
    client = RegistryClient(ctx.registry, timeout=max(ctx.registry.timeout, 120))
    targets = archive.describe(bag).names(registry=ctx.registry.host, prefix=ctx.image_prefix)
    manifest, plan = archive.prepare(bag, client, targets[0])
    archive.restore_image(bag, client, manifest, targets, plan)
    lock_path = bag / "data" / "lock.json"
    if lock_path.exists():
        lock = json.loads(lock_path.read_text())
        for target in targets:
            context.catalogue.record_lock(target.full, manifest.digest, lock)
    return manifest.digest
