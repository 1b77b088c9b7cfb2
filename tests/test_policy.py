"""Ban and allow lists (builder/policy.py), the build-log name check and the size cap."""

from __future__ import annotations

import os

import pytest

from panbinder.builder.build_logs import log_path
from panbinder.builder.checkout import check_checkout_size, tree_size
from panbinder.builder.policy import SpecPolicy
from panbinder.errors import PanbinderError

REPO = "https://git.example.org/group/analysis.git"


def test_everything_is_allowed_by_default():
    assert SpecPolicy().allows(f"{REPO}/main")


def test_banned_spec_is_refused_with_403():
    policy = SpecPolicy(banned_specs=[r"https://git\.example\.org/group/.*"])
    with pytest.raises(PanbinderError) as err:
        policy.check(REPO, "main")
    assert err.value.status_code == 403
    assert err.value.reason == "banned_spec"
    assert err.value.message.startswith(f"The repository {REPO} is not allowed on this service")
    policy.check("https://git.example.org/other/x.git", "main")


def test_match_ignores_case_and_can_name_a_ref():
    policy = SpecPolicy(banned_specs=[r"https://GIT\.example\.org/.*/bad-branch$"])
    assert not policy.allows(f"{REPO}/bad-branch")
    assert policy.allows(f"{REPO}/main")


def test_allow_list_refuses_everything_else():
    policy = SpecPolicy(allowed_specs=[r"https://git\.facility\.eu/"])
    assert policy.allows("https://git.facility.eu/beamline/code.git/v1")
    assert not policy.allows(f"{REPO}/main")


def test_ban_wins_over_allow():
    policy = SpecPolicy(allowed_specs=[r"https://git\.example\.org/"], banned_specs=[r".*/analysis\.git/"])
    assert not policy.allows(f"{REPO}/main")
    assert policy.allows("https://git.example.org/group/other.git/main")


def test_match_is_anchored_at_the_start():
    policy = SpecPolicy(banned_specs=[r"example\.org"])
    assert policy.allows(f"{REPO}/main")


def test_unknown_repository_is_not_checked_yet():
    SpecPolicy(allowed_specs=["nothing"]).check("", "10.5555/doi")


def test_invalid_pattern_is_reported():
    with pytest.raises(ValueError, match="invalid regular expression"):
        SpecPolicy(banned_specs=["("])


@pytest.mark.parametrize(
    "name",
    [
        "../secret.log",
        "a/b.log",
        "x.txt",
        ".hidden.log",
        "",
        "..log",
        "a\x00.log",
        "%2e%2e.log",
        "/etc/passwd",
    ],
)
def test_log_names_other_than_plain_file_names_are_refused(tmp_path, name):
    with pytest.raises(PanbinderError) as err:
        log_path(tmp_path, name)
    assert err.value.status_code == 404


def test_log_name_through_a_symlink_out_of_the_folder_is_refused(tmp_path):
    outside = tmp_path / "outside.log"
    outside.write_text("secret")
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "link.log").symlink_to(outside)
    with pytest.raises(PanbinderError):
        log_path(logs, "link.log")


def test_kept_log_is_found(tmp_path):
    name = "127.0.0.1:5000_panbinder_v1-git-x@abc.log".replace(":", "_")
    (tmp_path / name).write_text("log")
    assert log_path(tmp_path, name) == (tmp_path / name).resolve()
    with pytest.raises(PanbinderError) as err:
        log_path(tmp_path, "missing@abc.log")
    assert err.value.reason == "log_not_found"


def test_checkout_size_cap(tmp_path):
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "pack").write_bytes(b"x" * 3000)
    (tmp_path / "data.bin").write_bytes(b"y" * 2000)
    os.symlink("/usr", tmp_path / "link")  # not followed
    assert tree_size(str(tmp_path)) == 5000
    check_checkout_size(str(tmp_path), 10_000)
    check_checkout_size(str(tmp_path), 0)
    with pytest.raises(PanbinderError) as err:
        check_checkout_size(str(tmp_path), 4096)
    assert err.value.reason == "repo_too_large"
    assert "larger than this service's limit of 4.0 KiB" in err.value.message
