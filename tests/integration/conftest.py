"""Real services for the integration tests: git daemon, panbinder serve (portal + Hub)."""

from __future__ import annotations

import pytest

from panbinder.testing import GitServer, Portal, notebook, remove_containers

PREFIX = "panbinder-it"
CORS_ORIGIN = "https://pages.example.org"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        item.session.config._panbinder_failed = True


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
def portal(tmp_path_factory, request, storage_root):
    remove_containers(PREFIX)
    p = Portal(
        state=tmp_path_factory.mktemp("state"),
        container_prefix=PREFIX,
        config=f"""
        c.Catalogue.storage_roots = [{str(storage_root)!r}]
        c.HubProcess.groups = {{"proposal-42": ["alice"]}}
        c.ServeApp.keepalive_interval = 1.0
        c.ServeApp.cors_allow_origin = {CORS_ORIGIN!r}
        c.GitProvider.allow_local = True
        c.HubProcess.mem_limit = "1G"
        c.HubProcess.cpu_limit = 1.0
        c.HubProcess.pids_limit = 200
        c.HubProcess.cull_timeout = 900
        """,
    )
    p.start()
    yield p
    if getattr(request.config, "_panbinder_failed", False):
        print("\n==== panbinder logs (a test failed) ====\n" + p.logs())
    p.stop()
    remove_containers(PREFIX)


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
