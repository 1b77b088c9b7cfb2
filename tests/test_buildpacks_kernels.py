"""Kernel names declared by notebooks become kernelspecs of the image's Python (kernels.py),
and repo2docker's environment variables are set in every image."""

from __future__ import annotations

import json
import logging

import pytest

from panbinder.builder.buildpacks import NOTICE_PREFIX, PackSettings, configure
from panbinder.builder.buildpacks.kernels import alias_notice, python_aliases
from panbinder.builder.buildpacks.python_pip import DebianPipBuildPack

BUILD_ARGS = {"NB_USER": "jovyan", "NB_UID": "1000"}


def notebook(name: str, language: str | None = "python") -> str:
    spec = {"name": name, "display_name": name}
    if language:
        spec["language"] = language
    return json.dumps({"cells": [], "metadata": {"kernelspec": spec}, "nbformat": 4, "nbformat_minor": 5})


@pytest.fixture
def repo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_python_names_other_than_python3_are_found(repo):
    (repo / "a.ipynb").write_text(notebook("python2"))
    (repo / "sub").mkdir()
    (repo / "sub" / "b.ipynb").write_text(notebook("conda-env-analysis-py", language=None))
    (repo / "sub" / "c.ipynb").write_text(notebook("python2"))
    (repo / "d.ipynb").write_text(notebook("python3"))
    (repo / "e.ipynb").write_text(notebook("ir", language="R"))
    (repo / "f.ipynb").write_text(notebook("myenv"))  # language python: any name
    (repo / "g.ipynb").write_text(notebook("../../etc"))  # not a kernel name
    (repo / "h.ipynb").write_text("not json")
    (repo / ".ipynb_checkpoints").mkdir()
    (repo / ".ipynb_checkpoints" / "x.ipynb").write_text(notebook("python27"))
    assert python_aliases() == {
        "python2": ["a.ipynb", "sub/c.ipynb"],
        "conda-env-analysis-py": ["sub/b.ipynb"],
        "myenv": ["f.ipynb"],
    }


def test_notice_names_kernels_and_warns_about_python2():
    text = alias_notice({"python2": ["a.ipynb"], "conda-env-x-py": ["b.ipynb"]}, "3.11")
    assert "conda-env-x-py (b.ipynb); python2 (a.ipynb)" in text
    assert "Python 3.11 kernel under those names" in text
    assert "Python 2 will not run unchanged" in text
    assert "Python 2" not in alias_notice({"conda-env-x-py": ["b.ipynb"]}, "3.11")


def render(caplog) -> tuple[str, str]:
    log = logging.getLogger("test.kernels")
    pack = configure(DebianPipBuildPack, PackSettings(), log)(base_image="b")
    with caplog.at_level(logging.INFO, logger="test.kernels"):
        dockerfile = pack.render(BUILD_ARGS)
    return dockerfile, "\n".join(r.getMessage() for r in caplog.records if r.name == "test.kernels")


def test_alias_step_after_the_installs_with_a_notice(repo, caplog):
    (repo / "requirements.txt").write_text("tabulate\n")
    (repo / "old.ipynb").write_text(notebook("python2"))
    dockerfile, log = render(caplog)
    lines = dockerfile.splitlines()
    step = next(i for i, ln in enumerate(lines) if "KernelSpecManager" in ln)
    assert lines[step].rstrip().endswith(" python2")
    assert step > next(i for i, ln in enumerate(lines) if "-r requirements.txt" in ln)
    assert step > lines.index("COPY --chown=1000:1000 src/ ${REPO_DIR}/")
    assert NOTICE_PREFIX + "notebooks declare the kernels python2 (old.ipynb)" in log


def test_no_alias_step_without_such_notebooks(repo, caplog):
    (repo / "new.ipynb").write_text(notebook("python3"))
    dockerfile, log = render(caplog)
    assert "KernelSpecManager" not in dockerfile
    assert "kernels" not in log


def test_repo2docker_variables_set_for_postbuild_and_the_server(repo, caplog):
    (repo / "postBuild").write_text("#!/bin/sh\ntrue\n")
    dockerfile, _ = render(caplog)
    lines = dockerfile.splitlines()
    post = lines.index("RUN ./postBuild")
    for env in (
        "ENV NB_USER=${NB_USER}",
        "ENV NB_UID=${NB_UID}",
        "ENV NB_PYTHON_PREFIX=/srv/venv",
        "ENV KERNEL_PYTHON_PREFIX=/srv/venv",
        "ENV APP_BASE=/srv",
        "ENV REPO_DIR=${REPO_DIR}",
        "ENV NPM_CONFIG_PREFIX=${HOME}/.local",
    ):
        assert env in lines and lines.index(env) < post, env
