"""Review links on a real SQLite catalogue: making, listing, revoking, and each attack on a grant
(another publication, another dataset, another user, a changed token, expiry, revocation, a
leaked database, files outside the launch)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from panbinder.data_mounts.access import ANONYMOUS, Identity, may_access
from panbinder.data_mounts.catalogue import Catalogue
from panbinder.data_mounts.models import Dataset, Publication
from panbinder.data_mounts.mounts import plan_mounts
from panbinder.data_mounts.review_grants import (
    ReviewGrant,
    make_token,
    parse_lifetime,
    read_token,
    token_hash,
)
from panbinder.data_mounts.review_links import ReviewLinks, may_share
from panbinder.data_mounts.review_models import ReviewLink, ReviewLinkUse
from panbinder.errors import PanbinderError
from panbinder.logs import scrub

KEY = "k" * 64
DOI, OTHER = "10.5555/paper", "10.5555/other"
ALICE = Identity("alice", frozenset({"proposal-7"}))  # a member: an owner of the embargoed data
LATER = datetime.now(UTC) + timedelta(days=300)


@pytest.fixture
def cat(tmp_path: Path):
    storage = tmp_path / "storage"
    for name in ("locked", "open", "other"):
        (storage / name).mkdir(parents=True)
        (storage / name / "scan.nxs").write_bytes(b"x")
    c = Catalogue(db_url=f"sqlite:///{tmp_path}/c.sqlite", storage_roots=[str(storage)])
    c.start()
    with c.session() as s:
        locked = Dataset(
            pid="p:locked", groups=["proposal-7"], release_date=LATER, location=str(storage / "locked")
        )
        other = Dataset(
            pid="p:other", groups=["proposal-7"], release_date=LATER, location=str(storage / "other")
        )
        opened = Dataset(pid="p:open", is_public=True, location=str(storage / "open"))
        s.add_all([locked, other, opened])
        s.add(
            Publication(doi=DOI, repo_url="r", ref="main", resolved_sha="a" * 40, datasets=[locked, opened])
        )
        s.add(Publication(doi=OTHER, repo_url="r", ref="main", resolved_sha="b" * 40, datasets=[other]))
    yield c
    c.close()


@pytest.fixture
def links() -> ReviewLinks:
    return ReviewLinks(signing_key=KEY)


def plan(cat: Catalogue, doi: str, who: Identity, tmp_path: Path, now: datetime | None = None):
    with cat.session() as s:
        pub = cat.get_publication(s, doi)
        return plan_mounts(pub, who, roots=list(cat.storage_roots), manifest_dir=tmp_path / "m", now=now)


def refused(fn, *args, **kw) -> PanbinderError:
    with pytest.raises(PanbinderError) as e:
        fn(*args, **kw)
    return e.value


def test_a_link_mounts_the_embargoed_dataset_for_an_anonymous_launch(cat, links, tmp_path):
    token, link = links.create(cat, DOI, "30d", note="Reviewers of manuscript X")
    assert link["status"] == "active" and link["datasets"] == ["p:locked", "p:open"]
    assert refused(plan, cat, DOI, ANONYMOUS, tmp_path).status_code == 403  # without the link
    grant = links.redeem(cat, token, DOI, record=True)
    mounts = plan(cat, DOI, Identity(review=grant), tmp_path).mounts
    paths = sorted(m.container_path for m in mounts)
    assert paths[0] == "/data/MANIFEST.json" and paths[1].startswith("/data/p-locked") and len(paths) == 3
    assert all(m.read_only for m in mounts)
    listed = links.listing(cat, DOI)
    assert listed[0]["uses"] == 1 and listed[0]["note"] == "Reviewers of manuscript X"


def test_only_the_hash_of_the_token_is_stored_and_a_use_is_its_time_alone(cat, links):
    token, link = links.create(cat, DOI, "1d")
    links.redeem(cat, token, DOI, record=True)
    with cat.session() as s:
        row = s.get(ReviewLink, link["id"])
        assert row.token_hash == token_hash(token) and token not in repr(vars(row))
        use = s.query(ReviewLinkUse).one()
        assert {c.name for c in ReviewLinkUse.__table__.columns} == {"id", "link_id", "used"}
        assert use.used is not None
    assert token.split(".")[2] not in scrub(f"GET /v2/doi/{DOI}?review_token={token}")  # never logged


def test_the_grant_cannot_be_stretched_to_another_publication(cat, links, tmp_path):
    token, _ = links.create(cat, DOI, "30d")
    e = refused(links.redeem, cat, token, OTHER, record=True)
    assert e.status_code == 403 and e.reason == "review_wrong_publication"
    grant = links.redeem(cat, token, DOI, record=False)
    # even handed to another publication's launch directly, it opens none of its datasets
    assert refused(plan, cat, OTHER, Identity(review=grant), tmp_path).status_code == 403


def test_the_grant_cannot_be_stretched_to_another_dataset(cat, links, tmp_path):
    token, _ = links.create(cat, DOI, "30d")
    with cat.session() as s:  # a dataset added to the publication after the link was made
        pub = cat.get_publication(s, DOI)
        pub.datasets.append(cat.get_dataset(s, "p:other"))
    grant = links.redeem(cat, token, DOI, record=False)
    e = refused(plan, cat, DOI, Identity(review=grant), tmp_path)
    assert e.status_code == 403 and "p:other" in e.message and "review link does not cover" in e.message


def test_a_changed_token_is_refused(cat, links):
    token, _ = links.create(cat, DOI, "30d")
    prefix, payload, mac = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    for change in ({"d": OTHER}, {"p": ["p:locked", "p:open", "p:other"]}, {"e": data["e"] + 86400 * 365}):
        forged = base64.urlsafe_b64encode(json.dumps({**data, **change}).encode()).rstrip(b"=").decode()
        e = refused(links.redeem, cat, f"{prefix}.{forged}.{mac}", DOI, record=True)
        assert e.status_code == 403 and e.reason == "review_invalid"
    for bad in ("", "x", token + "x", token[:-2], "rv1..", "rv1.e30.e30", "a.b.c.d"):
        assert refused(links.redeem, cat, bad, DOI, record=True).reason == "review_invalid"
    assert (
        refused(ReviewLinks(signing_key="another key").redeem, cat, token, DOI, record=True).status_code
        == 403
    )
    with cat.session() as s:
        assert s.query(ReviewLinkUse).count() == 0  # refusals are no uses


def test_a_token_made_with_the_key_but_no_row_of_its_own_is_refused(cat, links):
    """Someone with the key (or a second link's id) still needs the row holding the token's hash."""
    token, link = links.create(cat, DOI, "30d")
    grant = read_token(KEY, token)
    twin = make_token(KEY, grant, "another-nonce")  # same grant, another token
    assert refused(links.redeem, cat, twin, DOI, record=True).reason == "review_revoked"
    moved = make_token(KEY, ReviewGrant(link["id"] + 1, DOI, grant.pids, grant.expires), "n")
    assert refused(links.redeem, cat, moved, DOI, record=True).reason == "review_revoked"


def test_an_expired_link_is_refused_and_mounts_nothing(cat, links, tmp_path):
    now = datetime.now(UTC)
    token, _ = links.create(cat, DOI, "1h", now=now)
    grant = links.redeem(cat, token, DOI, record=False, now=now + timedelta(minutes=59))
    e = refused(links.redeem, cat, token, DOI, record=True, now=now + timedelta(hours=1, seconds=1))
    assert e.status_code == 403 and e.reason == "review_expired" and "expired on" in e.message
    # a grant redeemed before its expiry opens nothing once it has passed
    assert (
        refused(plan, cat, DOI, Identity(review=grant), tmp_path, now + timedelta(hours=2)).status_code == 403
    )
    assert links.listing(cat, DOI, now=now + timedelta(hours=2))[0]["status"] == "expired"


def test_the_catalogue_expiry_counts_too(cat, links):
    token, link = links.create(cat, DOI, "30d")
    with cat.session() as s:
        s.get(ReviewLink, link["id"]).expires = datetime.now(UTC) - timedelta(seconds=1)
    assert refused(links.redeem, cat, token, DOI, record=True).reason == "review_expired"


def test_a_revoked_link_is_refused_at_once(cat, links):
    token, link = links.create(cat, DOI, "30d")
    links.redeem(cat, token, DOI, record=True)
    revoked = links.revoke(cat, link["id"])
    assert revoked["status"] == "revoked"
    e = refused(links.redeem, cat, token, DOI, record=True)
    assert e.status_code == 403 and e.reason == "review_revoked" and "withdrawn" in e.message
    assert links.revoke(cat, link["id"])["revoked"] == revoked["revoked"]  # idempotent
    assert refused(links.revoke, cat, 999).status_code == 404


def test_the_grant_makes_its_holder_no_one(cat, links):
    """A reviewer stays anonymous outside the launch: no files in the API or previews (they
    check ``may_access``), and no managing of links."""
    token, link = links.create(cat, DOI, "30d")
    reviewer = Identity(review=links.redeem(cat, token, DOI, record=False))
    with cat.session() as s:
        assert not may_access(cat.get_dataset(s, "p:locked"), reviewer)
        assert not may_share(cat.get_publication(s, DOI), reviewer)
    assert refused(links.create, cat, DOI, "30d", who=reviewer).status_code == 403
    assert refused(links.listing, cat, DOI, who=reviewer).status_code == 403
    assert refused(links.revoke, cat, link["id"], who=reviewer).status_code == 404


def test_owners_manage_links_others_do_not(cat, links):
    _, link = links.create(cat, DOI, "7d", who=ALICE)
    assert link["created_by"] == "alice"
    bob = Identity("bob", frozenset({"proposal-8"}))
    assert refused(links.create, cat, DOI, "7d", who=bob).status_code == 403
    assert refused(links.revoke, cat, link["id"], who=bob).status_code == 404
    assert links.revoke(cat, link["id"], who=ALICE)["status"] == "revoked"
    with cat.session() as s:  # an open publication needs no review link
        assert not may_share(cat.get_publication(s, DOI), Identity("bob", frozenset({"proposal-8"})))
        pub = cat.get_publication(s, DOI)
        pub.datasets.remove(cat.get_dataset(s, "p:locked"))
        assert not may_share(pub, ALICE)


@pytest.mark.parametrize(
    ("text", "wrong"),
    [
        ("", "not a lifetime"),
        ("30", "not a lifetime"),
        ("0d", "not a lifetime"),
        ("-1d", "not a lifetime"),
        ("1y", "not a lifetime"),
        ("200d", "at most 180 days"),
    ],
)
def test_lifetimes_are_checked(text, wrong):
    e = refused(parse_lifetime, text, longest_days=180)
    assert e.status_code == 400 and wrong in e.message


def test_lifetimes():
    assert parse_lifetime("30d", longest_days=180) == timedelta(days=30)
    assert parse_lifetime("2w", longest_days=180) == timedelta(days=14)
    assert parse_lifetime(" 12h ", longest_days=180) == timedelta(hours=12)


def test_bad_input_is_a_clear_error(cat, links):
    assert refused(links.create, cat, "10.5555/nothing", "30d").status_code == 404
    assert refused(links.create, cat, DOI, "30d", note="x" * 501).status_code == 400
    assert refused(ReviewLinks(signing_key="").create, cat, DOI, "30d").status_code == 400
    _, link = links.create(cat, DOI, "30d", note="a\nb\x00c")
    assert link["note"] == "a b c"
