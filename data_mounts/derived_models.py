"""Catalogue tables of derived datasets' lineage (``derived_data.py``), on the catalogue's
``Base`` (revision 0013).

A derived dataset is an ordinary ``Dataset`` (``data_type`` "derived"); what it came from is
kept here: ``dataset_sources`` links it to each dataset that was mounted in the server it was
made in, and ``dataset_origins`` names that server's image, the publication it was launched
for (None when the launch named none, or the publication was removed since) and who registered
it. Nothing here is on ``Dataset`` itself, so scans and imports never touch lineage.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from .models import Base, Dataset, Publication, UTCDateTime, utcnow

DERIVED = "derived"  # the data_type of a derived dataset


class DatasetSource(Base):
    """``dataset_id`` (derived) was made from ``source_id``."""

    __tablename__ = "dataset_sources"

    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True)
    source_id: Mapped[int] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class DatasetOrigin(Base):
    """Where a derived dataset was made: the image of the server, the publication it was
    launched for, the user who registered it and when."""

    __tablename__ = "dataset_origins"

    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True)
    image: Mapped[str] = mapped_column(String(512), default="")
    publication_id: Mapped[int | None] = mapped_column(
        ForeignKey("publications.id", ondelete="SET NULL"), default=None, index=True
    )
    registered_by: Mapped[str] = mapped_column(String(255), default="")
    registered: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    publication: Mapped[Publication | None] = relationship()


def sources_of(session: Session, dataset_id: int) -> list[Dataset]:
    """The datasets ``dataset_id`` was derived from, by PID."""
    query = (
        select(Dataset)
        .join(DatasetSource, DatasetSource.source_id == Dataset.id)
        .where(DatasetSource.dataset_id == dataset_id)
        .order_by(Dataset.pid)
    )
    return list(session.scalars(query))


def derived_from(session: Session, dataset_id: int) -> list[Dataset]:
    """The datasets derived from ``dataset_id``, by PID."""
    query = (
        select(Dataset)
        .join(DatasetSource, DatasetSource.dataset_id == Dataset.id)
        .where(DatasetSource.source_id == dataset_id)
        .order_by(Dataset.pid)
    )
    return list(session.scalars(query))


def origin_of(session: Session, dataset_id: int) -> DatasetOrigin | None:
    return session.get(DatasetOrigin, dataset_id)


def lineage(session: Session, ds: Dataset) -> dict:
    """A dataset's lineage as its cards show it: the datasets it was derived from, those derived
    from it, and (for a derived dataset) where it was made (None otherwise)."""
    origin = origin_of(session, ds.id)
    made = None
    if origin is not None:
        pub = origin.publication
        made = {
            "image": origin.image,
            "publication": {"doi": pub.doi, "title": pub.title} if pub is not None else None,
            "registered_by": origin.registered_by,
            "registered": origin.registered.isoformat() if origin.registered else None,
        }
    return {
        "derived_from": [{"pid": d.pid, "title": d.title} for d in sources_of(session, ds.id)],
        "derived_datasets": [{"pid": d.pid, "title": d.title} for d in derived_from(session, ds.id)],
        "origin": made,
    }
