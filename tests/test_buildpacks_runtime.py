"""runtime.txt against the base image's single Python: notice or refusal."""

from __future__ import annotations

import logging

import pytest

from panbinder.builder.buildpacks import NOTICE_PREFIX, PackSettings, configure
from panbinder.builder.buildpacks.python_pip import DebianPipBuildPack
from panbinder.builder.buildpacks.runtime import satisfies
from panbinder.errors import PanbinderError

BUILD_ARGS = {"NB_USER": "jovyan", "NB_UID": "1000"}


@pytest.fixture
def repo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize(
    ("requested", "ok"),
    [
        ("3", True),
        ("3.11", True),
        ("3.11.4", True),
        ("=3.11", True),
        ("==3.11.*", True),
        (">=3.9", True),
        ("<3.10", False),
        ("3.9", False),
        ("3.12", False),
        ("2.7", False),
    ],
)
def test_satisfies(requested, ok):
    assert satisfies(requested, "3.11") is ok


def build_with_log(policy: str, caplog) -> str:
    log = logging.getLogger("test.runtime")
    pack = configure(DebianPipBuildPack, PackSettings(runtime_policy=policy), log)
    with caplog.at_level(logging.INFO, logger="test.runtime"):
        pack(base_image="b").render(BUILD_ARGS)
        pack(base_image="b")  # a second instance logs nothing until rendered
    return "\n".join(r.getMessage() for r in caplog.records if r.name == "test.runtime")


def test_other_python_builds_with_a_notice(repo, caplog):
    (repo / "runtime.txt").write_text("python-3.8\n")
    text = build_with_log("notice", caplog)
    assert text.count(NOTICE_PREFIX) == 1
    assert "runtime.txt asks for Python 3.8, but this deployment only has Python 3.11" in text
    assert "building with Python 3.11" in text


def test_notice_logged_once_per_build(repo, caplog):
    (repo / "runtime.txt").write_text("python-3.8\n")
    log = logging.getLogger("test.runtime")
    bp = configure(DebianPipBuildPack, PackSettings(), log)(base_image="b")
    with caplog.at_level(logging.INFO, logger="test.runtime"):
        bp.render(BUILD_ARGS)
        bp.render(BUILD_ARGS)
    assert sum(NOTICE_PREFIX in r.getMessage() for r in caplog.records) == 1


def test_matching_python_has_no_notice(repo, caplog):
    (repo / "runtime.txt").write_text("python-3.11")
    assert NOTICE_PREFIX not in build_with_log("notice", caplog)


def test_other_python_refused_under_refuse_policy(repo):
    (repo / "binder").mkdir()
    (repo / "binder" / "runtime.txt").write_text("python-3.12")
    pack = configure(DebianPipBuildPack, PackSettings(runtime_policy="refuse"))
    with pytest.raises(PanbinderError) as e:
        pack(base_image="b").render(BUILD_ARGS)
    msg = e.value.message
    assert "binder/runtime.txt asks for Python 3.12" in msg and "only has Python 3.11" in msg
    assert e.value.reason == "python_version_unavailable"


@pytest.mark.parametrize(("text", "fragment"), [("julia-1.9", "names 'julia'"), ("nonsense", "python-3.11")])
def test_bad_runtime_txt_is_refused(repo, text, fragment):
    (repo / "runtime.txt").write_text(text)
    with pytest.raises(PanbinderError) as e:
        configure(DebianPipBuildPack, PackSettings())(base_image="b").render(BUILD_ARGS)
    assert fragment in e.value.message


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("runtime.txt", "python-2.7\n"),
        ("Pipfile", '[packages]\n[requires]\npython_version = "2.7"\n'),
        ("environment.yml", "dependencies:\n  - python=2.7\n"),
    ],
)
def test_python2_is_refused_whatever_the_policy(repo, name, text):
    from panbinder.builder.buildpacks import configured_packs

    (repo / name).write_text(text)
    pack = next(
        p for p in configured_packs(PackSettings(runtime_policy="notice")) if p(base_image="b").detect()
    )
    with pytest.raises(PanbinderError) as e:
        pack(base_image="b").render(BUILD_ARGS)
    assert "asks for Python 2.7. Python 2 is not available on this deployment" in e.value.message
    assert "Port the code to Python 3" in e.value.message
    assert e.value.reason == "python2_unavailable"
