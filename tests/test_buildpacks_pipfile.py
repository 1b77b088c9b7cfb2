"""Pipfile.lock / Pipfile converted to a requirements file installed with pip."""

from __future__ import annotations

import json

import pytest

from panbinder.builder.buildpacks import PackSettings, PipfilePipBuildPack, configure
from panbinder.builder.buildpacks.pipfile import lock_to_requirements, pipfile_to_requirements
from panbinder.errors import PanbinderError

BUILD_ARGS = {"NB_USER": "jovyan", "NB_UID": "1000"}
LOCK = {
    "_meta": {"requires": {"python_version": "3.11"}},
    "default": {
        "tabulate": {"hashes": ["sha256:abc"], "version": "==0.9.0"},
        "requests": {"extras": ["socks"], "version": "==2.31.0", "markers": "python_version >= '3.8'"},
        "mylib": {"editable": True, "path": "."},
        "tool": {"git": "https://git.example.org/tool.git", "ref": "v1"},
    },
    "develop": {"pytest": {"version": "==8.0.0"}},
}


@pytest.fixture
def repo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_lock_conversion():
    assert lock_to_requirements(LOCK) == [
        "-e .",
        "requests[socks]==2.31.0 ; python_version >= '3.8'",
        "tabulate==0.9.0",
        "tool @ git+https://git.example.org/tool.git@v1",
    ]


def test_pipfile_conversion():
    import tomllib

    pipfile = tomllib.loads(
        '[packages]\nnumpy = "*"\nscipy = ">=1.10"\nrich = {version = "==13.0", extras = ["jupyter"]}\n'
        '[dev-packages]\npytest = "*"\n'
    )
    assert pipfile_to_requirements(pipfile) == ["numpy", "scipy>=1.10", "rich[jupyter]==13.0"]


def render() -> str:
    return configure(PipfilePipBuildPack, PackSettings())(base_image="b").render(BUILD_ARGS)


def test_lock_wins_over_pipfile(repo):
    (repo / "Pipfile").write_text('[packages]\ntabulate = "*"\n')
    lock = {"default": {"tabulate": {"version": "==0.8.10"}}}
    (repo / "Pipfile.lock").write_text(json.dumps(lock))
    df = render()
    generated = ".panbinder/requirements-from-Pipfile.lock.txt"
    assert f"COPY --chown=1000:1000 src/{generated} ${{REPO_DIR}}/{generated}" in df
    assert f"-r {generated}" in df
    assert "tabulate==0.8.10" in (repo / generated).read_text()


def test_pipfile_without_lock(repo):
    (repo / "binder").mkdir()
    (repo / "binder" / "Pipfile").write_text('[packages]\ntabulate = "==0.9.0"\n')
    df = render()
    assert "-r .panbinder/requirements-from-Pipfile.txt" in df
    assert "tabulate==0.9.0" in (repo / ".panbinder/requirements-from-Pipfile.txt").read_text()


def test_local_path_in_lock_installs_after_the_full_copy(repo):
    (repo / "Pipfile.lock").write_text(json.dumps(LOCK))
    df = render()
    assert "src/.panbinder" not in df
    lines = df.splitlines()
    assert lines.index("COPY --chown=1000:1000 src/ ${REPO_DIR}/") < next(
        i for i, ln in enumerate(lines) if "-r .panbinder/requirements-from-Pipfile.lock.txt" in ln
    )


def test_broken_lock_is_a_clear_error(repo):
    (repo / "Pipfile.lock").write_text("{not json")
    with pytest.raises(PanbinderError) as e:
        render()
    assert "Pipfile.lock could not be read" in e.value.message and "pipenv lock" in e.value.message
