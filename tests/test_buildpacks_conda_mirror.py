"""environment.yml with conda_policy='mirror': channel URLs, the plan, the Dockerfile, failures."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import types

import pytest
from repo2docker.buildpacks.base import BuildPack
from repo2docker.engine import BuildError
from traitlets.config import Config

from panbinder.builder.buildpacks import NOTICE_PREFIX, EnvironmentYmlPipBuildPack, PackSettings, configure
from panbinder.builder.buildpacks import conda_env_install as installer
from panbinder.builder.buildpacks.conda_mirror import (
    ERROR_MARKER,
    CondaMirror,
    UnknownChannel,
    channel_url,
    conda_plan,
    error_report,
    failure_error,
    split_spec,
)
from panbinder.builder.buildpacks.conda_mirror_lock import conda_pins, pinned_plan
from panbinder.builder.buildpacks.frozen import FROZEN_IN_IMAGE, frozen_pack
from panbinder.errors import PanbinderError

BUILD_ARGS = {"NB_USER": "jovyan", "NB_UID": "1000"}
MIRROR = "https://conda.example.org/mirror/"
SETTINGS = PackSettings(
    conda_policy="mirror",
    conda_channel_mirror=MIRROR,
    conda_channel_urls=(("defaults", "https://conda.example.org/pkgs/main/"),),
)
ENV = """
channels: [conda-forge, bioconda]
dependencies:
  - python=3.11
  - bioconda::samtools >=1.19
  - numpy
  - pip:
      - tabulate==0.9.0
"""


@pytest.mark.parametrize(
    ("channel", "url"),
    [
        ("conda-forge", "https://conda.example.org/mirror/conda-forge"),
        ("conda-forge/label/dev", "https://conda.example.org/mirror/conda-forge/label/dev"),
        ("defaults", "https://conda.example.org/pkgs/main"),
        ("https://conda.example.org/mirror/bioconda/", "https://conda.example.org/mirror/bioconda"),
        ("https://conda.example.org/pkgs/main/", "https://conda.example.org/pkgs/main"),
        ("https://conda.anaconda.org/conda-forge", "https://conda.example.org/mirror/conda-forge"),
    ],
)
def test_channel_urls_on_the_mirror(channel, url):
    assert channel_url(channel, SETTINGS) == url


@pytest.mark.parametrize(
    "channel", ["https://elsewhere.example/conda-forge", "https://repo.anaconda.com/pkgs/main"]
)
def test_channels_off_the_mirror_are_unknown(channel):
    with pytest.raises(UnknownChannel):
        channel_url(channel, SETTINGS)


def test_mapped_channels_need_no_mirror():
    settings = PackSettings(conda_channel_urls=(("conda-forge", "http://m.example/cf"),))
    assert channel_url("conda-forge", settings) == "http://m.example/cf"
    with pytest.raises(UnknownChannel):
        channel_url("bioconda", settings)


@pytest.mark.parametrize(
    ("spec", "parts"),
    [
        ("numpy", (None, "numpy", "numpy")),
        ("h5py >=3.10", (None, "h5py", "h5py >=3.10")),
        ("conda-forge::numpy=1.26", ("conda-forge", "numpy", "numpy=1.26")),
        (
            "http://m.example:8000/cf::numpy 1.26 py_0",
            ("http://m.example:8000/cf", "numpy", "numpy 1.26 py_0"),
        ),
    ],
)
def test_split_spec(spec, parts):
    assert split_spec(spec) == parts


def test_plan_maps_channels_and_keeps_pip_apart():
    import yaml

    plan = conda_plan(yaml.safe_load(ENV), "binder/environment.yml", SETTINGS)
    assert plan.channels == (
        ("conda-forge", "https://conda.example.org/mirror/conda-forge"),
        ("bioconda", "https://conda.example.org/mirror/bioconda"),
    )
    assert plan.specs == ("python=3.11", "samtools >=1.19", "numpy")
    assert plan.pip == ("tabulate==0.9.0",)
    assert plan.with_python == ("ipykernel", "pip")
    data = json.loads(plan.to_json())
    assert data["prefix"] == "/srv/conda/envs/notebook"
    assert data["mirror"] == "https://conda.example.org/mirror"
    assert data["channels"] == [url for _, url in plan.channels]


def test_plan_defaults_and_channel_specs():
    plan = conda_plan({"dependencies": ["ipykernel", "bioconda::samtools"]}, "environment.yml", SETTINGS)
    assert [name for name, _ in plan.channels] == ["conda-forge", "bioconda"]
    assert plan.with_python == ()  # ipykernel already listed, no pip section


def test_configured_traits_fill_the_pack_settings():
    config = Config()
    config.CondaMirror.channel_urls = {"defaults": "https://c.example/main"}
    config.CondaMirror.default_channels = ["defaults"]
    settings = CondaMirror(config=config).apply(PackSettings(conda_policy="mirror"))
    assert settings.conda_channel_urls == (("defaults", "https://c.example/main"),)
    assert settings.conda_default_channels == ("defaults",)
    assert settings.rattler_requirement == "py-rattler==0.28.0"


@pytest.fixture
def repo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def pack(**settings):
    return configure(EnvironmentYmlPipBuildPack, PackSettings(**settings), logging.getLogger("test.conda"))


def render(repo, env: str = ENV, **settings) -> str:
    (repo / "environment.yml").write_text(env)
    merged = {"conda_policy": "mirror", "conda_channel_mirror": MIRROR, **settings}
    return pack(**merged)(base_image="b").render(BUILD_ARGS)


def test_dockerfile_order_keeps_the_layers_shared(repo, caplog):
    with caplog.at_level(logging.INFO, logger="test.conda"):
        df = render(repo)
    server = df.index("jupyterhub==6.1.1")
    rattler = df.index("/srv/conda/rattler/bin/pip install --no-warn-script-location -q py-rattler==0.28.0")
    solve = df.index(
        "/srv/conda/rattler/bin/python .panbinder/conda_env_install.py .panbinder/conda-environment.json"
    )
    copy = df.index("COPY --chown=1000:1000 src/ ")
    assert server < rattler < solve < copy
    assert "/srv/conda" not in df[:server]  # the server's layer is the same as in every image
    assert "--mount=type=cache,target=/tmp/rattler-cache,uid=1000,gid=1000" in df
    assert "-m ipykernel install --prefix /srv/venv --name python3" in df
    assert "/srv/conda/envs/notebook/etc/conda/activate.d/*.sh" in df  # login shells activate it
    assert (
        "ENV PATH=${HOME}/.local/bin:${REPO_DIR}/.local/bin:/srv/venv/bin:/srv/conda/envs/notebook/bin:${PATH}"
        in df
    )
    assert "/srv/conda/envs/notebook/bin/python -m pip install --no-warn-script-location -r" in df
    assert (repo / ".panbinder/conda_env_install.py").read_text().startswith('"""Solve and install')
    assert NOTICE_PREFIX + "installing the conda packages of environment.yml (python=3.11" in caplog.text
    assert (
        "from the conda channel mirror https://conda.example.org/mirror (channels: conda-forge ->"
        in caplog.text
    )


