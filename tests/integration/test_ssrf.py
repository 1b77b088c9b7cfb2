"""/build is no way into the facility's network: refused addresses, no redirects, one message.

Two real portals: one with the default configuration (loopback refused, as in production) and
one that opens 127.0.0.1 by setting (as a facility opens its GitLab), where servers on loopback
play the internal network. Every connection goes to 127.0.0.1 only; refusals are shown to
happen before any connection by a listener that counts what reaches it.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import threading
from urllib.parse import quote

import pytest
from tornado.httpclient import AsyncHTTPClient

from tests.loopback import LoopbackHTTP, bare_repo
from tests.support import free_port, read_stream

pytestmark = [pytest.mark.docker, pytest.mark.slow]
SHA = "0123456789abcdef0123456789abcdef01234567"
GENERIC = "Could not read the repository {url}; check the URL and that the repository is public."


class CountingPort:
    """A port on 127.0.0.1 that counts the connections it accepts (and closes them)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def default_portal(portal_factory):
    """The configuration a facility gets without changing anything."""
    with portal_factory("ssrf-default", "c.ServeApp.start_hub = False\n", repo_hosts=()) as p:
        yield p


@pytest.fixture(scope="module")
def loopback_portal(portal_factory):
    config = """
    c.ServeApp.start_hub = False
    c.RepoGuard.allow_http = True
    c.GitProvider.timeout = 3.0
    c.RepoGuard.answer_timeout = 3.0
    c.RepoGuard.max_concurrent = 1
    """
    with portal_factory("ssrf-loopback", config, repo_hosts=("127.0.0.1",)) as p:
        yield p


async def get(url: str):
    return await AsyncHTTPClient().fetch(url, headers={"Accept": "application/json"}, raise_error=False)


def attack_urls(port: int) -> list[str]:
    return [
        f"git://127.0.0.1:{port}/repo",
        f"https://localhost:{port}/repo.git",
        f"https://0x7f000001:{port}/repo.git",
        f"git://2130706433:{port}/repo",
        f"https://[::ffff:127.0.0.1]:{port}/repo.git",
        f"ssh://git@127.0.0.1:{port}/repo.git",
        "https://169.254.169.254/latest/meta-data.git",
        "git://10.0.0.1/repo",
        "https://[::1]/repo.git",
    ]


@pytest.mark.parametrize("ref", ["main", SHA])
async def test_default_portal_refuses_loopback_before_connecting(default_portal, ref):
    listener = CountingPort()
    try:
        for url in attack_urls(listener.port):
            for route in ("build", "v2"):
                resp = await get(f"{default_portal.url}/{route}/git/{quote(url, safe='')}/{ref}")
                assert resp.code == 403, (url, route, resp.code, resp.body[:300])
                if route == "build":
                    body = json.loads(resp.body)
                    assert body["reason"] == "blocked_address"
                    assert "public repository URL" in body["message"]
    finally:
        listener.close()
    assert listener.accepted == 0


async def test_default_portal_refuses_the_tests_own_git_daemon(default_portal, git_server, analysis_repo):
    resp = await get(default_portal.build_url(git_server.url(analysis_repo), "main"))
    assert resp.code == 403
    assert json.loads(resp.body)["reason"] == "blocked_address"


async def test_redirect_to_another_loopback_port_is_not_followed(loopback_portal, tmp_path):
    _, sha = bare_repo(tmp_path)
    with LoopbackHTTP(serve=tmp_path) as target, LoopbackHTTP(redirect=target.url()) as redirector:
        url = redirector.url("/repo.git")
        s = await read_stream(loopback_portal.build_url(url, "main"), timeout=60)
        assert s.phases[-1] == "failed"
        assert s.last["message"] == GENERIC.format(url=url)
        assert redirector.requests and target.requests == []
        s = await read_stream(loopback_portal.build_url(url, sha), timeout=120)  # the clone too
        assert s.phases[-1] == "failed"
        assert s.last["message"] == GENERIC.format(url=url)
        assert target.requests == []
        assert str(target.port) not in s.raw


async def test_port_states_and_http_errors_read_the_same(loopback_portal):
    """/build is no port scanner: closed, open non-git, silent, 404 and 500 give one answer."""
    answers = {}
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    try:
        with LoopbackHTTP(status=404) as missing, LoopbackHTTP(status=500) as broken:
            urls = {
                "closed": f"git://127.0.0.1:{free_port()}/x",
                "open, not git": f"git://127.0.0.1:{missing.port}/x",
                "silent": f"git://127.0.0.1:{silent.getsockname()[1]}/x",
                "http 404": missing.url("/x.git"),
                "http 500": broken.url("/x.git"),
            }
            for kind, url in urls.items():
                for ref in ("main", SHA):  # ls-remote, and the build's clone for a full sha
                    s = await read_stream(loopback_portal.build_url(url, ref), timeout=120)
                    assert s.phases[-1] == "failed", (kind, s.log())
                    last = s.last
                    answers[kind, ref] = (last.get("reason"), last["message"].replace(url, "URL"))
                    for leak in ("port", "remote:", "secret", "404", "500", "refused", "Failed to connect"):
                        assert leak not in s.raw.replace(url, "URL"), (kind, ref, leak, s.raw)
    finally:
        silent.close()
    assert len({message for _, message in answers.values()}) == 1, answers


async def test_lookups_beyond_the_limit_get_busy(loopback_portal):
    """A silent git port holds a look-up for GitProvider.timeout; more than max_concurrent are 503."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    url = f"git://127.0.0.1:{silent.getsockname()[1]}/x"
    try:
        held = asyncio.ensure_future(read_stream(loopback_portal.build_url(url, "main"), timeout=60))
        await asyncio.sleep(1.0)
        resp = await get(loopback_portal.build_url(url, "other"))
        assert resp.code == 503
        body = json.loads(resp.body)
        assert body["reason"] == "busy" and "try again" in body["message"]
        s = await held
        assert s.phases[-1] == "failed" and s.seconds < 10
    finally:
        silent.close()


async def test_a_build_clones_through_the_guard(loopback_portal, git_server):
    """The build's own clone (not only the ref look-up) runs pinned and reports in the build log."""
    name = f"ssrf-build-{secrets.token_hex(4)}"
    sha = git_server.commit(name, {"README.md": "built through the guard\n"})
    s = await read_stream(
        loopback_portal.build_url(git_server.url(name), "main", "build_only=true"), timeout=900
    )
    assert s.phases[-1] == "ready", s.log()
    assert f"Checked out {git_server.url(name)} at {sha}" in s.log()
