"""Access rules, launch-option parsing and mount planning (pure logic, tmp folders)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from panbinder.data_mounts import MountSpec
from panbinder.data_mounts.access import ANONYMOUS, Identity, is_open, may_access
from panbinder.data_mounts.mounts import MANIFEST_PATH, plan_mounts
from panbinder.errors import PanbinderError
from panbinder.launcher import signing

NOW = datetime(2026, 11, 26, tzinfo=UTC)


@dataclass
class F:
    path: str
    size: int
    sha256: str


@dataclass
class DS:
    pid: str
    title: str = "a dataset"
    is_public: bool = False
    release_date: datetime | None = None
    owners: list = field(default_factory=list)
    groups: list = field(default_factory=list)
    proposal_id: str | None = None
    location: str | None = None
    size: int = 3
    file_count: int = 1
    slug: str = "ds"
    files: list = field(default_factory=lambda: [F("a.h5", 3, "0" * 64)])


@dataclass
class Pub:
    datasets: list
    doi: str = "10.5555/x"
    title: str = "paper"
    repo_url: str = "https://example.org/r.git"
    resolved_sha: str = "a" * 40


def test_public_and_released_datasets_are_open():
    assert is_open(DS("p", is_public=True), NOW)
    assert is_open(DS("p", release_date=NOW - timedelta(days=1)), NOW)
    assert is_open(DS("p", release_date=(NOW - timedelta(days=1)).replace(tzinfo=None)), NOW)  # naive = UTC
    assert not is_open(DS("p", release_date=NOW + timedelta(days=1)), NOW)
    assert not is_open(DS("p"), NOW)


def test_embargoed_dataset_only_for_owners_groups_and_proposal():
    ds = DS("p", release_date=NOW + timedelta(days=30), owners=["bob"], groups=["team"], proposal_id="42")
    assert not may_access(ds, ANONYMOUS, NOW)
    assert not may_access(ds, Identity("eve", frozenset({"other"})), NOW)
    assert may_access(ds, Identity("bob"), NOW)
    assert may_access(ds, Identity("carol", frozenset({"team"})), NOW)
    assert may_access(ds, Identity("dan", frozenset({"42"})), NOW)


@pytest.mark.parametrize("bad", ["x", [["a"]], [[1, "/data/a", True]]])
def test_malformed_mount_options_are_refused(bad):
    with pytest.raises(PanbinderError):
        signing.from_options(bad)


def test_plan_mounts_read_only_with_manifest(tmp_path: Path):
    root = tmp_path / "storage"
    (root / "one").mkdir(parents=True)
    (root / "single.h5").write_bytes(b"x")
    pub = Pub(
        [
            DS("b", is_public=True, location=str(root / "single.h5"), slug="b"),
            DS("a", is_public=True, location=str(root / "one"), slug="a"),
        ]
    )
    plan = plan_mounts(pub, ANONYMOUS, roots=[str(root)], manifest_dir=tmp_path / "m", now=NOW)
    assert plan.environment == (("PANBINDER_DATA", "/data"),)
    assert plan.mounts[0] == MountSpec(str(root / "one"), "/data/a", True)
    assert plan.mounts[1] == MountSpec(str(root / "single.h5"), "/data/b/single.h5", True)
    manifest = plan.mounts[2]
    assert manifest.container_path == MANIFEST_PATH and manifest.read_only
    data = json.loads(Path(manifest.host_path).read_text())
    assert [d["pid"] for d in data["datasets"]] == ["a", "b"]
    assert data["datasets"][0]["files"][0]["sha256"] == "0" * 64
    # the same catalogue state reuses the same manifest file
    again = plan_mounts(pub, ANONYMOUS, roots=[str(root)], manifest_dir=tmp_path / "m", now=NOW)
    assert again.mounts[2].host_path == manifest.host_path


def test_plan_refuses_embargo_with_release_date(tmp_path: Path):
    root = tmp_path / "storage"
    (root / "one").mkdir(parents=True)
    ds = DS("pid-7", title="Secret scan", location=str(root / "one"), release_date=NOW + timedelta(days=10))
    with pytest.raises(PanbinderError) as e:
        plan_mounts(Pub([ds]), ANONYMOUS, roots=[str(root)], manifest_dir=tmp_path / "m", now=NOW)
    assert e.value.status_code == 403
    assert "Secret scan" in e.value.message and "2026-12-06" in e.value.message
    assert not (tmp_path / "m").exists()  # nothing written for a refused launch


def test_plan_refuses_locations_outside_roots_and_missing(tmp_path: Path):
    root = tmp_path / "storage"
    root.mkdir()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (root / "link").symlink_to(outside)
    for location in (str(outside), str(root / "link"), str(root / "gone"), None):
        ds = DS("p", is_public=True, location=location)
        with pytest.raises(PanbinderError) as e:
            plan_mounts(Pub([ds]), ANONYMOUS, roots=[str(root)], manifest_dir=tmp_path / "m", now=NOW)
        assert e.value.status_code == 409
        assert str(tmp_path) not in e.value.message  # no host paths in what users see
        if location is not None:
            assert location in e.value.log_message  # the operator's log says which folder


def test_the_spawner_refusal_names_no_host_path(tmp_path: Path):
    """A mount outside the roots, signed with the key, is refused without showing host paths."""
    from types import SimpleNamespace

    from panbinder.launcher.spawner import PanbinderSpawner

    root = tmp_path / "storage"
    root.mkdir()
    fields = signing.SignedFields(
        "img:1", (MountSpec("/etc", "/data/etc", True),), {}, "pb-a", int(NOW.timestamp()) + 10**9
    )
    spawner = PanbinderSpawner(
        user=SimpleNamespace(name="pb-a", url="/user/pb-a/", escaped_name="pb-a", id=1),
        signing_key="k",
        storage_roots=[str(root)],
    )
    spawner.user_options = signing.signed_options("k", fields)
    with pytest.raises(PanbinderError) as e:
        spawner.apply_launch_options()
    assert e.value.message.startswith("'etc' is outside the storage roots")
    assert str(root) not in e.value.message and str(root) in e.value.log_message
