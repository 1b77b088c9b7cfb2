"""environment.yml built from a conda channel mirror, for real, through the portal.

No conda channel is reachable here, so the test makes its own: two small ``noarch: generic``
conda packages (``panbinder-probe``, a shell command, depends on ``panbinder-probe-data``,
which holds a marker file and an activate.d script) with their repodata, served over HTTP as
the channel ``conda-forge`` of a mirror. Build steps run on the build engine's bridge, where the
host's loopback is out of reach, so the server listens on that bridge's gateway address
(``BuildEngine.gateway()``, e.g. 172.30.0.1). py-rattler itself comes from the package index, like any pip
package.

The lock tests build the same environment once more (build only), read the ``conda`` section of
its lock, rebuild it frozen (identical lock), publish ``panbinder-probe-data`` 1.3 and rebuild it
fresh (the diff names the new version), then withdraw 1.2 so that a frozen rebuild fails naming
the locked package the mirror no longer has.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import tarfile
import threading
import uuid
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from panbinder.builder.buildpacks import NOTICE_PREFIX
from panbinder.builder.lock import image_lock
from tests.support import (
    machine_build_engine,
    read_stream,
    run_code,
    session_prefix,
)

from .conftest import build_and_lock
from .test_locks import rebuild

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


def publish(channel: Path, add: list | tuple = (), withdraw: tuple[str, ...] = ()) -> None:
    """Add packages to the channel's noarch/ and withdraw others (by file name) from its repodata."""
    path = channel / "noarch" / "repodata.json"
    repodata = json.loads(path.read_text())
    for filename, data, record in add:
        (channel / "noarch" / filename).write_bytes(data)
        repodata["packages"][filename] = record
    for filename in withdraw:
        del repodata["packages"][filename]
    path.write_text(json.dumps(repodata))


def probe_data(version: str):
    marker = f"marker-{version}\n".encode()
    return conda_package(
        "panbinder-probe-data",
        version,
        [],
        {"share/panbinder-probe/marker": (marker, 0o644), ACTIVATE: (ACTIVATE_SH, 0o644)},
    )


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:
        pass

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-cache")  # repodata changes while the module runs
        super().end_headers()


@pytest.fixture(scope="module")
def mirror_channel(tmp_path_factory) -> Path:
    """The folder of the mirror's channel conda-forge (the tests publish into it)."""
    # a path of its own in every run, so the solve step never comes from the layer cache
    channel = tmp_path_factory.mktemp("conda-mirror") / f"mirror-{uuid.uuid4().hex[:12]}" / "conda-forge"
    write_channel(
        channel,
        [
            conda_package(
                "panbinder-probe",
                "1.0",
                ["panbinder-probe-data 1.*"],
                {"bin/panbinder-probe": (PROBE, 0o755)},
            ),
            probe_data("1.2"),
        ],
    )
    return channel


@pytest.fixture(scope="module")
def mirror(mirror_channel):
    """A conda channel mirror with the channel conda-forge, on the build engine's bridge gateway."""
    root, base = mirror_channel.parent.parent, mirror_channel.parent.name
    handler = functools.partial(QuietHandler, directory=str(root))
    server = ThreadingHTTPServer((machine_build_engine().gateway(), 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://{server.server_address[0]}:{server.server_address[1]}/{base}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def mirror_portal(portal_factory, mirror):
    config = f"""
        c.GitProvider.allow_local = True
        c.ServeApp.keepalive_interval = 1.0
        c.Repo2DockerBuilder.conda_policy = "mirror"
        c.Repo2DockerBuilder.conda_channel_mirror = {mirror!r}
        """
    with portal_factory("cm", config, prefix=PREFIX) as p:
        yield p


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


@pytest.fixture(scope="module")
def mirror_lock(mirror_portal, git_server, storage_root):
    """(image, its catalogue lock) of a build-only build of ENV."""
    git_server.commit("conda-mirror-locked", {"environment.yml": ENV}, "locked")
    return build_and_lock(mirror_portal, storage_root, git_server.url("conda-mirror-locked"))


def test_the_lock_lists_the_conda_packages(mirror_lock, mirror):
    image, lock = mirror_lock
    assert lock is not None, "no lock recorded"
    assert lock["conda"] == {
        "panbinder-probe": f"1.0=0 {mirror}/conda-forge/noarch",
        "panbinder-probe-data": f"1.2=0 {mirror}/conda-forge/noarch",
    }
    assert "conda_pip" not in lock  # the environment has no python: 'pip:' went into /srv/venv
    assert "tabulate==0.9.0" in lock["pip"]
    # the label has the same conda section (in the build engine, where the image was built)
    assert image_lock(image, docker_cli=machine_build_engine().command()) == lock


def test_frozen_rebuild_pins_the_conda_packages_and_reports_an_identical_lock(mirror_portal, mirror_lock):
    image, _ = mirror_lock
    proc = rebuild(mirror_portal, "--frozen", image)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-5000:]
    assert "lock: identical" in proc.stdout, proc.stdout
    assert "panbinder-probe ==1.0 0, panbinder-probe-data ==1.2 0" in proc.stderr, proc.stderr[-5000:]


def test_fresh_rebuild_shows_a_new_conda_version(mirror_portal, mirror_lock, mirror_channel):
    image, _ = mirror_lock
    publish(mirror_channel, add=[probe_data("1.3")])
    proc = rebuild(mirror_portal, "--fresh", image)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-5000:]
    change = "conda: ~ panbinder-probe-data 1.2=0 conda-forge/noarch -> 1.3=0 conda-forge/noarch"
    assert change in proc.stdout, proc.stdout
    assert "conda: ~ panbinder-probe " not in proc.stdout


def test_frozen_rebuild_names_a_locked_package_gone_from_the_mirror(
    mirror_portal, mirror_lock, mirror_channel
):
    image, _ = mirror_lock
    publish(mirror_channel, withdraw=("panbinder-probe-data-1.2-0.tar.bz2",))
    proc = rebuild(mirror_portal, "--frozen", image)
    assert proc.returncode == 1, proc.stdout + proc.stderr[-5000:]
    failed = next(
        (line for line in proc.stderr.splitlines() if line.startswith("failed: ")), proc.stderr[-3000:]
    )
    assert "no longer has in the channels conda-forge: panbinder-probe-data ==1.2 0" in failed, failed
    assert "panbinder-probe ==1.0 0" not in failed
