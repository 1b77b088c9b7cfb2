"""Path confinement: escapes by '..', absolute paths and symlinks are refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from panbinder.errors import PanbinderError
from panbinder.paths import check_relative, confine, safe_join, slug


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    root = tmp_path / "storage"
    (root / "beamline" / "run1").mkdir(parents=True)
    (root / "beamline" / "run1" / "a.h5").write_bytes(b"x")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.h5").write_bytes(b"s")
    return {"root": root, "outside": outside, "tmp": tmp_path}


def test_inside_root_is_returned_resolved(tree):
    run = tree["root"] / "beamline" / "run1"
    assert confine(str(run), [str(tree["root"])]) == run.resolve()
    assert confine(tree["root"], [tree["root"]]) == tree["root"].resolve()


def test_dotdot_escape_refused(tree):
    sneaky = f"{tree['root']}/beamline/../../outside/secret.h5"
    with pytest.raises(PanbinderError) as err:
        confine(sneaky, [str(tree["root"])])
    assert err.value.reason == "path_refused"
    assert "outside the storage roots" in err.value.message
    # '..' that stays inside is fine: it is resolved, not rejected by spelling
    inside = f"{tree['root']}/beamline/run1/../run1"
    assert confine(inside, [str(tree["root"])]) == (tree["root"] / "beamline" / "run1").resolve()


def test_absolute_path_outside_refused(tree):
    with pytest.raises(PanbinderError, match="outside the storage roots"):
        confine(str(tree["outside"] / "secret.h5"), [str(tree["root"])])
    with pytest.raises(PanbinderError, match="outside the storage roots"):
        confine("/etc/passwd", [str(tree["root"])])


def test_relative_path_and_missing_roots_refused(tree):
    with pytest.raises(PanbinderError, match="not an absolute path"):
        confine("beamline/run1", [str(tree["root"])])
    with pytest.raises(PanbinderError, match="No storage roots"):
        confine(str(tree["root"]), [])
    with pytest.raises(PanbinderError, match="Storage root 'relative' is not an absolute path"):
        confine(str(tree["root"]), ["relative"])


def test_symlink_to_outside_refused(tree):
    link = tree["root"] / "beamline" / "evil"
    link.symlink_to(tree["outside"])
    with pytest.raises(PanbinderError, match="outside the storage roots"):
        confine(str(link), [str(tree["root"])])
    with pytest.raises(PanbinderError, match="outside the storage roots"):
        confine(str(link / "secret.h5"), [str(tree["root"])])


def test_symlink_inside_root_allowed(tree):
    link = tree["root"] / "alias"
    link.symlink_to(tree["root"] / "beamline" / "run1")
    assert confine(str(link), [str(tree["root"])]) == (tree["root"] / "beamline" / "run1").resolve()


def test_root_itself_a_symlink(tree):
    root_link = tree["tmp"] / "data"
    root_link.symlink_to(tree["root"])
    # the same dataset given through the link or through the real path is inside
    via_link = confine(str(root_link / "beamline" / "run1"), [str(root_link)])
    via_real = confine(str(tree["root"] / "beamline" / "run1"), [str(root_link)])
    assert via_link == via_real == (tree["root"] / "beamline" / "run1").resolve()
    with pytest.raises(PanbinderError, match="outside"):
        confine(str(tree["outside"]), [str(root_link)])


def test_missing_path(tree):
    missing = tree["root"] / "beamline" / "nope"
    with pytest.raises(PanbinderError) as err:
        confine(str(missing), [str(tree["root"])])
    assert err.value.reason == "path_missing" and err.value.status_code == 404
    assert confine(str(missing), [str(tree["root"])], must_exist=False) == missing.resolve()
    with pytest.raises(PanbinderError, match="outside"):
        confine(f"{tree['root']}/nope/../../outside", [str(tree["root"])], must_exist=False)


def test_symlink_loop_refused(tree):
    loop = tree["root"] / "loop"
    loop.symlink_to(loop)
    with pytest.raises(PanbinderError):
        confine(str(loop), [str(tree["root"])])


def test_nul_refused(tree):
    with pytest.raises(PanbinderError, match="NUL"):
        confine(f"{tree['root']}/a\0b", [str(tree["root"])])


@pytest.mark.parametrize("bad", ["../x", "a/../../x", "/etc/passwd", "", ".", "a\\b", "~/x", "C:/x", "a\0b"])
def test_safe_join_refuses(tree, bad):
    with pytest.raises(PanbinderError):
        safe_join(tree["root"], bad)


def test_safe_join_inside_and_symlink_escape(tree):
    assert safe_join(tree["root"], "beamline/run1/a.h5") == (tree["root"] / "beamline/run1/a.h5").resolve()
    assert safe_join(tree["root"], "new/folder") == tree["root"].resolve() / "new" / "folder"
    (tree["root"] / "out").symlink_to(tree["outside"])
    with pytest.raises(PanbinderError, match="symbolic link"):
        safe_join(tree["root"], "out/secret.h5")


def test_check_relative():
    assert str(check_relative("sub/file.h5")) == "sub/file.h5"


def test_slug_golden_values():
    # pinned: changing the scheme renames every /data/<slug> mount point
    assert slug("PID.SAMPLE.PREFIX/desy_ds1") == "pid.sample.prefix-desy_ds1-feafd4e3"
    assert slug("local:beamline/run1") == "local-beamline-run1-5995d68d"
    assert slug("../../etc/passwd") == "etc-passwd-3754d6cb"
    assert slug("") == "dataset-e3b0c442"


def test_slug_is_safe_bounded_and_unique():
    long = "10.5281/" + "x" * 500
    s = slug(long)
    assert len(s) <= 48 + 9
    for pid in ["..", ".", "/", "A B/C", "Ünïcödé", long, "a" * 48 + "-", "x/..", "-lead"]:
        s = slug(pid)
        assert s not in (".", "..")
        assert all(c in "abcdefghijklmnopqrstuvwxyz0123456789._-" for c in s), s
        assert not s.startswith((".", "-")), s
        assert os.sep not in s
    assert slug("Run/1") != slug("run/1") != slug("run-1")
