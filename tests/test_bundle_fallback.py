"""A rebuild whose upstream repository is gone checks the pinned commit out of the archive's
repository bundle (builder/clone.py), confined to the archive (registry_cache/archive.py), and
its result says so (rebuilds.RebuildResult). Real git on 127.0.0.1; no build."""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

import pytest

from panbinder.builder.clone import (
    FROM_BUNDLE,
    clone_bundle,
    clone_pinned,
    falls_back_to_bundle,
)
from panbinder.builder.url_guard import RepoGuard
from panbinder.errors import PanbinderError
from panbinder.rebuilds import FROZEN, RebuildResult
from panbinder.registry_cache.archive import ArchiveError, repository_bundle
from tests.support import running_git

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git command")
LOG = logging.getLogger("test-bundle-fallback")
SHA = "0123456789abcdef0123456789abcdef01234567"


def error(reason: str) -> PanbinderError:
    return PanbinderError("no", reason=reason)


@pytest.mark.parametrize(
    ("reason", "bundle", "ref", "expected"),
    [
        ("repo_unreachable", "/a/repo.bundle", SHA, True),  # upstream gone or away
        ("unknown_ref", "/a/repo.bundle", SHA, True),  # the pinned commit gone upstream
        ("repo_unreachable", "", SHA, False),  # no archive: the build's own answer
        ("blocked_address", "/a/repo.bundle", SHA, False),  # a refused address stays refused
        ("repo_too_large", "/a/repo.bundle", SHA, False),
        ("repo_unreachable", "/a/repo.bundle", "HEAD", False),  # only a pinned commit
        ("repo_unreachable", "/a/repo.bundle", SHA[:12], False),
    ],
)
def test_which_failed_clones_fall_back_to_the_bundle(reason, bundle, ref, expected):
    assert falls_back_to_bundle(error(reason), bundle, ref) is expected


def make_bundle(daemon, tmp_path: Path) -> tuple[str, str, Path]:
    """Two commits upstream, bundled with all refs as ``panbinder archive`` does: (first, last, bundle)."""
    first = daemon.commit("paper", {"analysis.py": "print(1)\n"}, "one")
    last = daemon.commit("paper", {"analysis.py": "print(2)\n"}, "two")
    bundle = tmp_path / "repo.bundle"
    repo = daemon.base / "paper"
    subprocess.run(["git", "-C", str(repo), "bundle", "create", "-q", str(bundle), "--all"], check=True)
    return first, last, bundle


def test_deleted_upstream_falls_back_and_checks_out_the_pinned_commit(tmp_path, caplog):
    guard = RepoGuard(allowed_hosts=["127.0.0.1"])
    with running_git(tmp_path / "served") as daemon:
        first, last, bundle = make_bundle(daemon, tmp_path)
        url = daemon.url("paper")
        shutil.rmtree(daemon.base / "paper")  # the upstream repository deleted
        checkout = str(tmp_path / "checkout")
        with pytest.raises(PanbinderError) as info:
            clone_pinned(guard, url, first, checkout, allow_file=False, log=LOG)
    assert falls_back_to_bundle(info.value, str(bundle), first)  # the real clone's reason
    with caplog.at_level(logging.INFO, logger=LOG.name):
        assert clone_bundle(str(bundle), url, first, checkout, log=LOG) == first
    head = subprocess.run(["git", "-C", checkout, "rev-parse", "HEAD"], capture_output=True, text=True)
    assert head.stdout.strip() == first != last  # the pinned commit, not the bundle's HEAD
    assert (Path(checkout) / "analysis.py").read_text() == "print(1)\n"
    assert FROM_BUNDLE.format(url=url) in caplog.text
    assert f"upstream {url} is unreachable" in caplog.text


def test_a_bundle_without_the_pinned_commit_is_refused(tmp_path):
    with running_git(tmp_path / "served") as daemon:
        _, _, bundle = make_bundle(daemon, tmp_path)
    with pytest.raises(PanbinderError) as info:
        clone_bundle(str(bundle), "git://127.0.0.1:1/paper", SHA, str(tmp_path / "out"), log=LOG)
    assert info.value.reason == "unknown_ref"
    assert SHA in info.value.message and "bundle lacks" in info.value.message


def test_an_unreadable_bundle_says_to_verify_the_archive(tmp_path):
    bogus = tmp_path / "repo.bundle"
    bogus.write_text("not a bundle\n")
    with pytest.raises(PanbinderError) as info:
        clone_bundle(str(bogus), "git://127.0.0.1:1/paper", SHA, str(tmp_path / "out"), log=LOG)
    assert info.value.reason == "bundle_unreadable"
    assert "restore --verify-only" in info.value.message
    assert str(bogus) not in info.value.message  # the path only in the operator's log


def test_the_bundle_is_confined_to_its_archive(tmp_path):
    bag = tmp_path / "archive"
    (bag / "data").mkdir(parents=True)
    with pytest.raises(ArchiveError, match="no repository bundle"):
        repository_bundle(bag)
    outside = tmp_path / "elsewhere.bundle"
    outside.write_text("x")
    (bag / "data" / "repo.bundle").symlink_to(outside)
    with pytest.raises(ArchiveError, match="leads outside the archive"):
        repository_bundle(bag)
    (bag / "data" / "repo.bundle").unlink()
    (bag / "data" / "repo.bundle").write_text("x")
    assert repository_bundle(bag) == (bag / "data" / "repo.bundle").resolve()


def test_the_result_says_which_source_was_used():
    note = FROM_BUNDLE.format(url="git://example.org/paper")
    upstream = RebuildResult(FROZEN, "img:1", "img:1-frozen", identical=True)
    from_bundle = RebuildResult(FROZEN, "img:1", "img:1-frozen", identical=True, repository=note)
    assert upstream.summary() == "lock: identical"
    assert from_bundle.summary() == f"lock: identical; {note}"
    assert note in from_bundle.report()
    failed = RebuildResult(FROZEN, "img:1", "", failure="pip failed", repository=note)
    assert failed.summary() == f"failed: pip failed; {note}"