def test_no_pip_lookup_and_no_runtime_check_with_the_mirror(repo):
    env = ENV.replace("python=3.11", "python=3.9")  # python comes from the mirror
    df = render(repo, env, runtime_policy="refuse", index_url="http://unreachable.invalid/simple")
    assert (repo / ".panbinder/requirements-from-environment.yml.txt").read_text().splitlines()[1:] == [
        "tabulate==0.9.0"
    ]
    assert "python=3.9" in (repo / ".panbinder/conda-environment.json").read_text()
    assert "conda_env_install.py" in df


def test_local_pip_references_wait_for_the_full_copy(repo):
    df = render(repo, "dependencies:\n  - numpy\n  - pip:\n    - -e .\n")
    assert df.index("-r .panbinder/requirements-from-environment.yml.txt") > df.index(
        "COPY --chown=1000:1000 src/ "
    )


def test_channel_off_the_mirror_is_refused_before_building(repo):
    with pytest.raises(PanbinderError) as e:
        render(repo, "channels: [https://private.example/chan]\ndependencies: [numpy]\n")
    assert "asks for the conda channel 'https://private.example/chan'" in e.value.message


REPORT = {
    "kind": "missing",
    "missing": ["nothere", "alsonot"],
    "detail": "No candidates were found for nothere *.",
}


def test_error_report_is_read_from_a_buildkit_line():
    line = f"#14 1.234 {ERROR_MARKER}{json.dumps(REPORT)}\n"
    assert error_report(line) == REPORT
    assert error_report("#14 1.234 panbinder: solving numpy\n") is None
    assert error_report(f"#14 {ERROR_MARKER}{{not json\n") is None


