"""Which build pack repo2docker picks (its precedence), and what the Python pack renders."""

from __future__ import annotations

import pytest

from panbinder.builder.buildpacks import (
    BUILTIN_PACKS,
    AllowListDockerBuildPack,
    DebianPipBuildPack,
    EnvironmentYmlPipBuildPack,
    JuliaRefusal,
    PackSettings,
    PipfilePipBuildPack,
    RRefusal,
    configured_packs,
)
from panbinder.errors import PanbinderError

BUILD_ARGS = {"NB_USER": "jovyan", "NB_UID": "1000"}
FULL_COPY = "COPY --chown=1000:1000 src/ ${REPO_DIR}/"


@pytest.fixture
def repo(tmp_path, monkeypatch):
    root = tmp_path / "repo"
    root.mkdir()
    monkeypatch.chdir(root)
    return root


def write(root, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def pick(settings: PackSettings | None = None):
    """What repo2docker's detection loop does with our list."""
    packs = configured_packs(settings or PackSettings())
    for pack in packs:
        bp = pack(base_image="base:1")
        if bp.detect():
            return bp
    return packs[-1](base_image="base:1")


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({}, DebianPipBuildPack),
        ({"requirements.txt": "x\n"}, DebianPipBuildPack),
        ({"setup.py": ""}, DebianPipBuildPack),
        ({"Pipfile": "", "requirements.txt": "x\n"}, PipfilePipBuildPack),
        ({"Pipfile.lock": "{}"}, PipfilePipBuildPack),
        ({"environment.yml": "", "Pipfile": ""}, EnvironmentYmlPipBuildPack),
        ({"environment.yaml": ""}, EnvironmentYmlPipBuildPack),
        ({"install.R": "", "environment.yml": ""}, RRefusal),
        ({"DESCRIPTION": ""}, RRefusal),
        ({"runtime.txt": "r-4.3-2024-01-01"}, RRefusal),
        ({"Project.toml": ""}, JuliaRefusal),
        ({"REQUIRE": ""}, JuliaRefusal),
        ({"Dockerfile": "FROM x\n", "requirements.txt": "x\n", "install.R": ""}, AllowListDockerBuildPack),
        # a binder folder wins over the root
        ({"Dockerfile": "FROM x\n", "binder/requirements.txt": "x\n"}, DebianPipBuildPack),
        ({"environment.yml": "", "binder/Pipfile": ""}, PipfilePipBuildPack),
        ({"DESCRIPTION": "", "binder/requirements.txt": "x\n"}, DebianPipBuildPack),
        ({".binder/Dockerfile": "FROM x\n"}, AllowListDockerBuildPack),
        ({"binder/install.R": ""}, RRefusal),
    ],
)
def test_precedence(repo, files, expected):
    write(repo, files)
    assert isinstance(pick(), expected)


def test_builtin_order_matches_repo2docker():
    names = [p.__name__ for p in BUILTIN_PACKS]
    assert names == [
        "AllowListDockerBuildPack",
        "JuliaRefusal",
        "RRefusal",
        "EnvironmentYmlPipBuildPack",
        "PipfilePipBuildPack",
        "DebianPipBuildPack",
    ]


class FakeRPack(DebianPipBuildPack):
    def detect(self) -> bool:
        return True


def test_extra_packs_come_first_and_leave_the_others_alone(repo):
    write(repo, {"install.R": ""})
    packs = configured_packs(PackSettings(), extra=[f"{__name__}:FakeRPack"])
    assert issubclass(packs[0], FakeRPack)
    assert [p.__mro__[1] for p in packs[1:]] == BUILTIN_PACKS
    settings = PackSettings(index_url="https://i.example/simple")
    assert all(p.settings is settings for p in configured_packs(settings))


@pytest.mark.parametrize(
    ("files", "found"),
    [
        ({"install.R": ""}, "install.R"),
        ({"DESCRIPTION": ""}, "DESCRIPTION"),
        ({"Project.toml": ""}, "Project.toml"),
        ({"binder/REQUIRE": ""}, "binder/REQUIRE"),
    ],
)
def test_r_and_julia_are_refused_with_a_message(repo, files, found):
    write(repo, files)
    with pytest.raises(PanbinderError) as e:
        pick().render(BUILD_ARGS)
    assert "R / Julia environments are not available on this deployment" in e.value.message
    assert found in e.value.message
    assert e.value.reason == "environment_unavailable"


def render(settings: PackSettings | None = None) -> str:
    return pick(settings).render(BUILD_ARGS)


def test_setup_py_installs_the_repository_after_requirements(repo):
    write(repo, {"setup.py": "", "requirements.txt": "numpy\n"})
    df = render()
    lines = df.splitlines()
    full = lines.index(FULL_COPY)
    req = next(i for i, ln in enumerate(lines) if "-r requirements.txt" in ln)
    inst = next(i for i, ln in enumerate(lines) if ln.endswith("--no-warn-script-location ."))
    assert full < req < inst
    assert "src/requirements.txt" not in df


def test_pyproject_needs_project_and_build_system(repo):
    write(repo, {"pyproject.toml": "[tool.ruff]\nline-length = 100\n"})
    assert "--no-warn-script-location ." not in render()
    write(repo, {"pyproject.toml": '[project]\nname = "x"\n[build-system]\nrequires = ["setuptools"]\n'})
    assert "--no-warn-script-location .\n" in render() + "\n"


def test_binder_folder_means_no_package_install(repo):
    write(repo, {"setup.py": "", "binder/requirements.txt": "numpy\n"})
    df = render()
    assert "--no-warn-script-location ." not in df
    assert "COPY --chown=1000:1000 src/binder/requirements.txt ${REPO_DIR}/binder/requirements.txt" in df


def test_apt_postbuild_start_from_binder_folder(repo):
    write(repo, {"binder/apt.txt": "jq\n", "binder/postBuild": "#!/bin/sh\n", "binder/start": "#!/bin/sh\n"})
    df = render()
    assert "apt-get install --yes --no-install-recommends jq" in df
    assert "RUN ./binder/postBuild" in df
    assert 'ENV R2D_ENTRYPOINT="${REPO_DIR}/binder/start"' in df
