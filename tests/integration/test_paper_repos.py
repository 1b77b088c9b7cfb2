"""Repositories as papers ship them, built and launched for real: notebooks that declare kernels
the image does not have by name, and postBuild scripts that use repo2docker's variables and npm."""

from __future__ import annotations

import json

import pytest
from tornado.httpclient import AsyncHTTPClient

from panbinder.builder.buildpacks import NOTICE_PREFIX
from tests.support import read_stream, run_code

pytestmark = [pytest.mark.docker, pytest.mark.hub, pytest.mark.slow]

R2D_VARIABLES = ("REPO_DIR", "NB_USER", "NB_UID", "APP_BASE", "NB_PYTHON_PREFIX", "KERNEL_PYTHON_PREFIX")
EXPECTED = {
    "REPO_DIR": "/home/jovyan",
    "NB_USER": "jovyan",
    "NB_UID": "1000",
    "APP_BASE": "/srv",
    "NB_PYTHON_PREFIX": "/srv/venv",
    "KERNEL_PYTHON_PREFIX": "/srv/venv",
}


def declared(kernel: str, code: str) -> str:
    """A notebook saved with the kernel ``kernel`` (as an old Jupyter or nb_conda_kernels wrote it)."""
    return json.dumps(
        {
            "cells": [
                {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": code}
            ],
            "metadata": {"kernelspec": {"name": kernel, "display_name": kernel, "language": "python"}},
            "nbformat": 4,
            "nbformat_minor": 4,
        }
    )


async def test_declared_kernels_start_and_postbuild_has_repo2docker_variables_and_npm(portal, git_server):
    names = " ".join(R2D_VARIABLES)
    git_server.commit(
        "paper-kernels",
        {
            "analysis.ipynb": declared("python2", "print(f'{6 * 7}')"),
            "figures/plots.ipynb": declared("conda-env-paper-py", "print(sum(range(10)))"),
            # Node.js from Debian; npm install --global as the user, into ~/.local
            "apt.txt": "nodejs\nnpm\n",
            "postBuild": "#!/bin/bash\nset -e\n"
            f'for v in {names}; do echo "$v=${{!v}}"; done > postbuild-env.txt\n'
            "npm install --global --no-audit --no-fund semver@7.6.3\n",
        },
        "fixture",
    )
    s = await read_stream(portal.build_url(git_server.url("paper-kernels"), "main"))
    assert s.last["phase"] == "ready", s.log()
    assert (
        NOTICE_PREFIX
        + "notebooks declare the kernels conda-env-paper-py (figures/plots.ipynb); python2 (analysis.ipynb)"
        in s.log()
    )
    url, token = s.last["url"], s.last["token"]

    # each notebook's kernel starts under the name it declares and runs its Python 3 code
    assert (await run_code(url, token, "print(f'{6 * 7}')", kernel_name="python2")).strip() == "42"
    assert (
        await run_code(url, token, "print(sum(range(10)))", kernel_name="conda-env-paper-py")
    ).strip() == "45"
    resp = await AsyncHTTPClient().fetch(
        url.rstrip("/") + "/api/kernelspecs", headers={"Authorization": f"token {token}"}
    )
    specs = json.loads(resp.body)["kernelspecs"]
    assert specs["python2"]["spec"]["display_name"].endswith("(as python2)")

    # repo2docker's variables: seen by postBuild, and in the launched server
    code = (
        "import os; print(open(os.path.join(os.environ['REPO_DIR'], 'postbuild-env.txt')).read().strip()); "
        f"print('\\n'.join(v + '=' + os.environ.get(v, '') for v in {R2D_VARIABLES!r}))"
    )
    out = (await run_code(url, token, code)).strip().splitlines()
    expected = [f"{k}={v}" for k, v in EXPECTED.items()]
    assert out == expected + expected
    # what postBuild installed with npm is on the server's PATH
    semver = (
        "import subprocess; print(subprocess.run(['semver', '1.2.3'], capture_output=True, text=True).stdout)"
    )
    assert (await run_code(url, token, semver)).strip() == "1.2.3"
