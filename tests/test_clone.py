"""The build's clone (builder/clone.py) goes through the URL guard: pinned, no redirects, quiet.

Real git against servers on 127.0.0.1, opened by setting as a facility opens its own GitLab.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import time

import pytest

from panbinder.builder.clone import clone_pinned
from panbinder.builder.url_guard import RepoGuard
from panbinder.errors import PanbinderError
from tests.loopback import LoopbackHTTP, SilentPort, bare_repo
from tests.support import running_git

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git command")
LOG = logging.getLogger("test-clone")


def loopback_guard(**traits) -> RepoGuard:
    return RepoGuard(**{"allowed_hosts": ["127.0.0.1"], "allow_http": True, **traits})


def clone(guard: RepoGuard, url: str, ref: str, dest) -> str:
    return clone_pinned(guard, url, ref, str(dest), allow_file=False, log=LOG)


def test_clone_from_an_allowed_daemon(tmp_path):
    with running_git(tmp_path / "served") as daemon:
        sha = daemon.commit("analysis", {"README.md": "hello\n"})
        assert clone(loopback_guard(), daemon.url("analysis"), sha, tmp_path / "out") == sha
    assert (tmp_path / "out" / "README.md").read_text() == "hello\n"


def test_default_guard_refuses_the_clone_before_git_runs(tmp_path, monkeypatch):
    def no_process(*args, **kwargs):
        raise AssertionError(f"a process was started: {args}")

    monkeypatch.setattr(subprocess, "Popen", no_process)
    for url in ("git://127.0.0.1:9418/analysis", "https://[::1]/r.git", "git://0x7f000001/r"):
        with pytest.raises(PanbinderError) as info:
            clone(RepoGuard(), url, "HEAD", tmp_path / "out")
        assert info.value.reason == "blocked_address"


def test_clone_does_not_follow_redirects_and_keeps_git_output_out(tmp_path):
    _, sha = bare_repo(tmp_path)
    with LoopbackHTTP(serve=tmp_path) as target, LoopbackHTTP(redirect=target.url()) as redirector:
        url = redirector.url("/repo.git")
        with pytest.raises(PanbinderError) as info:
            clone(loopback_guard(), url, sha, tmp_path / "out")
    assert target.requests == [] and redirector.requests
    assert info.value.message == (
        f"Could not read the repository {url}; check the URL and that the repository is public."
    )
    assert "302" in info.value.log_message  # git's words for the operator only


def test_clone_uses_the_pinned_address(tmp_path):
    """The name does not resolve at all: only the pin can take git to the daemon."""
    guard = loopback_guard(allowed_hosts=["*.panbinder.invalid"])
    guard.resolver = lambda host, port: ["127.0.0.1"]
    with running_git(tmp_path / "served") as daemon:
        sha = daemon.commit("analysis", {"README.md": "pinned\n"})
        url = f"git://repo.panbinder.invalid:{daemon.port}/analysis"
        assert clone(guard, url, sha, tmp_path / "out") == sha


def test_a_commit_the_repository_lacks_is_404(tmp_path):
    with running_git(tmp_path / "served") as daemon:
        daemon.commit("analysis", {"README.md": "x\n"})
        with pytest.raises(PanbinderError) as info:
            clone(loopback_guard(), daemon.url("analysis"), "f" * 40, tmp_path / "out")
    assert (info.value.status_code, info.value.reason) == (404, "unknown_ref")


def _superproject(daemon, sub_url: str) -> str:
    """A repository whose .gitmodules points at ``sub_url``; returns its commit."""
    daemon.commit("sub", {"lib.txt": "from the submodule\n"})
    daemon.commit("super", {"README.md": "super\n"})
    daemon.git(
        "super", "-c", "protocol.allow=always", "submodule", "--quiet", "add", daemon.url("sub"), "sub"
    )
    daemon.git("super", "config", "-f", ".gitmodules", "submodule.sub.url", sub_url)
    daemon.git("super", "add", ".gitmodules")
    daemon.git("super", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "sub")
    return daemon.git("super", "rev-parse", "HEAD").strip()


def test_submodules_are_fetched_through_the_guard(tmp_path):
    with running_git(tmp_path / "served") as daemon:
        sha = _superproject(daemon, daemon.url("sub"))
        clone(loopback_guard(), daemon.url("super"), sha, tmp_path / "out")
    assert (tmp_path / "out" / "sub" / "lib.txt").read_text() == "from the submodule\n"


def test_a_submodule_on_a_blocked_address_is_refused(tmp_path):
    with running_git(tmp_path / "served") as daemon:
        sha = _superproject(daemon, f"git://localhost:{daemon.port}/sub")  # not an allowed name
        with pytest.raises(PanbinderError) as info:
            clone(loopback_guard(), daemon.url("super"), sha, tmp_path / "out")
    assert info.value.reason == "blocked_address"
    assert not (tmp_path / "out" / "sub" / "lib.txt").exists()


def test_a_silent_port_does_not_hold_the_clone(tmp_path):
    with SilentPort() as silent:
        url = f"git://127.0.0.1:{silent.port}/repo"
        start = time.monotonic()
        with pytest.raises(PanbinderError) as info:
            clone(loopback_guard(answer_timeout=1.0), url, "f" * 40, tmp_path / "out")
    assert time.monotonic() - start < 5
    assert info.value.reason == "repo_unreachable"
    assert "no answer" in info.value.log_message
