"""Real services for the integration tests: git daemon, panbinder serve (portal + Hub)."""

from __future__ import annotations

import asyncio
import subprocess
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from tests.archive_server import ArchiveServer
from tests.support import (
    GitServer,
    Portal,
    notebook,
    read_stream,
    remove_stale_containers,
    running_portal,
    session_prefix,
)

PREFIX = session_prefix("panbinder-it")  # the shared portal's containers
CORS_ORIGIN = "https://pages.example.org"
HUB_PASSWORD = "test-password-for-the-dummy-authenticator"
HUB_ADMIN = "operator"  # a Hub admin: sees what /health keeps from others


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        config = item.session.config
        config._panbinder_failed = True
        config._panbinder_failures = getattr(config, "_panbinder_failures", 0) + 1


def _failures(config: pytest.Config) -> int:
    return getattr(config, "_panbinder_failures", 0)


def _show(config: pytest.Config, text: str) -> None:
    """Print past pytest's capture (a fixture's teardown output is otherwise not shown)."""
    capture = config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(f"\n{text}", flush=True)


@pytest.fixture(scope="session")
def portal_factory(tmp_path_factory, request):
    """Every ``panbinder serve`` of the integration tests: ``with portal_factory(name, config) as p``.

    The portal gets a state folder and ports of its own and the container prefix
    ``panbinder-<name><pid>`` (``prefix`` overrides it), after the containers that a dead earlier
    session left under ``panbinder-<name>`` are removed. It starts at once unless ``start`` is
    False (the test starts it). When the block ends its logs are printed if a test failed
    meanwhile, then it is stopped and its containers are removed by prefix. ``state`` defaults to a
    new temporary folder; other ``fields`` go to ``Portal`` (``repo_hosts``...). A fixture of any
    scope (session, module, test) wraps its ``yield`` in the block.
    """

    @contextmanager
    def started(
        name: str, config: str = "", *, prefix: str = "", state: Path | None = None, **fields: Any
    ) -> Iterator[Portal]:
        base = f"panbinder-{name}"
        remove_stale_containers(base)
        state = state or tmp_path_factory.mktemp(f"{name}-state")
        failures = _failures(request.config)
        try:
            with running_portal(state, prefix=prefix or session_prefix(base), config=config, **fields) as p:
                try:
                    yield p
                finally:
                    if _failures(request.config) > failures:
                        logs = p.logs()
                        _show(
                            request.config,
                            f"==== logs of the portal {p.container_prefix} (a test failed) ====\n{logs}",
                        )
        finally:
            release_workspaces(state)

    return started


def release_workspaces(state: Path) -> None:
    """Unmount what the portal mounted under ``state`` and free the loop devices: a workspace stays
    mounted after its server (by design, for the next launch), but a test's state folder is
    deleted, which a mounted workspace stopped (and which kept a loop device per session)."""
    root = str(state.resolve()) + "/"
    for line in Path("/proc/mounts").read_text().splitlines():
        device, mount = line.split()[:2]
        if mount.startswith(root):
            subprocess.run(["umount", mount], capture_output=True)
            if device.startswith("/dev/loop"):
                subprocess.run(["losetup", "-d", device], capture_output=True)


