"""A launched single-user server starts without the Hub's database layer and aiohttp
(builder/buildpacks/server_start_patches.py), from the image's bytecode (nothing compiled at start),
and still signs users in through the Hub's OAuth and reports its activity to the Hub."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from urllib.parse import urljoin, urlparse

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPResponse

from tests.integration.conftest import HUB_PASSWORD, PREFIX
from tests.support import _docker_client, read_stream

pytestmark = [pytest.mark.docker, pytest.mark.hub]

# packages whose compiled modules a Python process maps when it imports them (alembic and the
# Hub's ORM import SQLAlchemy)
HUB_ONLY = ("/sqlalchemy/", "/aiohttp/")


def server_container(client, user: str):
    found = [
        c for c in client.containers.list(filters={"name": PREFIX}) if user.removeprefix("pb-") in c.name
    ]
    assert len(found) == 1, [c.name for c in found]
    return found[0]


def compiled_at_start(user: str) -> list[str]:
    """Bytecode files the server's start wrote into its container (none when the image has them:
    each start would otherwise compile every module it imports, and lose it with the container)."""
    client = _docker_client()
    try:
        changes = server_container(client, user).diff() or []
    finally:
        client.close()
    return [c["Path"] for c in changes if c["Path"].endswith(".pyc")]


# in the launched image: importing JupyterLab's server extension runs no program (yarn, for the npm
# registry, used to run on every start), and the registry is still yarn's when asked for
YARN_PROBE = """
import subprocess
runs = []
real = subprocess.Popen.__init__
def spy(self, args, *a, **k):
    runs.append(args)
    real(self, args, *a, **k)
subprocess.Popen.__init__ = spy
import jupyterlab.commands, jupyterlab.labapp
at_import = len(runs)
registry = jupyterlab.commands._AppHandler(None).registry
print(at_import, registry.startswith("https://"), any("yarn" in str(r) for r in runs))
"""
# and the language server search, which runs after every start, finds npm's global folder (the
# image's NPM_CONFIG_PREFIX) without running npm
NPM_PROBE = (
    YARN_PROBE.split("import jupyterlab")[0]
    + """
import os
from jupyter_lsp.types import LanguageServerManagerAPI
roots = [str(r) for r in LanguageServerManagerAPI().node_roots]
print(len(runs), os.environ["NPM_CONFIG_PREFIX"] + "/lib" in roots)
"""
)


def run_in_server(user: str, code: str) -> str:
    client = _docker_client()
    try:
        result = server_container(client, user).exec_run(["python", "-c", code])
    finally:
        client.close()
    assert result.exit_code == 0, result.output[-2000:]
    return result.output.decode().strip().splitlines()[-1]


def server_maps(user: str) -> str:
    """The memory map of the launched server's process (read from the host: the container's
    processes are the host's)."""
    client = _docker_client()
    try:
        top = server_container(client, user).top(ps_args="-eo pid,args")
    finally:
        client.close()
    # (repo2docker's entrypoint, a Python process too, runs the server as its child)
    pids = [p[0] for p in top["Processes"] if "jupyterhub-singleuser" in p[-1] and "entrypoint" not in p[-1]]
    assert len(pids) == 1, top
    return Path(f"/proc/{pids[0]}/maps").read_text()


class Browser:
    """Requests with a cookie jar and redirects followed by hand (each hop checked)."""

    def __init__(self) -> None:
        self.cookies: dict[str, str] = {}
        self.client = AsyncHTTPClient()

    async def get(self, url: str, *, method: str = "GET", body: str | None = None) -> HTTPResponse:
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        resp = await self.client.fetch(
            url, method=method, body=body, headers=headers, follow_redirects=False, raise_error=False
        )
        for cookie in resp.headers.get_list("Set-Cookie"):
            name, _, rest = cookie.partition("=")
            self.cookies[name] = rest.split(";", 1)[0]
        return resp

    @staticmethod
    def location(resp: HTTPResponse) -> str:
        assert resp.code in (302, 303), (resp.code, resp.body[:300])
        return urljoin(resp.effective_url, resp.headers["Location"])


async def test_server_starts_without_hub_only_modules_and_signs_in_through_oauth(
    portal, git_server, analysis_repo
):
    s = await read_stream(portal.build_url(git_server.url(analysis_repo), "main"))
    assert s.last["phase"] == "ready", s.log()
    server = s.last["url"]
    user = server.rstrip("/").rsplit("/", 1)[1]

    maps = server_maps(user)
    assert "/tornado/" in maps  # the probe reads the server's own compiled modules
    assert [m for m in HUB_ONLY if m in maps] == []
    assert compiled_at_start(user) == []
    assert run_in_server(user, YARN_PROBE) == "0 True True"
    assert run_in_server(user, NPM_PROBE) == "0 True"

    # OAuth: the server sends an anonymous reader to the Hub, which signs them in and sends them
    # back with a code; the server trades it for a token (a POST to the Hub) and sets its cookie
    browser = Browser()
    to_hub = browser.location(await browser.get(server + "lab"))
    assert urlparse(to_hub).path == "/hub/api/oauth2/authorize", to_hub
    to_login = browser.location(await browser.get(to_hub))
    form = (await browser.get(to_login)).body.decode()
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', form).group(1)
    login = f"_xsrf={xsrf}&username={user}&password={HUB_PASSWORD}"
    back = browser.location(await browser.get(to_login, method="POST", body=login))
    to_callback = browser.location(await browser.get(back))
    assert urlparse(to_callback).path == f"/user/{user}/oauth_callback", to_callback
    to_lab = browser.location(await browser.get(to_callback))
    assert urlparse(to_lab).path == f"/user/{user}/lab"
    status = await browser.get(server + "api/status")
    assert status.code == 200, status.body[:300]

    # the Hub's and the catalogue's databases write ahead (a commit waits for no disk sync)
    for database in (portal.state / "hub" / "jupyterhub.sqlite", portal.state / "catalogue.sqlite"):
        with sqlite3.connect(database) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",), database

    # activity: the server reported to the Hub as it started (the culler decides from it)
    log = (portal.state / "logs" / "jupyterhub.log").read_text(errors="replace")
    assert re.search(rf"\b200 POST /hub/api/users/{re.escape(user)}/activity\b", log), log[-3000:]
    # the sign-in loaded nothing more of the Hub's in the server
    assert [m for m in HUB_ONLY if m in server_maps(user)] == []
