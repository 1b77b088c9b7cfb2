"""Catalogue methods for image environment locks (table ``image_locks``).

Mixed into ``Catalogue``; a lock is stored as JSON text by full image name, one row per name.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from .models import ImageLock, utcnow


class LockStore:
    """``record_lock`` / ``get_lock``; needs the ``session()`` of ``Catalogue``."""

    def record_lock(self, image: str, digest: str, lock: dict[str, Any]) -> None:
        """Store (or replace) the lock of ``image`` ("registry/name:tag")."""
        text = json.dumps(lock, sort_keys=True)
        with self.session() as s:  # type: ignore[attr-defined]
            row = s.scalar(select(ImageLock).where(ImageLock.image == image))
            if row is None:
                s.add(ImageLock(image=image, digest=digest or "", lock=text, created=utcnow()))
            else:
                row.digest, row.lock, row.created = digest or "", text, utcnow()

    def get_lock(self, image: str) -> dict[str, Any] | None:
        """The recorded lock of ``image``, or None."""
        with self.session() as s:  # type: ignore[attr-defined]
            row = s.scalar(select(ImageLock).where(ImageLock.image == image))
            return json.loads(row.lock) if row is not None else None
