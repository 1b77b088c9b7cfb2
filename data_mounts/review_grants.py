"""Review links: the signed grant a link carries, and its checks (pure: no database).

A publication's owners give the reviewers of a manuscript a link that launches the publication
with its embargoed datasets, without an account, until the link expires or is revoked. The
link's token is ``rv1.<payload>.<signature>``: the payload names the link's row, the
publication (DOI) and its datasets (PIDs) and when it expires; the signature is an HMAC-SHA256
of the payload with the portal's review-link key. The catalogue keeps only the token's SHA-256
(a leaked database gives no working link), so a token is honoured only when

- its signature is right (nothing in it can be changed: DOI, PIDs, expiry, row),
- it is used for the publication it names, before its expiry,
- its row exists, holds its hash, is not revoked or expired, and names the same publication
  and datasets.

A server started through a link runs only while the link does: ``select_ended`` picks the
servers (Hub users) whose link was revoked or has expired, which the portal then stops
(``panbinder/review_servers.py``).

The grant opens only the datasets it names, only for the launch of its publication
(``mounts.check_access``); it names no user and makes its holder no one: everywhere else
(dataset API, previews, search, sharing) its holder is anonymous.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from panbinder.errors import PanbinderError

TOKEN_PREFIX = "rv1"
MAX_TOKEN_LENGTH = 8192
DURATION_RE = re.compile(r"^\s*(\d{1,6})\s*([smhdw])\s*$")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True)
class ReviewGrant:
    """What a review link allows: launching ``doi`` with the datasets ``pids``, until ``expires``
    (Unix seconds). ``link_id`` is the catalogue row that can revoke it."""

    link_id: int
    doi: str
    pids: tuple[str, ...]
    expires: int

    def covers(self, doi: str, pid: str, now: datetime | None = None) -> bool:
        """Whether it opens dataset ``pid`` of publication ``doi`` (and has not expired)."""
        current = (now or datetime.now(UTC)).timestamp()
        same = hmac.compare_digest(self.doi.encode(), doi.encode())
        return same and pid in self.pids and current < self.expires


def refused(message: str, reason: str, log_message: str | None = None) -> PanbinderError:
    return PanbinderError(message, reason=reason, status_code=403, log_message=log_message)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _payload(grant: ReviewGrant, nonce: str) -> bytes:
    data = {"l": grant.link_id, "d": grant.doi, "p": sorted(grant.pids), "e": grant.expires, "n": nonce}
    return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()


def _mac(key: str, payload: bytes) -> bytes:
    return hmac.new(key.encode(), b"panbinder-review-link\0" + payload, hashlib.sha256).digest()


def make_token(key: str, grant: ReviewGrant, nonce: str) -> str:
    """The link's token for ``grant``; ``nonce`` (random) makes two links of one grant differ."""
    if not key:
        raise PanbinderError("No review-link key is set; review links cannot be made.", reason="no_key")
    payload = _payload(grant, nonce)
    return f"{TOKEN_PREFIX}.{_b64(payload)}.{_b64(_mac(key, payload))}"


def token_hash(token: str) -> str:
    """What the catalogue keeps of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


INVALID = (
    "This review link is not valid (incomplete or changed); ask the publication's authors for a new one."
)


def read_token(key: str, token: str) -> ReviewGrant:
    """The grant of a token whose signature is right; else a 403 (nothing of it is trusted)."""
    if not key:
        raise refused("This service has no review-link key; it accepts no review links.", "review_no_key")
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
        raise refused(INVALID, "review_invalid", "malformed review token")
    prefix, payload_text, mac_text = token.split(".")
    try:
        payload, mac = _unb64(payload_text), _unb64(mac_text)
    except (binascii.Error, ValueError):
        raise refused(INVALID, "review_invalid", "review token is not base64") from None
    if prefix != TOKEN_PREFIX or not hmac.compare_digest(_mac(key, payload), mac):
        raise refused(INVALID, "review_invalid", "review token signature does not match")
    try:  # signed by us: the shape is ours, but check it anyway
        data = json.loads(payload)
        grant = ReviewGrant(int(data["l"]), str(data["d"]), tuple(str(p) for p in data["p"]), int(data["e"]))
    except (ValueError, KeyError, TypeError):
        raise refused(INVALID, "review_invalid", "review token payload malformed") from None
    return grant


def _date(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def check_use(grant: ReviewGrant, doi: str, now: datetime) -> None:
    """The grant is for ``doi`` and has not expired (its signed expiry)."""
    if not hmac.compare_digest(grant.doi.encode(), doi.encode()):
        raise refused(
            "This review link is for another publication; open the link as you received it.",
            "review_wrong_publication",
            f"review link {grant.link_id} for {grant.doi!r} used for {doi!r}",
        )
    if now.timestamp() >= grant.expires:
        ended = datetime.fromtimestamp(grant.expires, UTC)
        raise refused(
            f"This review link expired on {_date(ended)}; ask the publication's authors for a new one. "
            "Nothing was launched.",
            "review_expired",
        )


def check_row(grant: ReviewGrant, token: str, row: Any, now: datetime) -> None:
    """The catalogue's row of the link: it holds this token's hash, is live, and names the same
    publication and datasets as the signed grant. ``row`` None: no such link (deleted)."""
    if row is None or not hmac.compare_digest(row.token_hash, token_hash(token)):
        raise refused(
            "This review link was withdrawn; ask the publication's authors for a new one. Nothing was launched.",
            "review_revoked",
            f"review link {grant.link_id}: no row with this token's hash",
        )
    if row.revoked is not None:
        raise refused(
            f"This review link was withdrawn on {_date(row.revoked)}; ask the publication's authors for a "
            "new one. Nothing was launched.",
            "review_revoked",
        )
    if now >= row.expires:
        raise refused(
            f"This review link expired on {_date(row.expires)}; ask the publication's authors for a new one. "
            "Nothing was launched.",
            "review_expired",
        )
    if row.publication.doi != grant.doi or sorted(row.dataset_pids) != sorted(grant.pids):
        raise refused(INVALID, "review_invalid", f"review link {grant.link_id}: row and token disagree")


def parse_lifetime(text: str, *, longest_days: int) -> timedelta:
    """``30d``, ``12h``, ``2w``, ``90m``, ``45s`` as a duration of at most ``longest_days``."""
    m = DURATION_RE.match(text or "")
    if not m or int(m.group(1)) == 0:
        raise PanbinderError(
            f"'{text}' is not a lifetime; give a number and a unit, like 30d (days), 12h, 2w.",
            reason="bad_lifetime",
        )
    lifetime = timedelta(seconds=int(m.group(1)) * UNITS[m.group(2)])
    if lifetime > timedelta(days=longest_days):
        raise PanbinderError(
            f"A review link may last at most {longest_days} days (ReviewLinks.longest_days); "
            f"'{text}' is longer.",
            reason="bad_lifetime",
        )
    return lifetime


def link_ended(revoked: datetime | None, expires: datetime, now: datetime) -> bool:
    """Whether a link no longer opens anything: revoked, or past its expiry."""
    return revoked is not None or now >= expires


def select_ended(servers: Iterable[tuple[str, datetime | None, datetime]], now: datetime) -> list[str]:
    """The Hub users, of ``(hub user, link revoked, link expires)`` records of servers started
    through review links, whose link has ended: their servers must stop. Each user once, in order."""
    ended = [user for user, revoked, expires in servers if link_ended(revoked, expires, now)]
    return list(dict.fromkeys(ended))