@pytest.mark.parametrize(
    ("report", "fragments", "status"),
    [
        (
            REPORT,
            ["does not have in the channels conda-forge, bioconda: nothere, alsonot", MIRROR.rstrip("/")],
            422,
        ),
        (
            {"kind": "missing", "missing": ["ipykernel"]},
            ["has python, and panbinder adds ipykernel", "have it"],
            422,
        ),
        ({"kind": "unsolvable", "detail": "conflict"}, ["cannot be installed together", ": conflict."], 422),
        (
            {"kind": "unavailable", "detail": "404"},
            ["could not provide the channels", "contact the operators"],
            503,
        ),
    ],
)
def test_failure_messages(report, fragments, status):
    import yaml

    error = failure_error(report, conda_plan(yaml.safe_load(ENV), "environment.yml", SETTINGS))
    for fragment in fragments:
        assert fragment in error.message
    assert error.status_code == status


def test_failed_solve_becomes_the_failed_message(repo, monkeypatch):
    def fake_build(self, *args, **kwargs):
        yield "#14 0.5 panbinder: solving nothere\n"
        yield f"#14 0.6 {ERROR_MARKER}{json.dumps(REPORT)}\n"
        raise BuildError("docker build exited with 1")

    monkeypatch.setattr(BuildPack, "build", fake_build)
    (repo / "environment.yml").write_text(ENV)
    bp = pack(conda_policy="mirror", conda_channel_mirror=MIRROR)(base_image="b")
    with pytest.raises(PanbinderError) as e:
        list(bp.build(None, "img", 0, BUILD_ARGS, [], {}))
    assert "nothere, alsonot" in e.value.message and e.value.reason == "conda_packages_missing"


def test_other_build_failures_pass_through(repo, monkeypatch):
    def fake_build(self, *args, **kwargs):
        yield "#9 E: Unable to locate package nope\n"
        raise BuildError("docker build exited with 100")

    monkeypatch.setattr(BuildPack, "build", fake_build)
    (repo / "environment.yml").write_text(ENV)
    with pytest.raises(BuildError):
        list(
            pack(conda_policy="mirror", conda_channel_mirror=MIRROR)(base_image="b").build(
                None, "i", 0, {}, [], {}
            )
        )


def test_installer_reads_names_from_specs():
    specs = ["numpy >=1.2", "python=3.11", "conda-forge::H5py", "samtools[build=h1]", "pip"]
    assert installer.spec_names(specs) == ["numpy", "python", "h5py", "samtools", "pip"]


class FakeRattler:
    """Just enough of py-rattler's API for conda_env_install.run (the real one runs in images)."""

    class SolverError(Exception):
        pass

    def __init__(self, available: set[str]) -> None:
        self.available = available
        self.calls: list = []
        self.exceptions = self
        self.Client = types.SimpleNamespace(default_client=lambda: None)
        self.VirtualPackage = types.SimpleNamespace(detect=lambda: [])
        self.Subdir = type("Subdir", (str,), {"current": staticmethod(lambda: "linux-64")})
        self.GatewayError = self.FetchRepoDataError = self.InstallerError = self.TransactionError = OSError

    def record(self, name: str) -> types.SimpleNamespace:
        return types.SimpleNamespace(name=types.SimpleNamespace(normalized=name), version="1", channel="c")

    def Gateway(self, **kwargs) -> types.SimpleNamespace:
        async def query(channels, platforms, names, recursive):
            return [[self.record(n) for n in names if n in self.available]]

        return types.SimpleNamespace(query=query)

    async def solve(self, channels, specs, **kwargs):
        self.calls.append(list(specs))
        names = installer.spec_names(list(specs))
        if not set(names) <= self.available:
            raise self.SolverError("No candidates were found")
        return [self.record(n) for n in names]

    async def install(self, records, prefix, **kwargs):
        self.calls.append(("install", [r.name.normalized for r in records], prefix))


PLAN = {
    "source": "environment.yml",
    "mirror": "http://m.example",
    "channels": ["http://m.example/conda-forge"],
    "specs": ["python=3.11", "numpy"],
    "with_python": ["ipykernel", "pip"],
    "prefix": "/srv/conda/envs/notebook",
    "cache": "/tmp/rattler-cache",
}


def fake_rattler(monkeypatch, available: set[str]) -> FakeRattler:
    fake = FakeRattler(available)
    monkeypatch.setitem(sys.modules, "rattler", fake)
    monkeypatch.setitem(sys.modules, "rattler.exceptions", fake)
    return fake


