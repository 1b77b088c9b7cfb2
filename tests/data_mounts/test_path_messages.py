"""Refusals show names relative to the storage root or dataset, never the host's absolute paths.

Messages reach anonymous readers (preview, launch failures) and the owners of launched servers;
the absolute path stays in ``log_message`` for the operator.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from panbinder.errors import PanbinderError
from panbinder.paths import confine, safe_join, shown_name


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "storage" / "beamline" / "run1").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.h5").write_bytes(b"s")
    return tmp_path / "storage"


def refusal(call) -> PanbinderError:
    with pytest.raises(PanbinderError) as e:
        call()
    return e.value


def assert_no_host_path(err: PanbinderError, tmp_path: Path, shown: str) -> None:
    assert str(tmp_path) not in err.message and "/etc" not in err.message, err.message
    assert f"'{shown}'" in err.message, err.message
    assert str(tmp_path) in err.log_message or "/etc" in err.log_message, err.log_message


def test_outside_the_roots(root, tmp_path):
    (root / "beamline" / "evil").symlink_to(tmp_path / "outside")
    cases = {
        f"{root}/beamline/../../outside/secret.h5": "secret.h5",
        str(root / "beamline" / "evil"): "beamline/evil",
        str(root / "beamline" / "evil" / "secret.h5"): "beamline/evil/secret.h5",
    }
    for path, shown in cases.items():
        assert_no_host_path(refusal(lambda p=path: confine(p, [str(root)])), tmp_path, shown)
    err = refusal(lambda: confine("/etc/passwd", [str(root)]))
    assert err.message.startswith("'passwd' is outside the storage roots")
    assert "/etc/passwd" in err.log_message and str(root) in err.log_message


def test_missing_and_unresolvable(root, tmp_path):
    err = refusal(lambda: confine(str(root / "beamline" / "gone"), [str(root)]))
    assert err.status_code == 404
    assert_no_host_path(err, tmp_path, "beamline/gone")
    (root / "loop").symlink_to(root / "loop")
    assert_no_host_path(refusal(lambda: confine(str(root / "loop"), [str(root)])), tmp_path, "loop")


def test_safe_join_escape_names_the_relative_path(root, tmp_path):
    run = root / "beamline" / "run1"
    (run / "leak.h5").symlink_to(tmp_path / "outside" / "secret.h5")
    err = refusal(lambda: safe_join(run, "leak.h5"))
    assert_no_host_path(err, tmp_path, "leak.h5")
    assert "leads outside its folder" in err.message


def test_shown_name():
    assert shown_name("/s/root/a/b.h5", ["/other", "/s/root"]) == "a/b.h5"
    assert shown_name("/s/root", ["/s/root/"]) == "."
    assert shown_name("/s/rootless/x.h5", ["/s/root"]) == "x.h5"  # a prefix is not a parent
    assert shown_name("/s/root/../x.h5", ["/s/root"]) == "x.h5"
