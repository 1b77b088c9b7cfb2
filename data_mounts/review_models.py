"""Catalogue tables of review links (``review_grants.py``), on the catalogue's ``Base`` (revisions
0009 and 0012).

A link keeps the SHA-256 of its token, never the token. A use keeps its time only: reviewers
are anonymous and stay so (no address, no browser, no user). A server started through a link
keeps the name of its temporary Hub user (random, made for that launch) until the server is
stopped, so that revoking the link or its expiry stops it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .models import Base, Publication, UTCDateTime, utcnow


class ReviewLink(Base):
    """A review link of a publication: the datasets it opens (PIDs when it was made), when it
    expires, who made it ("" from the command line), a note for its makers, and when it was
    revoked (None: live)."""

    __tablename__ = "review_links"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    publication_id: Mapped[int] = mapped_column(ForeignKey("publications.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    dataset_pids: Mapped[list[str]] = mapped_column(JSON, default=list)
    note: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(255), default="")
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

    publication: Mapped[Publication] = relationship()
    uses: Mapped[list[ReviewLinkUse]] = relationship(
        cascade="all, delete-orphan", order_by="ReviewLinkUse.used"
    )
    servers: Mapped[list[ReviewLinkServer]] = relationship(cascade="all, delete-orphan")

    def __repr__(self) -> str:
        return f"<ReviewLink {self.id}>"


class ReviewLinkUse(Base):
    """One launch through a review link: its time, nothing else."""

    __tablename__ = "review_link_uses"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    link_id: Mapped[int] = mapped_column(ForeignKey("review_links.id", ondelete="CASCADE"), index=True)
    used: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ReviewLinkServer(Base):
    """A server started through a review link and not known to be stopped yet: its temporary Hub
    user (a random name of the launch, nothing of the reviewer) and when it became ready."""

    __tablename__ = "review_link_servers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    link_id: Mapped[int] = mapped_column(ForeignKey("review_links.id", ondelete="CASCADE"), index=True)
    hub_user: Mapped[str] = mapped_column(String(255), unique=True)
    started: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