async def test_installer_adds_the_kernel_when_the_solution_has_python(monkeypatch):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    fake = fake_rattler(monkeypatch, {"python", "numpy", "ipykernel", "pip"})
    await installer.run(PLAN)
    assert fake.calls == [
        ["python=3.11", "numpy"],
        ["python=3.11", "numpy", "ipykernel", "pip"],
        ("install", ["python", "numpy", "ipykernel", "pip"], "/srv/conda/envs/notebook"),
    ]
    fake.calls.clear()
    await installer.run({**PLAN, "specs": ["numpy"]})  # no python in the solution: no kernel
    assert fake.calls == [["numpy"], ("install", ["numpy"], "/srv/conda/envs/notebook")]


async def test_installer_reports_the_missing_names(monkeypatch, capsys):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    fake_rattler(monkeypatch, {"python"})
    with pytest.raises(SystemExit):
        await installer.run(PLAN)
    report = error_report(capsys.readouterr().out.splitlines()[-1])
    assert report["kind"] == "missing" and report["missing"] == ["numpy"]


def test_builder_settings_carry_the_conda_mirror_traits():
    from traitlets.config import Config

    from panbinder.builder.r2d import Repo2DockerBuilder

    c = Config()
    c.Repo2DockerBuilder.conda_policy = "mirror"
    c.CondaMirror.channel_urls = {"conda-forge": "https://conda.facility.example/cf"}
    c.CondaMirror.default_channels = ["conda-forge", "facility"]
    settings = Repo2DockerBuilder(config=c).pack_settings()
    assert settings.conda_policy == "mirror"
    assert settings.conda_channel_urls == (("conda-forge", "https://conda.facility.example/cf"),)
    assert settings.conda_default_channels == ("conda-forge", "facility")


# --- frozen rebuilds: the lock's conda packages pinned ----------------------------------------

CONDA_LOCK = {
    "conda": {
        "python": "3.11.9=h1_0_cpython https://conda.example.org/mirror/conda-forge/linux-64",
        "numpy": "2.1.0=py311h2_0 https://conda.example.org/mirror/conda-forge/linux-64",
        "samtools": "1.21=h3_0 https://conda.example.org/mirror/bioconda/linux-64",
        "ipykernel": "6.29.5=pyh3099207_0 https://conda.example.org/mirror/conda-forge/noarch",
        "pip": "25.0=pyh8b19718_0 https://conda.example.org/mirror/conda-forge/noarch",
    },
    "conda_pip": [
        "ipykernel==6.29.5",
        "numpy @ file:///home/conda/feedstock",
        "pip==25.0",
        "tabulate==0.9.0",
    ],
    "pip": ["jupyterlab==4.6.6"],
}
PINS = (
    "ipykernel ==6.29.5 pyh3099207_0",
    "numpy ==2.1.0 py311h2_0",
    "pip ==25.0 pyh8b19718_0",
    "python ==3.11.9 h1_0_cpython",
    "samtools ==1.21 h3_0",
)


def test_pinned_plan_installs_the_locked_packages_instead_of_the_specs():
    import yaml

    env = yaml.safe_load(ENV.replace("- tabulate==0.9.0", "- tabulate\n      - -e ."))
    plan = pinned_plan(conda_plan(env, "environment.yml", SETTINGS), CONDA_LOCK)
    assert conda_pins(CONDA_LOCK["conda"]) == list(PINS)
    assert plan.specs == PINS and plan.pinned and plan.with_python == ()
    assert [name for name, _ in plan.channels] == ["conda-forge", "bioconda"]
    assert plan.pip == ("tabulate==0.9.0", "-e .")  # the lock's version; the repository itself again
    assert json.loads(plan.to_json())["pinned"] is True
    no_conda_python = {**CONDA_LOCK, "conda_pip": []}  # 'pip:' went into /srv/venv, frozen there
    assert pinned_plan(conda_plan(env, "environment.yml", SETTINGS), no_conda_python).pip == ("-e .",)


def test_frozen_pack_of_a_conda_lock_solves_the_pins_on_the_mirror(repo, tmp_path, caplog):
    (repo / "environment.yml").write_text(ENV)
    req = tmp_path / "frozen.txt"
    req.write_text("jupyterlab==4.6.6\n")
    settings = PackSettings(conda_policy="pip", conda_channel_mirror=MIRROR)  # the lock decides
    args = {"requirements_file": str(req), "pins": ["curl=7.88.1-10"], "log": logging.getLogger("test.conda")}
    with caplog.at_level(logging.INFO, logger="test.conda"):
        df = frozen_pack(settings, lock=CONDA_LOCK, **args)(base_image="b").render(BUILD_ARGS)
    assert f"-r {FROZEN_IN_IMAGE}" in df and "curl=7.88.1-10" in df and "jupyterlab==4.6.6" not in df
    assert "conda_env_install.py .panbinder/conda-environment.json" in df
    plan = json.loads((repo / ".panbinder/conda-environment.json").read_text())
    assert plan["specs"] == list(PINS) and plan["pinned"] and plan["with_python"] == []
    assert (repo / ".panbinder/requirements-from-environment.yml.txt").read_text().splitlines()[1:] == [
        "tabulate==0.9.0"
    ]
    assert "environment.yml as the environment lock pins them (ipykernel ==6.29.5" in caplog.text
    plain = frozen_pack(settings, lock={"pip": []}, **args)(base_image="b").render(BUILD_ARGS)
    assert "conda_env_install" not in plain and f"-r {FROZEN_IN_IMAGE}" in plain


