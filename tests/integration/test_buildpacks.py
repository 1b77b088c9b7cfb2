"""One small repository per configuration kind, built for real; each checked inside its image.

The Python fixtures share the base and server layers and mostly the same requirement
(tabulate), so after the first build each one costs only its own steps.
"""

from __future__ import annotations

import asyncio
import json
import subprocess

import pytest

from panbinder.builder.buildpacks import NOTICE_PREFIX
from panbinder.builder.buildpacks.settings import BASE_IMAGE
from tests.support import read_stream, run_code

pytestmark = [pytest.mark.docker, pytest.mark.hub, pytest.mark.slow]

DOCKER = "/usr/bin/docker"


async def build(portal, git_server, name: str, files: dict[str, str]):
    git_server.commit(name, files, "fixture")
    return await read_stream(portal.build_url(git_server.url(name), "main") + "?build_only=true")


async def built_image(portal, git_server, name: str, files: dict[str, str]) -> tuple[str, str]:
    s = await build(portal, git_server, name, files)
    assert s.last["phase"] == "ready", s.log()
    return s.last["imageName"], s.log()


async def docker_run(*args: str) -> subprocess.CompletedProcess:
    return await asyncio.to_thread(
        subprocess.run, [DOCKER, "run", "--rm", *args], capture_output=True, text=True, timeout=120
    )


async def in_image(image: str, code: str) -> str:
    proc = await docker_run("--entrypoint", "/srv/venv/bin/python", image, "-c", code)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.strip()


async def test_requirements_apt_and_postbuild_from_binder_folder(portal, git_server):
    image, _ = await built_image(
        portal,
        git_server,
        "kind-binder-folder",
        {
            "requirements.txt": "panbinder-ignored-because-binder-wins==9.9\n",
            "binder/requirements.txt": "tabulate==0.9.0\n",
            "binder/apt.txt": "jq\n",
            "binder/postBuild": '#!/bin/sh\necho made-by-postBuild > "$HOME/postbuild-marker"\n',
        },
    )
    out = await in_image(
        image,
        "import os, subprocess, tabulate; "
        "print(tabulate.__version__); "
        "print(subprocess.run(['dpkg', '-s', 'jq'], capture_output=True, text=True).stdout.splitlines()[1]); "
        "print(open(os.path.expanduser('~/postbuild-marker')).read().strip())",
    )
    assert out.splitlines() == ["0.9.0", "Status: install ok installed", "made-by-postBuild"]


async def test_pyproject_installs_the_repository(portal, git_server):
    image, _ = await built_image(
        portal,
        git_server,
        "kind-pyproject",
        {
            "requirements.txt": "tabulate==0.9.0\n",
            "pyproject.toml": '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
            '[project]\nname = "pbdemo"\nversion = "1.2.3"\n',
            "pbdemo/__init__.py": "ANSWER = 42\n",
        },
    )
    # run outside the checkout so the import comes from site-packages, not the working directory
    out = await in_image(
        image,
        "import os; os.chdir('/'); import pbdemo, importlib.metadata as m; print(pbdemo.ANSWER, m.version('pbdemo'))",
    )
    assert out == "42 1.2.3"


async def test_pipfile_lock_pins_win(portal, git_server):
    lock = {
        "_meta": {"requires": {"python_version": "3.11"}},
        "default": {"tabulate": {"version": "==0.8.10"}},
    }
    image, _ = await built_image(
        portal,
        git_server,
        "kind-pipfile",
        {"Pipfile": '[packages]\ntabulate = "*"\n', "Pipfile.lock": json.dumps(lock)},
    )
    assert await in_image(image, "import tabulate; print(tabulate.__version__)") == "0.8.10"


async def test_environment_yml_installed_with_pip_and_said_so(portal, git_server):
    env = "channels: [conda-forge]\ndependencies:\n  - python=3.11\n  - pip\n  - tabulate=0.9\n  - pip:\n    - six\n"
    image, log = await built_image(portal, git_server, "kind-environment", {"environment.yml": env})
    assert NOTICE_PREFIX + "conda channels are not reachable" in log
    assert await in_image(image, "import tabulate, six; print(tabulate.__version__)") == "0.9.0"


async def test_allowed_dockerfile_is_used_alone(portal, git_server):
    dockerfile = (
        f"FROM {BASE_IMAGE}\n"
        "RUN echo from-the-dockerfile > /dockerfile-marker\n"
        "COPY requirements.txt /srv/unused-requirements.txt\n"
    )
    image, _ = await built_image(
        portal,
        git_server,
        "kind-dockerfile",
        {"binder/Dockerfile": dockerfile, "binder/requirements.txt": "tabulate\n", "requirements.txt": "x\n"},
    )
    proc = await docker_run(image, "cat", "/dockerfile-marker")
    assert proc.stdout.strip() == "from-the-dockerfile", proc.stderr


@pytest.mark.parametrize(
    ("name", "files", "fragments"),
    [
        (
            "refuse-conda-only",
            {"environment.yml": "dependencies:\n  - tabulate\n  - panbinder-conda-only-pkg-xyz\n"},
            ["panbinder-conda-only-pkg-xyz", "no pip package", "Conda is not available"],
        ),
        (
            "refuse-r",
            {"install.R": "install.packages('ggplot2')\n"},
            ["R / Julia environments are not available"],
        ),
        (
            "refuse-python2",
            {"runtime.txt": "python-2.7\n", "requirements.txt": "tabulate\n"},
            ["runtime.txt asks for Python 2.7. Python 2 is not available", "Port the code to Python 3"],
        ),
        (
            "refuse-dockerfile",
            {"Dockerfile": "FROM python:3.12-slim\n"},
            ["FROM 'python:3.12-slim'", f"Allowed base images: {BASE_IMAGE}"],
        ),
    ],
)
async def test_refusals_fail_with_their_message(portal, git_server, name, files, fragments):
    s = await build(portal, git_server, name, files)
    assert s.last["phase"] == "failed", s.log()
    for fragment in fragments:
        assert fragment in s.last["message"], s.last["message"]
    assert "Traceback" not in s.raw


async def test_runtime_notice_and_start_script(portal, git_server):
    git_server.commit(
        "kind-runtime-start",
        {
            "requirements.txt": "tabulate==0.9.0\n",
            "runtime.txt": "python-3.9\n",
            "start": '#!/bin/bash\nexport PANBINDER_START_RAN=yes\nexec "$@"\n',
        },
        "fixture",
    )
    s = await read_stream(portal.build_url(git_server.url("kind-runtime-start"), "main"))
    assert s.last["phase"] == "ready", s.log()
    assert (
        NOTICE_PREFIX + "runtime.txt asks for Python 3.9, but this deployment only has Python 3.11" in s.log()
    )
    out = await run_code(
        s.last["url"],
        s.last["token"],
        "import os, sys; print(os.environ.get('PANBINDER_START_RAN'), sys.version_info[:2])",
    )
    assert out.strip() == "yes (3, 11)"
