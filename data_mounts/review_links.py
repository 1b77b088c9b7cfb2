"""Review links of publications: make, list, revoke, and redeem one at launch.

The grant and its checks are in ``review_grants.py``; this module keeps the links in the
catalogue (the token's hash, never the token) and records each launch through a link by its
time alone. Who may make or revoke a publication's links: its owners, that is the signed-in
members (owners, groups, proposal) of every one of its embargoed datasets; from the command
line, the operator. It also keeps the temporary Hub users of the servers started through a
link (``record_server``) until they are stopped, so that the servers of a revoked or expired
link can be found (``ended_servers``) and stopped (``panbinder/review_servers.py``).
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from traitlets import Int, Unicode
from traitlets.config import LoggingConfigurable

from panbinder.errors import PanbinderError

from .access import Identity, is_open, may_access
from .catalogue import Catalogue
from .importers import normalise_doi
from .review_grants import (
    ReviewGrant,
    check_row,
    check_use,
    make_token,
    parse_lifetime,
    read_token,
    select_ended,
    token_hash,
)
from .review_models import ReviewLink, ReviewLinkServer, ReviewLinkUse

MAX_NOTE = 500
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def may_share(publication: Any, who: Identity, now: datetime | None = None) -> bool:
    """``who`` is signed in and a member of each of the publication's embargoed datasets (and it
    has one: an open publication needs no review link). A review grant makes no one an owner."""
    closed = [ds for ds in publication.datasets if not is_open(ds, now)]
    plain = Identity(who.name, who.groups)  # without any review grant it may carry
    return not plain.anonymous and bool(closed) and all(may_access(ds, plain, now) for ds in closed)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def status(link: ReviewLink, now: datetime) -> str:
    if link.revoked is not None:
        return "revoked"
    return "expired" if now >= link.expires else "active"


def describe(link: ReviewLink, now: datetime) -> dict:
    """A link as listed: no token (only its maker ever sees it, once) and no data on reviewers."""
    return {
        "id": link.id,
        "doi": link.publication.doi,
        "datasets": list(link.dataset_pids),
        "note": link.note,
        "created_by": link.created_by,
        "created": _iso(link.created),
        "expires": _iso(link.expires),
        "revoked": _iso(link.revoked),
        "status": status(link, now),
        "uses": len(link.uses),
        "last_used": _iso(link.uses[-1].used) if link.uses else None,
    }


def link_number(text: str) -> int:
    """A review link's number as given (URL, command line); 404 for anything else (the ids are
    32-bit on PostgreSQL: a longer number is no link, not a database error)."""
    if not (isinstance(text, str) and text.isascii() and text.isdigit() and len(text) <= 9):
        raise PanbinderError(
            f"'{text}' is not a review link number; list them with 'panbinder publications shares DOI'.",
            reason="unknown_review_link",
            status_code=404,
        )
    return int(text)


def _unknown(doi: str) -> PanbinderError:
    return PanbinderError(
        f"No publication with DOI {doi} is registered here; check the DOI.",
        reason="unknown_doi",
        status_code=404,
    )


def _not_owner(doi: str) -> PanbinderError:
    return PanbinderError(
        f"Only the owners of the embargoed datasets of {doi} may manage its review links; sign in as one.",
        reason="not_owner",
        status_code=403,
    )


class ReviewLinks(LoggingConfigurable):
    """Review links: signed, expiring, revocable launch links of a publication for its reviewers."""

    signing_key = Unicode(
        "",
        help="Key review links are signed with (default: made once in the state folder). Changing it "
        "invalidates every review link given out.",
    ).tag(config=True)
    longest_days = Int(180, help="Longest lifetime of a review link, in days.").tag(config=True)

    def _publication(self, session: Any, catalogue: Catalogue, doi: str) -> Any:
        pub = catalogue.get_publication(session, doi)
        if pub is None:
            raise _unknown(doi)
        return pub

    def create(
        self,
        catalogue: Catalogue,
        doi: str,
        lifetime: str,
        *,
        note: str = "",
        who: Identity | None = None,
        now: datetime | None = None,
    ) -> tuple[str, dict]:
        """A new link of ``doi`` (``who`` None: the operator) lasting ``lifetime`` (``30d``):
        its token, shown once, and its description."""
        now = now or datetime.now(UTC)
        expires = now + parse_lifetime(lifetime, longest_days=self.longest_days)
        note = CONTROL_RE.sub(" ", note or "").strip()
        if len(note) > MAX_NOTE:
            raise PanbinderError(
                f"The note is longer than {MAX_NOTE} characters; shorten it.", reason="bad_note"
            )
        with catalogue.session() as session:
            pub = self._publication(session, catalogue, doi)
            if who is not None and not may_share(pub, who, now):
                raise _not_owner(pub.doi)
            pids = sorted(ds.pid for ds in pub.datasets)
            link = ReviewLink(
                publication=pub,
                token_hash=secrets.token_hex(32),  # replaced below, once the row has its id
                dataset_pids=pids,
                note=note,
                created_by=who.name if who is not None and who.name else "",
                created=now,
                expires=expires.replace(microsecond=0),
            )
            session.add(link)
            session.flush()
            grant = ReviewGrant(link.id, pub.doi, tuple(pids), int(link.expires.timestamp()))
            token = make_token(self.signing_key, grant, secrets.token_urlsafe(16))
            link.token_hash = token_hash(token)
            session.flush()
            self.log.info(
                "review link %d of %s made by %s", link.id, pub.doi, link.created_by or "the operator"
            )
            return token, describe(link, now)

    def listing(
        self, catalogue: Catalogue, doi: str, *, who: Identity | None = None, now: datetime | None = None
    ) -> list[dict]:
        now = now or datetime.now(UTC)
        with catalogue.session() as session:
            pub = self._publication(session, catalogue, doi)
            if who is not None and not may_share(pub, who, now):
                raise _not_owner(pub.doi)
            links = session.scalars(
                select(ReviewLink).where(ReviewLink.publication_id == pub.id).order_by(ReviewLink.id)
            )
            return [describe(link, now) for link in links]

    def revoke(
        self, catalogue: Catalogue, link_id: int, *, who: Identity | None = None, now: datetime | None = None
    ) -> dict:
        """Withdraw link ``link_id`` at once (idempotent: a revoked link keeps its first date)."""
        now = now or datetime.now(UTC)
        with catalogue.session() as session:
            link = session.get(ReviewLink, link_id)
            if link is None or (who is not None and not may_share(link.publication, who, now)):
                # the same answer whether it exists or not: ids say nothing to others
                raise PanbinderError(
                    f"No review link {link_id} that you may revoke; list them with "
                    "'panbinder publications shares DOI'.",
                    reason="unknown_review_link",
                    status_code=404,
                )
            if link.revoked is None:
                link.revoked = now
                self.log.info("review link %d of %s revoked", link.id, link.publication.doi)
            return describe(link, now)

    def redeem(
        self, catalogue: Catalogue, token: str, doi: str, *, record: bool, now: datetime | None = None
    ) -> ReviewGrant:
        """The grant of ``token`` for launching ``doi`` once every check passes (else a 403 that
        mounts nothing); ``record``: count this as a use (its time only)."""
        now = now or datetime.now(UTC)
        grant = read_token(self.signing_key, token)
        check_use(grant, normalise_doi(doi), now)
        with catalogue.session() as session:
            link = session.get(ReviewLink, grant.link_id)
            check_row(grant, token, link, now)
            if record:
                session.add(ReviewLinkUse(link_id=link.id, used=now))
        return grant

    def record_server(
        self, catalogue: Catalogue, link_id: int, hub_user: str, now: datetime | None = None
    ) -> None:
        """Server of Hub user ``hub_user`` was started through link ``link_id`` (kept until stopped)."""
        with catalogue.session() as session:
            if session.scalar(select(ReviewLinkServer).where(ReviewLinkServer.hub_user == hub_user)) is None:
                session.add(
                    ReviewLinkServer(link_id=link_id, hub_user=hub_user, started=now or datetime.now(UTC))
                )

    def ended_servers(
        self, catalogue: Catalogue, *, link_id: int | None = None, now: datetime | None = None
    ) -> list[str]:
        """Hub users of the servers whose link was revoked or has expired (of link ``link_id``
        only, when given): the servers that must stop."""
        query = select(ReviewLinkServer.hub_user, ReviewLink.revoked, ReviewLink.expires).join(
            ReviewLink, ReviewLink.id == ReviewLinkServer.link_id
        )
        if link_id is not None:
            query = query.where(ReviewLinkServer.link_id == link_id)
        with catalogue.session() as session:
            rows = [tuple(row) for row in session.execute(query.order_by(ReviewLinkServer.id))]
        return select_ended(rows, now or datetime.now(UTC))

    def forget_servers(self, catalogue: Catalogue, hub_users: list[str]) -> None:
        """The servers of ``hub_users`` are stopped: nothing of them is kept."""
        if not hub_users:
            return
        with catalogue.session() as session:
            for row in session.scalars(
                select(ReviewLinkServer).where(ReviewLinkServer.hub_user.in_(hub_users))
            ):
                session.delete(row)