def test_a_locked_package_gone_from_the_mirror_is_named():
    import yaml

    plan = pinned_plan(conda_plan(yaml.safe_load(ENV), "environment.yml", SETTINGS), CONDA_LOCK)
    error = failure_error({"kind": "missing", "missing": ["numpy ==2.1.0 py311h2_0"]}, plan)
    assert "no longer has in the channels conda-forge, bioconda: numpy ==2.1.0 py311h2_0" in error.message
    assert "--fresh" in error.message and error.reason == "conda_packages_missing"


async def test_installer_names_the_pins_the_mirror_lacks(monkeypatch, capsys):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    fake = fake_rattler(monkeypatch, {"python", "numpy"})
    on_mirror = {("python", "3.11.9", "h1_0"), ("numpy", "2.0.0", "py311h2_0")}

    def record(name: str, version: str, build: str) -> types.SimpleNamespace:
        return types.SimpleNamespace(
            name=types.SimpleNamespace(normalized=name), version=version, build=build
        )

    def gateway(**kwargs) -> types.SimpleNamespace:
        async def query(channels, platforms, specs, recursive):
            keys = {installer.pin_key(s) for s in specs}  # a bare name matches every version
            return [[record(*key) for key in sorted(on_mirror) if key in keys or (key[0], "", "") in keys]]

        return types.SimpleNamespace(query=query)

    async def solve(channels, specs, **kwargs):
        raise fake.SolverError("No candidates were found for numpy ==2.1.0 py311h2_0")

    monkeypatch.setattr(fake, "Gateway", gateway)
    monkeypatch.setattr(fake, "solve", solve)
    pinned = {**PLAN, "specs": ["python ==3.11.9 h1_0", "numpy ==2.1.0 py311h2_0"], "pinned": True}
    with pytest.raises(SystemExit):
        await installer.run(pinned)
    report = error_report(capsys.readouterr().out.splitlines()[-1])
    assert report["kind"] == "missing" and report["missing"] == ["numpy ==2.1.0 py311h2_0"]
    with pytest.raises(SystemExit):
        await installer.run({**pinned, "pinned": False})  # unpinned: only absent names count
    assert error_report(capsys.readouterr().out.splitlines()[-1])["kind"] == "unsolvable"


def test_the_pip_section_resolves_as_of_the_environment_files_date(repo):
    """The 'pip:' section, installed into the environment's Python, resolves as of the last
    commit that changed environment.yml (2020), with uv's --exclude-newer; pip without a date only
    when uv cannot install it."""
    (repo / "environment.yml").write_text(ENV)
    env = dict(
        os.environ,
        GIT_AUTHOR_DATE="2020-05-06T07:00:00+00:00",
        GIT_COMMITTER_DATE="2020-05-06T07:00:00+00:00",
    )
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "env"]):
        subprocess.run([*git, *args], cwd=repo, check=True, env=env)
    df = render(repo, as_of="requirements")
    step = next(
        ln
        for ln in df.splitlines()
        if ln.startswith("RUN ") and "requirements-from-environment.yml.txt" in ln
    )
    assert 'PY=/srv/conda/envs/notebook/bin/python; [ -x "$PY" ] || PY=/srv/venv/bin/python' in step
    assert "--since=2020-05-06T07:00:00Z" in step and '--python="$PY"' in step
    assert '/srv/panbinder-uv/bin/uv pip install --python "$PY" ${D:+"--exclude-newer=$D"} -r' in step
    assert '"$PY" -m pip install --no-warn-script-location -r' in step
    off = render(repo, as_of="off")
    assert "--exclude-newer" not in off and "/srv/conda/envs/notebook/bin/python -m pip install" in off


@pytest.mark.parametrize("spec", ["num*py", ">=1.2", "conda-forge::"])
def test_split_spec_refuses_what_matchspec_refuses(spec):
    with pytest.raises(ValueError, match=r"is not a conda package spec|names no package"):
        split_spec(spec)
