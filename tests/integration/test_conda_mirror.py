"""environment.yml built from a conda channel mirror, for real, through the portal.

No conda channel is reachable here, so the test makes its own: two small ``noarch: generic``
conda packages (``panbinder-probe``, a shell command, depends on ``panbinder-probe-data``,
which holds a marker file and an activate.d script) with their repodata, served over HTTP as
the channel ``conda-forge`` of a mirror. Build steps run on docker's default bridge network, where the
host's loopback is out of reach, so the server listens on the bridge's gateway address
(docker0, e.g. 172.17.0.1). py-rattler itself comes from the package index, like any pip
package.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import subprocess
import tarfile
import threading
import uuid
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from panbinder.builder.buildpacks import NOTICE_PREFIX
from panbinder.testing import (
    Portal,
    read_stream,
    remove_containers,
    remove_stale_containers,
    run_code,
    session_prefix,
)

pytestmark = [pytest.mark.docker, pytest.mark.hub, pytest.mark.slow]

PREFIX = session_prefix("panbinder-cm")
ACTIVATE = "etc/conda/activate.d/panbinder-probe.sh"
ACTIVATE_SH = b'export PANBINDER_PROBE_HOME="${CONDA_PREFIX}/share/panbinder-probe"\n'
PROBE = (
    b'#!/bin/sh\necho "panbinder-probe ran with $(cat "$(dirname "$0")/../share/panbinder-probe/marker")"\n'
)


def _member(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 0
    tar.addfile(info, io.BytesIO(data))


def conda_package(name: str, version: str, depends: list[str], payload: dict[str, tuple[bytes, int]]):
    """(file name, .tar.bz2 bytes, repodata record) of a noarch: generic package."""
    index = {
        "name": name,
        "version": version,
        "build": "0",
        "build_number": 0,
        "depends": depends,
        "noarch": "generic",
        "subdir": "noarch",
        "arch": None,
        "platform": None,
        "license": "BSD-3-Clause",
        "timestamp": 1764115200000,
    }
    paths = {
        "paths_version": 1,
        "paths": [
            {
                "_path": p,
                "path_type": "hardlink",
                "sha256": hashlib.sha256(d).hexdigest(),
                "size_in_bytes": len(d),
            }
            for p, (d, _) in sorted(payload.items())
        ],
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:bz2") as tar:
        _member(tar, "info/index.json", json.dumps(index).encode())
        _member(tar, "info/paths.json", json.dumps(paths).encode())
        _member(tar, "info/files", "".join(p + "\n" for p in sorted(payload)).encode())
        for path, (data, mode) in sorted(payload.items()):
            _member(tar, path, data, mode)
    data = buf.getvalue()
    record = dict(
        index, md5=hashlib.md5(data).hexdigest(), sha256=hashlib.sha256(data).hexdigest(), size=len(data)
    )
    return f"{name}-{version}-0.tar.bz2", data, record


def write_channel(root: Path, packages: list) -> None:
    """noarch/ with the packages and their repodata.json, and an empty linux-64/."""
    records = {}
    (root / "noarch").mkdir(parents=True)
    (root / "linux-64").mkdir()
    for filename, data, record in packages:
        (root / "noarch" / filename).write_bytes(data)
        records[filename] = record
    for subdir, recs in (("noarch", records), ("linux-64", {})):
        repodata = {"info": {"subdir": subdir}, "packages": recs, "packages.conda": {}, "repodata_version": 1}
        (root / subdir / "repodata.json").write_text(json.dumps(repodata))


def bridge_gateway() -> str:
    out = subprocess.run(
        ["/usr/bin/docker", "network", "inspect", "bridge", "--format", "{{(index .IPAM.Config 0).Gateway}}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:
        pass


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """A conda channel mirror with the channel conda-forge, on the docker bridge's gateway."""
    root = tmp_path_factory.mktemp("conda-mirror")
    # a path of its own in every run, so the solve step never comes from the layer cache
    base = f"mirror-{uuid.uuid4().hex[:12]}"
    write_channel(
        root / base / "conda-forge",
        [
            conda_package(
                "panbinder-probe",
                "1.0",
                ["panbinder-probe-data 1.*"],
                {"bin/panbinder-probe": (PROBE, 0o755)},
            ),
            conda_package(
                "panbinder-probe-data",
                "1.2",
                [],
                {"share/panbinder-probe/marker": (b"marker-1.2\n", 0o644), ACTIVATE: (ACTIVATE_SH, 0o644)},
            ),
        ],
    )
    server = ThreadingHTTPServer((bridge_gateway(), 0), functools.partial(QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://{server.server_address[0]}:{server.server_address[1]}/{base}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def mirror_portal(tmp_path_factory, mirror, request):
    remove_stale_containers("panbinder-cm")
    p = Portal(
        state=tmp_path_factory.mktemp("conda-mirror-state"),
        container_prefix=PREFIX,
        config=f"""
        c.GitProvider.allow_local = True
        c.ServeApp.keepalive_interval = 1.0
        c.Repo2DockerBuilder.conda_policy = "mirror"
        c.Repo2DockerBuilder.conda_channel_mirror = {mirror!r}
        """,
    )
    p.start()
    yield p
    if getattr(request.config, "_panbinder_failed", False):
        print("\n==== panbinder logs (a test failed) ====\n" + p.logs())
    p.stop()
    remove_containers(PREFIX)


ENV = "channels: [conda-forge]\ndependencies:\n  - panbinder-probe\n  - pip:\n    - tabulate==0.9.0\n"
PROBE_CODE = (
    "import os, shutil, subprocess, tabulate; "
    "print(subprocess.run(['panbinder-probe'], capture_output=True, text=True, check=True).stdout.strip()); "
    "print(open('/srv/conda/envs/notebook/share/panbinder-probe/marker').read().strip()); "
    "print(shutil.which('panbinder-probe'), shutil.which('jupyterhub-singleuser'), tabulate.__version__); "
    "print(os.environ.get('PANBINDER_PROBE_HOME'))"
)


async def test_environment_from_the_mirror_is_usable_in_the_server(mirror_portal, mirror, git_server):
    git_server.commit("conda-mirror-probe", {"environment.yml": ENV, "README.md": "probe\n"}, "probe")
    s = await read_stream(mirror_portal.build_url(git_server.url("conda-mirror-probe"), "main"))
    assert s.last["phase"] == "ready", s.log()
    log = s.log()
    assert NOTICE_PREFIX + "installing the conda packages of environment.yml (panbinder-probe)" in log
    assert f"conda channel mirror {mirror} (channels: conda-forge -> {mirror}/conda-forge)" in log
    assert "panbinder: installed 2 conda packages into /srv/conda/envs/notebook" in log
    out = await run_code(s.last["url"], s.last["token"], PROBE_CODE)
    assert out.splitlines() == [
        "panbinder-probe ran with marker-1.2",
        "marker-1.2",
        "/srv/conda/envs/notebook/bin/panbinder-probe /srv/venv/bin/jupyterhub-singleuser 0.9.0",
        "/srv/conda/envs/notebook/share/panbinder-probe",  # set by the package's activate.d script
    ]


async def test_package_missing_from_the_mirror_fails_naming_it(mirror_portal, mirror, git_server):
    env = "channels: [conda-forge]\ndependencies:\n  - panbinder-probe\n  - panbinder-not-on-the-mirror >=2\n"
    git_server.commit("conda-mirror-missing", {"environment.yml": env}, "missing")
    s = await read_stream(
        mirror_portal.build_url(git_server.url("conda-mirror-missing"), "main") + "?build_only=true"
    )
    assert s.last["phase"] == "failed", s.log()
    message = s.last["message"]
    assert "panbinder-not-on-the-mirror" in message and mirror in message, message
    assert "panbinder-probe," not in message and "does not have in the channels conda-forge" in message
