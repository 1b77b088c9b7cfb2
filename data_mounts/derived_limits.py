"""What keeps derived-data registrations from crowding the portal (``derived_data.py``).

Each registration copies and hashes up to ``DerivedData.max_bytes`` in the portal's shared
executor, so only ``DerivedData.max_concurrent`` run at once (more get a 429 at once rather than
queueing threads), and one per owner (a second gets a 409: a retried command must not copy the
same files twice side by side). Before copying, the free space of ``DerivedData.root`` must
hold the files plus ``DerivedData.free_space_margin`` (else 507): a full disk would fail
mid-copy and stop the portal's other writes (catalogue, logs) too. At portal start, copies left
under ``.incoming`` by a stopped portal are removed (``remove_orphans``).
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import select

from panbinder.errors import PanbinderError

from .models import Dataset

INCOMING = ".incoming"  # the folder of copies under way, under DerivedData.root


class PublishSlots:
    """At most ``limit`` registrations at once, one per owner (thread-safe)."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._owners: set[str] = set()
        self._lock = threading.Lock()

    @contextmanager
    def claim(self, owner: str) -> Iterator[None]:
        """Hold a slot for ``owner`` while the block runs; 409 when ``owner`` already holds one,
        429 when all are taken."""
        with self._lock:
            if owner in self._owners:
                raise PanbinderError(
                    "One of your registrations is still under way; wait until it has finished, then "
                    "try again.",
                    reason="registration_running",
                    status_code=409,
                )
            if len(self._owners) >= self.limit:
                raise PanbinderError(
                    "The portal is registering other datasets right now; try again in a minute.",
                    reason="busy",
                    status_code=429,
                    log_message=f"derived datasets: {self.limit} registrations under way, {owner!r} refused",
                )
            self._owners.add(owner)
        try:
            yield
        finally:
            with self._lock:
                self._owners.discard(owner)


def check_free_space(root: Path, needed: int, margin: int) -> None:
    """507 when ``root``'s file system cannot take ``needed`` bytes and still keep ``margin``."""
    try:
        free = shutil.disk_usage(root).free
    except OSError as e:
        raise PanbinderError(
            "The portal could not store the files; try again later, or tell the operators if it keeps failing.",
            reason="store_failed",
            status_code=503,
            log_message=f"free space of {root}: {e}",
        ) from None
    if needed + margin > free:
        raise PanbinderError(
            f"The portal has no room for these files ({needed} bytes) right now; register fewer or "
            "smaller files, or try again later and tell the operators if it keeps failing.",
            reason="no_space",
            status_code=507,
            log_message=f"derived datasets: {needed} bytes + margin {margin} > {free} free under {root}",
        )


def remove_orphans(root: Path, catalogue, log) -> list[str]:
    """Remove what ``root``/.incoming holds (copies of registrations a stopped portal left
    unfinished), except anything a catalogue row names; the names removed."""
    incoming = root / INCOMING
    try:
        entries = sorted(incoming.iterdir())
    except OSError:
        return []  # none yet
    if not entries:
        return []
    names = {str(p) for p in entries} | {os.path.realpath(p) for p in entries}
    with catalogue.session() as session:
        kept = set(session.scalars(select(Dataset.location).where(Dataset.location.in_(names))))
    removed = []
    for path in entries:
        if str(path) in kept or os.path.realpath(path) in kept:
            log.warning("derived datasets: %s is named by the catalogue; left in place", path)
            continue
        if path.is_symlink() or not path.is_dir():
            continue  # only the folders of copies are ours to remove
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path.name)
    if removed:
        log.info("derived datasets: removed %d unfinished copies from %s", len(removed), incoming)
    return removed
