"""A repository's Dockerfile: allowed only FROM the configured local base images."""

from __future__ import annotations

import pytest

from panbinder.builder.buildpacks import AllowListDockerBuildPack, PackSettings, configure
from panbinder.builder.buildpacks.dockerfile import from_images
from panbinder.errors import PanbinderError


@pytest.fixture
def repo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def render(allowed=("panbinder-base:bookworm-1",)) -> str:
    pack = configure(AllowListDockerBuildPack, PackSettings(allowed_base_images=tuple(allowed)))
    return pack(base_image="b").render({})


def test_from_lines():
    text = "ARG X\nFROM --platform=linux/amd64 a:1 AS build\nRUN x \\\n  y\nfrom build\n"
    assert from_images(text) == [("a:1", "build"), ("build", None)]


def test_allowed_base_renders_the_file_as_is(repo):
    text = "FROM panbinder-base:bookworm-1 AS base\nRUN touch /x\nFROM base\n"
    (repo / "Dockerfile").write_text(text)
    assert render() == text


def test_unknown_base_is_refused_naming_it_and_the_allowed_ones(repo):
    (repo / "binder").mkdir()
    (repo / "binder" / "Dockerfile").write_text("FROM panbinder-base:bookworm-1\nFROM python:3.12-slim\n")
    with pytest.raises(PanbinderError) as e:
        render(["panbinder-base:bookworm-1", "facility/base:2"])
    msg = e.value.message
    assert "binder/Dockerfile starts FROM 'python:3.12-slim'" in msg
    assert "panbinder-base:bookworm-1, facility/base:2" in msg
    assert e.value.reason == "dockerfile_base_not_allowed"


def test_no_from_line(repo):
    (repo / "Dockerfile").write_text("RUN true\n")
    with pytest.raises(PanbinderError, match="has no FROM line"):
        render()


def test_build_checks_too(repo):
    (repo / "Dockerfile").write_text("FROM ubuntu:24.04\n")
    pack = configure(AllowListDockerBuildPack, PackSettings())(base_image="b")
    with pytest.raises(PanbinderError):
        next(pack.build(None, "img", 0, {}, [], {}))