@pytest.fixture(scope="session")
def git_server(tmp_path_factory):
    server = GitServer(tmp_path_factory.mktemp("git"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def storage_root(tmp_path_factory):
    """The facility's storage: datasets live here and are mounted from here, read-only."""
    return tmp_path_factory.mktemp("facility-storage")


@pytest.fixture(scope="session")
def archive_server():
    """Zenodo, Figshare, Dataverse and Software Heritage on 127.0.0.1 (tests/archive_server.py):
    a test adds the records it builds."""
    with ArchiveServer() as server:
        yield server


REVIEW_SWEEP = 2.0  # seconds between the shared portal's sweeps for ended review links' servers


@pytest.fixture(scope="session")
def portal(portal_factory, storage_root, archive_server):
    """The portal most modules share: a Hub with a dummy authenticator, a proposal group, CORS,
    and the archives' stand-in."""
    config = f"""
        c.Catalogue.storage_roots = [{str(storage_root)!r}]
        c.HubProcess.groups = {{"proposal-42": ["alice"]}}
        c.HubProcess.authenticator_class = "dummy"
        c.HubProcess.extra_config = {{
            "DummyAuthenticator": {{"password": {HUB_PASSWORD!r}}},
            "Authenticator": {{"admin_users": [{HUB_ADMIN!r}]}},
        }}
        c.ServeApp.keepalive_interval = 1.0
        c.ServeApp.cors_allow_origin = {CORS_ORIGIN!r}
        c.GitProvider.allow_local = True
        c.HubProcess.mem_limit = "1G"
        c.HubProcess.cpu_limit = 1.0
        c.HubProcess.pids_limit = 200
        c.ServerPool.max_servers = 4  # what the suite's launches need; each is replaced every max_age
        c.ReviewServers.interval = {REVIEW_SWEEP}  # an expired review link's server goes within it
        # longer than the whole suite: the culler also removes inactive signed-in users (alice,
        # operator) and with them their group memberships, which later tests rely on
        c.HubProcess.cull_timeout = 6 * 3600
        """
    config = textwrap.dedent(config) + archive_server.portal_config()
    with portal_factory("it", config, prefix=PREFIX) as p:
        yield p


ANALYSIS_FILES = {
    "requirements.txt": "tabulate==0.9.0\n",
    "data/values.txt": "21\n",
    "figure.ipynb": notebook("import tabulate\nprint(2 * int(open('data/values.txt').read()))"),
    "README.md": "test repository\n",
}


@pytest.fixture(scope="session")
def analysis_repo(git_server):
    """A small analysis repository: a PyPI requirement, a notebook and a data file."""
    git_server.commit("analysis", ANALYSIS_FILES, "initial")
    return "analysis"


@pytest.fixture
def fresh_repo(git_server, request):
    """The same content in a repository no other test has built."""
    name = f"fresh-{request.node.name[:40]}"
    git_server.commit(name, ANALYSIS_FILES, "initial")
    return name


DOI_OPEN = "10.5555/panbinder.open"
DOI_EMBARGO = "10.5555/panbinder.embargo"
DOI_RELEASED = "10.5555/panbinder.released"


def write_scan(folder, value: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with h5py.File(folder / "scan.nxs", "w") as f:
        f.attrs["default"] = "entry"
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        entry["title"] = f"scan with value {value}"
        entry["start_time"] = "2024-03-01T10:00:00"
        data = entry.create_group("data")
        data.attrs["NX_class"] = "NXdata"
        data.attrs["signal"] = "counts"
        data["counts"] = np.arange(100) * value
        data["image"] = np.outer(np.arange(64), np.arange(64)).astype("float32")
    # writable for everyone on the host: only the read-only mount may stop a write
    folder.chmod(0o777)
    (folder / "scan.nxs").chmod(0o666)


def cli(portal, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = portal.command(*args, timeout=timeout)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def build_and_lock(portal, storage_root, repo_url: str) -> tuple[str, dict | None]:
    """Build ``repo_url`` at main (build only) through ``portal``: (image, the catalogue's lock)."""
    s = asyncio.run(read_stream(portal.build_url(repo_url, "main", "build_only=true"), timeout=900))
    assert s.last["phase"] == "ready", s.log()
    cat = catalogue_of(portal, storage_root)
    try:
        return s.last["imageName"], cat.get_lock(s.last["imageName"])
    finally:
        cat.close()


def catalogue_of(portal, storage_root):
    from panbinder.data_mounts.catalogue import Catalogue

    cat = Catalogue(
        db_url=f"sqlite:///{portal.state / 'catalogue.sqlite'}", storage_roots=[str(storage_root)]
    )
    cat.start()
    return cat


@pytest.fixture(scope="session")
def publications(portal, git_server, storage_root):
    """Three datasets (open, embargoed, embargo ended) and a publication for each."""
    write_scan(storage_root / "open-scan", 3)
    write_scan(storage_root / "embargoed-scan", 5)
    write_scan(storage_root / "released-scan", 7)
    cli(portal, "datasets", "scan", str(storage_root))
    cat = catalogue_of(portal, storage_root)
    now = datetime.now(UTC)
    with cat.session() as s:
        for pid, public, release in (
            ("local:open-scan", True, None),
            ("local:embargoed-scan", False, now + timedelta(days=365)),
            ("local:released-scan", False, now - timedelta(days=1)),
        ):
            ds = cat.get_dataset(s, pid)
            assert ds is not None, pid
            ds.is_public, ds.release_date, ds.groups, ds.proposal_id = public, release, ["proposal-42"], "42"
    git_server.commit(
        "paper",
        {"requirements.txt": "h5py==3.16.0\n", "figure.ipynb": "{}", "README.md": "paper code\n"},
        "paper",
    )
    repo = git_server.url("paper")
    for doi, pid in (
        (DOI_OPEN, "local:open-scan"),
        (DOI_EMBARGO, "local:embargoed-scan"),
        (DOI_RELEASED, "local:released-scan"),
    ):
        cli(portal, "publications", "add", f"--doi={doi}", f"--repo={repo}", "--ref=main", f"--dataset={pid}")
    return cat


def workspace_portal_config(storage, group: str, volume_prefix: str) -> str:
    """A portal where ``alice`` (in ``group``) signs in with HUB_PASSWORD and gets a 32 MB
    workspace volume named with ``volume_prefix``; no pool, long limits for a loaded machine."""
    return f"""
        c.Catalogue.storage_roots = [{str(storage)!r}]
        c.HubProcess.groups = {{{group!r}: ["alice"]}}
        c.HubProcess.authenticator_class = "dummy"
        c.HubProcess.extra_config = {{"DummyAuthenticator": {{"password": {HUB_PASSWORD!r}}}}}
        c.HubProcess.cull_timeout = 3600
        c.HubProcess.mem_limit = "1G"
        c.HubProcess.start_timeout = 300
        c.HubLauncher.launch_timeout = 300
        c.GitProvider.allow_local = True
        c.ServerPool.size = 0
        c.Workspaces.quota = "32M"
        c.Workspaces.volume_prefix = {volume_prefix!r}
        """
