"""The install steps uv and pip render, and the date requirements resolve as of (installer.py)."""

from __future__ import annotations

import os
import subprocess

import pytest

from panbinder.builder.buildpack import PackSettings, configured_pack
from panbinder.builder.buildpacks import installer
from panbinder.builder.buildpacks.frozen import frozen_pack
from panbinder.builder.buildpacks.installer import PackageInstaller

BUILD_ARGS = {"NB_USER": "jovyan", "NB_UID": "1000"}


def commit(root, files: dict[str, str], date: str) -> None:
    for name, text in files.items():
        (root / name).write_text(text)
    env = dict(os.environ, GIT_AUTHOR_DATE=date, GIT_COMMITTER_DATE=date)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "add", "-A"], cwd=root, check=True, env=env)
    subprocess.run([*git, "commit", "-qm", "c"], cwd=root, check=True, env=env)


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A checkout whose requirements date from 2019 and whose last commit (code only) from 2021."""
    root = tmp_path / "repo"
    root.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    commit(root, {"requirements.txt": "numpy\n"}, "2019-03-04T10:00:00+01:00")
    commit(root, {"analysis.py": "print(1)\n"}, "2021-07-08T12:00:00+00:00")
    monkeypatch.chdir(root)
    return root


def render(**settings) -> str:
    return configured_pack(PackSettings(**settings))(base_image="base:1").render(BUILD_ARGS)


def requirements_step(dockerfile: str) -> str:
    steps = [ln for ln in dockerfile.splitlines() if ln.startswith("RUN ") and "-r requirements.txt" in ln]
    assert len(steps) == 1, steps
    return steps[0]


def test_uv_installs_as_of_the_last_change_of_the_requirements(repo):
    step = requirements_step(render(installer="uv", as_of="requirements"))
    assert "--since=2019-03-04T09:00:00Z" in step  # the code-only commit of 2021 does not count
    assert '/srv/panbinder-uv/bin/uv pip install ${D:+"--exclude-newer=$D"} -r requirements.txt' in step
    # pip runs the same install when uv cannot
    assert "|| { echo 'panbinder: uv could not install requirements.txt; trying pip' && " in step
    assert '/srv/venv/bin/pip install --no-warn-script-location ${D:+"--uploaded-prior-to=$D"}' in step
    assert step.startswith(
        "RUN --mount=type=cache,target=/tmp/pip-cache,uid=1000,gid=1000 --mount=type=cache"
    )


def test_the_commit_policy_uses_the_pinned_commit(repo):
    assert "--since=2021-07-08T12:00:00Z" in requirements_step(render(installer="uv", as_of="commit"))


def test_pip_uses_uploaded_prior_to_and_the_search_uses_uv(repo):
    df = render(installer="pip", as_of="requirements")
    step = requirements_step(df)
    assert "D=$(UV_CACHE_DIR=/tmp/uv-cache /srv/venv/bin/python .panbinder/as_of.py" in step
    assert 'pip install --no-warn-script-location ${D:+"--uploaded-prior-to=$D"} -r requirements.txt' in step
    assert "uv pip install" not in step
    assert "--target /srv/panbinder-uv uv==0.13.9" in df  # uv for the search, outside the venv
    assert (repo / ".panbinder" / "as_of.py").exists()


def test_off_is_a_plain_install_without_uv(repo):
    df = render(installer="pip", as_of="off")
    step = requirements_step(df)
    assert "D=" not in step and "${D" not in step

    assert "panbinder-uv/bin/uv" not in df and "UV_" not in df
    assert "/srv/venv/bin/pip install --no-warn-script-location pip==26.3 && " in df


def test_uv_reads_the_deployment_indexes(repo):
    df = render(installer="uv", index_url="https://pypi.example.org/simple", extra_index_urls=("http://a/s",))
    assert "ENV UV_INDEX_URL=https://pypi.example.org/simple" in df
    assert "ENV UV_EXTRA_INDEX_URL=http://a/s" in df
    server = next(ln for ln in df.splitlines() if "jupyterhub==6.1.1" in ln)
    assert "/srv/panbinder-uv/bin/uv pip install jupyterhub==6.1.1 jupyterlab==4.6.6" in server


def test_uv_writes_bytecode_at_install_as_pip_does(repo):
    """Without it a server start compiles every module it imports, in a container layer it loses."""
    df = render(installer="uv")
    env = df.index("ENV UV_COMPILE_BYTECODE=1")
    assert env < df.index("jupyterhub==6.1.1")  # before the server layer and the requirements
    assert "UV_COMPILE_BYTECODE" not in render(installer="pip", as_of="off")


def test_a_frozen_rebuild_uses_the_locked_date_without_a_search(repo, tmp_path):
    frozen = tmp_path / "frozen.txt"
    frozen.write_text("numpy==1.16.2\n")
    lock = {
        "resolved_as_of": [{"file": "requirements.txt", "requested": "x", "used": "2020-10-01T00:00:00Z"}]
    }
    settings = PackageInstaller().apply(PackSettings())
    pack = frozen_pack(settings, requirements_file=str(frozen), pins=[], lock=lock)
    step = requirements_step(pack(base_image="base:1").render(BUILD_ARGS))
    assert "D=2020-10-01T00:00:00Z && " in step and "as_of.py" not in step
    # a lock from before dates were recorded: no date
    pack = frozen_pack(settings, requirements_file=str(frozen), pins=[], lock={})
    step = requirements_step(pack(base_image="base:1").render(BUILD_ARGS))
    assert "D=" not in step and "${D" not in step


@pytest.mark.parametrize(
    "used",
    ["2020-10-01 --index-url=https://evil.example/simple", "$(id)", "2020-13-45", "yesterday", 20201001],
)
def test_a_locked_date_that_is_not_an_iso_date_is_not_used(repo, tmp_path, used):
    """The lock's dates come from a file the repository's build code can write."""
    frozen = tmp_path / "frozen.txt"
    frozen.write_text("numpy==1.16.2\n")
    lock = {"resolved_as_of": [{"file": "requirements.txt", "used": used}, "not a record"]}
    assert installer.locked_as_of(lock) == (("requirements.txt", ""),)
    settings = PackageInstaller().apply(PackSettings())
    step = requirements_step(
        frozen_pack(settings, requirements_file=str(frozen), pins=[], lock=lock)(base_image="base:1").render(
            BUILD_ARGS
        )
    )
    assert "evil" not in step and "$(id)" not in step and "D=" not in step


@pytest.mark.parametrize("used", ["2020-10-01", "2020-10-01T00:00:00Z", "2020-10-01T00:00:00.5+02:00"])
def test_iso_dates_and_rfc3339_moments_are_accepted(used):
    assert installer.locked_as_of({"resolved_as_of": [{"file": "r.txt", "used": used}]}) == (("r.txt", used),)


def test_the_date_variable_expands_to_one_argument(tmp_path):
    """Even a date with spaces (never written by panbinder) stays one argument of the install."""
    settings = PackageInstaller().apply(PackSettings())
    line = installer.command(settings, "-r r.txt", dated=True)
    script = tmp_path / "args.sh"
    script.write_text('uv() { shift; shift; printf "<%s>" "$@"; exit 0; }\n')
    shell = f". {script}; D='2020-01-01 --index-url=x'; " + line.replace(
        f"UV_CACHE_DIR=/tmp/uv-cache {installer.UV}", "uv"
    )
    out = subprocess.run(["sh", "-c", shell], capture_output=True, text=True, check=True).stdout
    assert out == "<--exclude-newer=2020-01-01 --index-url=x><-r><r.txt>"


def test_trait_defaults_are_uv_as_of_the_requirements():
    settings = PackageInstaller().apply(PackSettings())
    assert (settings.installer, settings.as_of, settings.uv_requirement) == (
        "uv",
        "requirements",
        "uv==0.13.9",
    )


def test_the_lock_probe_reads_the_recorded_dates():
    from panbinder.builder.lock import SEPARATOR, parse_probe

    sections = ["3.11.2", "pip==26.3", "python3=3.11.2-1", "", "", ""]
    entry = (
        '{"file": "requirements.txt", "requested": "2019-03-04T09:00:00Z", "used": "2020-10-01T00:00:00Z"}'
    )
    lock = parse_probe(f"\n{SEPARATOR}\n".join([*sections, entry]) + "\n")
    assert lock["resolved_as_of"] == [
        {"file": "requirements.txt", "requested": "2019-03-04T09:00:00Z", "used": "2020-10-01T00:00:00Z"}
    ]
    assert "resolved_as_of" not in parse_probe(f"\n{SEPARATOR}\n".join(sections) + "\n")


def test_a_package_installs_as_of_the_last_change_of_its_metadata(repo):
    """``pip install .`` resolves as of setup.py's date (2020), not today's releases."""
    commit(repo, {"setup.py": "from setuptools import setup\nsetup(name='p')\n"}, "2020-02-03T10:00:00+00:00")
    commit(repo, {"analysis.py": "print(2)\n"}, "2022-01-01T12:00:00+00:00")
    df = render(installer="uv", as_of="requirements")
    step = next(
        ln for ln in df.splitlines() if ln.startswith("RUN ") and "pip install" in ln and " . " in ln + " "
    )
    assert "--since=2020-02-03T10:00:00Z" in step and "--label=setup.py" in step and "setup.py" in step
    assert '${D:+"--exclude-newer=$D"} .' in step and '${D:+"--uploaded-prior-to=$D"} .' in step
