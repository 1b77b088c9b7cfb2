"""The build leases of portals sharing one catalogue (table ``build_leases``, see ``builder/shared.py``).

The model lives here, beside the only code that reads it; ``test_db.py`` imports this module so
the schema comparison sees the table.

Each call is one short transaction. Taking a lease is one conditional UPDATE (free when it is
not ``building``, expired, or already ours) or, for an image never built, an INSERT that loses
to a concurrent one on the primary key; so two portals never both hold it, on SQLite and
PostgreSQL alike.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Float, String, Text, and_, delete, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from .models import Base

if TYPE_CHECKING:
    from .catalogue import Catalogue


class BuildLease(Base):
    """Which portal builds an image now (revision 0006), one row per full image name.

    ``holder`` names the portal and build; ``expires`` (Unix seconds) moves forward while the
    holder renews it; ``state`` is ``building``, ``built`` or ``failed`` (``message`` then says
    why), so portals waiting for the build learn how it ended.
    """

    __tablename__ = "build_leases"

    image: Mapped[str] = mapped_column(String(512), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16))
    expires: Mapped[float] = mapped_column(Float)
    message: Mapped[str] = mapped_column(Text, default="", server_default="")

    def __repr__(self) -> str:
        return f"<BuildLease {self.image!r} {self.state} by {self.holder!r}>"


@dataclass(frozen=True)
class LeaseState:
    """One lease row as read (``builder.shared.LeaseState``)."""

    holder: str
    state: str  # "building", "built" or "failed"
    expires: float  # Unix seconds
    message: str = ""


class BuildLeases:
    """``take``/``renew``/``release``/``read`` of build leases in the catalogue's database.

    Each ``release`` also removes the rows that ended (or expired) more than ``keep_seconds``
    ago: a row only matters while a build runs and to the requests made before it ended, so the
    table holds about a day of builds instead of one row per image ever built.
    """

    def __init__(self, catalogue: Catalogue, keep_seconds: float = 86400.0) -> None:
        self.catalogue = catalogue
        self.keep_seconds = keep_seconds

    def take(self, image: str, holder: str, seconds: float, since: float = 0.0) -> LeaseState:
        """Hold the lease of ``image`` for ``seconds`` if it is free (never held, failed, expired,
        or built before ``since``); returns the lease as it is now (held by ``holder`` when
        taken, ``built`` when a build ended at or after ``since``: the request looked the image
        up in the registry just before then)."""
        for _ in range(3):  # an insert can lose to another portal's; then the update decides
            now = time.time()
            with self.catalogue.session() as s:
                taken = s.execute(
                    update(BuildLease)
                    .where(
                        BuildLease.image == image,
                        or_(
                            BuildLease.state == "failed",
                            and_(BuildLease.state == "building", BuildLease.expires < now),
                            and_(BuildLease.state == "built", BuildLease.expires < since),
                            BuildLease.holder == holder,
                        ),
                    )
                    .values(holder=holder, state="building", expires=now + seconds, message="")
                    .execution_options(synchronize_session=False)
                )
                if taken.rowcount == 1:
                    return LeaseState(holder, "building", now + seconds)
                row = s.get(BuildLease, image)
                if row is not None:
                    return LeaseState(row.holder, row.state, row.expires, row.message)
            try:
                with self.catalogue.session() as s:
                    s.add(BuildLease(image=image, holder=holder, state="building", expires=now + seconds))
                return LeaseState(holder, "building", now + seconds)
            except IntegrityError:
                continue
        return self.read(image) or LeaseState("", "building", 0.0)

    def renew(self, image: str, holder: str, seconds: float) -> bool:
        """Move the expiry of ``holder``'s lease on; False when it is no longer ``holder``'s."""
        with self.catalogue.session() as s:
            done = s.execute(
                update(BuildLease)
                .where(BuildLease.image == image, BuildLease.holder == holder, BuildLease.state == "building")
                .values(expires=time.time() + seconds)
                .execution_options(synchronize_session=False)
            )
            return done.rowcount == 1

    def release(self, image: str, holder: str, state: str, message: str = "") -> None:
        """Record the outcome (``built``/``failed`` and its message) of ``holder``'s build; with
        ``building`` the lease expires now and the next portal takes it over."""
        with self.catalogue.session() as s:
            s.execute(
                update(BuildLease)
                .where(BuildLease.image == image, BuildLease.holder == holder)
                .values(
                    state=state, message=message[:4000], expires=0.0 if state == "building" else time.time()
                )
                .execution_options(synchronize_session=False)
            )
            s.execute(
                delete(BuildLease)
                .where(BuildLease.expires < time.time() - self.keep_seconds)
                .execution_options(synchronize_session=False)
            )

    def read(self, image: str) -> LeaseState | None:
        with self.catalogue.session() as s:
            row = s.get(BuildLease, image)
            return None if row is None else LeaseState(row.holder, row.state, row.expires, row.message)
