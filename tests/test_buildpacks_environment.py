"""environment.yml converted for pip, with a fake package-index lookup."""

from __future__ import annotations

import logging
import re

import pytest

from panbinder.builder.buildpacks import (
    NOTICE_PREFIX,
    EnvironmentYmlPipBuildPack,
    PackSettings,
    configure,
    environment_yml,
)
from panbinder.builder.buildpacks.environment_yml import conda_to_pip, pip_requirements
from panbinder.errors import PanbinderError

BUILD_ARGS = {"NB_USER": "jovyan", "NB_UID": "1000"}
ON_INDEX = {"numpy", "tables", "h5py", "tabulate", "matplotlib"}
ENV = """
name: paper
channels: [conda-forge]
dependencies:
  - python=3.11
  - pip
  - conda-forge::numpy=1.26
  - pytables
  - h5py >=3.10
  - pip:
      - tabulate==0.9.0
"""
GENERATED = ".panbinder/requirements-from-environment.yml.txt"


@pytest.fixture
def repo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(environment_yml, "exists_on_index", lambda name, settings, index="": name in ON_INDEX)
    return tmp_path


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("numpy", ("numpy", "")),
        ("numpy=1.26", ("numpy", "==1.26.*")),
        ("numpy=1.26.*", ("numpy", "==1.26.*")),
        ("numpy==1.26.4", ("numpy", "==1.26.4")),
        ("numpy >=1.20,<2", ("numpy", ">=1.20,<2")),
        # conda's rules, as MatchSpec reads them: a version with a build string is exact
        ("numpy 1.26 py_0", ("numpy", "==1.26")),
        ("numpy=1.26=py311_0", ("numpy", "==1.26")),
        ("conda-forge::h5py", ("h5py", "")),
        ("numpy *", ("numpy", "")),
        ("numpy[version='>=1.20,<2']", ("numpy", ">=1.20,<2")),
        ("numpy[version=1.26, build=py311*]", ("numpy", "==1.26")),
        ("numpy 1.26[build=py311*]", ("numpy", "==1.26")),
        ("numpy[version='1.26.*']", ("numpy", "==1.26.*")),
        ("scipy ~=1.10", ("scipy", "~=1.10")),
        ("PyQt >=5", ("PyQt", ">=5")),
    ],
)
def test_conda_spec_to_pip(spec, expected):
    assert conda_to_pip(spec) == expected


@pytest.mark.parametrize(
    "spec", ["numpy >=1.20|<1.10", "numpy 1.26|1.27", "numpy >=1.x.y", "num*py", ">=1.2", "numpy >=1,,<"]
)
def test_a_spec_pip_cannot_express_names_itself(spec):
    with pytest.raises(ValueError, match=re.escape(f"'{spec}'")):
        conda_to_pip(spec)


def test_a_spec_pip_cannot_express_is_a_clear_error(repo):
    (repo / "environment.yml").write_text("dependencies:\n  - numpy 1.26|1.27\n")
    with pytest.raises(PanbinderError) as e:
        pack()(base_image="b").render({"NB_USER": "jovyan", "NB_UID": "1000"})
    assert "environment.yml could not be read" in e.value.message and "numpy 1.26|1.27" in e.value.message


def test_conversion_maps_renames_and_drops_python_and_pip():
    import yaml

    reqs, pythons, missing = pip_requirements(yaml.safe_load(ENV), lambda n: n in ON_INDEX)
    assert reqs == ["numpy==1.26.*", "tables", "h5py>=3.10", "tabulate==0.9.0"]
    assert pythons == ["3.11"]
    assert missing == []


def pack(**settings):
    return configure(EnvironmentYmlPipBuildPack, PackSettings(**settings), logging.getLogger("test.env"))


def test_pip_policy_installs_with_pip_and_says_so(repo, caplog):
    (repo / "environment.yml").write_text(ENV)
    with caplog.at_level(logging.INFO, logger="test.env"):
        df = pack()(base_image="b").render(BUILD_ARGS)
    assert f"-r {GENERATED}" in df
    assert (repo / GENERATED).read_text().splitlines()[1:] == [
        "numpy==1.26.*",
        "tables",
        "h5py>=3.10",
        "tabulate==0.9.0",
    ]
    notices = [r.getMessage() for r in caplog.records if NOTICE_PREFIX in r.getMessage()]
    assert len(notices) == 1 and "installing the 4 dependencies of environment.yml with pip" in notices[0]


def test_conda_only_packages_are_listed(repo):
    (repo / "environment.yml").write_text("dependencies:\n  - numpy\n  - cudatoolkit\n  - r-base=4.3\n")
    with pytest.raises(PanbinderError) as e:
        pack()(base_image="b").render(BUILD_ARGS)
    msg = e.value.message
    assert "cudatoolkit, r-base" in msg and "numpy" not in msg
    assert e.value.reason == "conda_only_packages"


def test_python_version_goes_through_the_runtime_policy(repo):
    (repo / "environment.yml").write_text("dependencies:\n  - python=3.9\n  - numpy\n")
    with pytest.raises(PanbinderError) as e:
        pack(runtime_policy="refuse")(base_image="b").render(BUILD_ARGS)
    assert "environment.yml asks for Python 3.9" in e.value.message


def test_refuse_policy(repo):
    (repo / "environment.yml").write_text(ENV)
    with pytest.raises(PanbinderError) as e:
        pack(conda_policy="refuse")(base_image="b").render(BUILD_ARGS)
    assert "needs conda, which is not available" in e.value.message


def test_mirror_policy_without_a_mirror_names_the_channel(repo):
    (repo / "environment.yml").write_text(ENV)
    with pytest.raises(PanbinderError) as e:
        pack(conda_policy="mirror")(base_image="b").render(BUILD_ARGS)
    assert "asks for the conda channel 'conda-forge'" in e.value.message
    assert "(none configured)" in e.value.message


def test_lookup_uses_the_simple_api(monkeypatch):
    seen = []

    class Resp:
        status = 200

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    def fake_urlopen(request, timeout, context):
        seen.append((request.get_method(), request.full_url))
        return Resp()

    monkeypatch.setattr(environment_yml.urllib.request, "urlopen", fake_urlopen)
    settings = PackSettings(index_url="https://pypi.example.org/simple")
    assert environment_yml.exists_on_index("Py_Tables", settings)
    assert seen == [("HEAD", "https://pypi.example.org/simple/py-tables/")]


def test_extra_indexes_are_checked_too(repo, monkeypatch):
    calls = []

    def fake(name, settings, index=""):
        calls.append(index)
        return index.startswith("https://extra")

    monkeypatch.setattr(environment_yml, "exists_on_index", fake)
    settings = PackSettings(extra_index_urls=("https://extra.example/simple",))
    bp = configure(EnvironmentYmlPipBuildPack, settings)(base_image="b")
    assert bp.lookup("facility-pkg")
    assert calls == ["https://pypi.org/simple/", "https://extra.example/simple"]
