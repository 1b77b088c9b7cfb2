"""Who may mount a dataset: open data for everyone, embargoed data for its proposal and groups
(and, for the launch of one publication only, the holders of its review link: ``mounts.check_access``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .review_grants import ReviewGrant


@dataclass(frozen=True)
class Identity:
    """A user as JupyterHub's authenticator knows them; ``name`` None is anonymous.

    ``review`` is the checked grant of a review link the request carried: only the launch check
    (``mounts.check_access``) reads it, for its publication's datasets; ``may_access`` ignores it.
    """

    name: str | None = None
    groups: frozenset[str] = field(default_factory=frozenset)
    review: ReviewGrant | None = None

    @property
    def anonymous(self) -> bool:
        return self.name is None


ANONYMOUS = Identity()


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def is_open(dataset: Any, now: datetime | None = None) -> bool:
    """Public, or its release (embargo end) date has passed."""
    if dataset.is_public:
        return True
    release = _utc(dataset.release_date)
    return release is not None and release <= (now or datetime.now(UTC))


def may_access(dataset: Any, who: Identity, now: datetime | None = None) -> bool:
    if is_open(dataset, now):
        return True
    if who.anonymous:
        return False
    members = set(dataset.owners or ()) | set(dataset.groups or ())
    if dataset.proposal_id:
        members.add(str(dataset.proposal_id))
    return who.name in members or bool(who.groups & members)


def embargo_text(dataset: Any) -> str:
    release = _utc(dataset.release_date)
    when = f"until {release.date().isoformat()}" if release else "with no release date set"
    return f"Dataset '{dataset.title}' ({dataset.pid}) is under embargo {when}"
