"""Repository providers (panbinder/providers/): spec parsing, ref matching, resolving."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from urllib.parse import quote

import pytest
from traitlets.config import Config

from panbinder.builder.url_guard import RepoGuard
from panbinder.data_mounts.access import Identity
from panbinder.errors import PanbinderError
from panbinder.providers import RepoProvider, get_provider_class
from panbinder.providers.git import GitProvider, match_ref
from tests.loopback import LoopbackHTTP, SilentPort, bare_repo
from tests.support import free_port, running_git

HEAD_SHA = "1111111111111111111111111111111111111111"
MAIN_SHA = HEAD_SHA
DEV_SHA = "2222222222222222222222222222222222222222"
FEATURE_SHA = "3333333333333333333333333333333333333333"
TAG_OBJECT_SHA = "4444444444444444444444444444444444444444"
TAG_COMMIT_SHA = "5555555555555555555555555555555555555555"
LIGHT_TAG_SHA = "6666666666666666666666666666666666666666"
PULL_SHA = "7777777777777777777777777777777777777777"

LS_REMOTE = (
    f"{HEAD_SHA}\tHEAD\n"
    f"{DEV_SHA}\trefs/heads/dev\n"
    f"{FEATURE_SHA}\trefs/heads/feature/x\n"
    f"{MAIN_SHA}\trefs/heads/main\n"
    f"{PULL_SHA}\trefs/pull/12/head\n"
    f"{TAG_OBJECT_SHA}\trefs/tags/v1.0\n"
    f"{TAG_COMMIT_SHA}\trefs/tags/v1.0^{{}}\n"
    f"{LIGHT_TAG_SHA}\trefs/tags/light\n"
)

REPO = "https://github.com/org/repo.git"
QUOTED = quote(REPO, safe="")


def spec(url: str, ref: str = "main") -> str:
    return f"{quote(url, safe='')}/{ref}"


# --- match_ref ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "sha"),
    [
        ("HEAD", HEAD_SHA),
        ("main", MAIN_SHA),
        ("dev", DEV_SHA),
        ("feature/x", FEATURE_SHA),
        ("v1.0", TAG_COMMIT_SHA),  # the peeled commit, not the annotated tag object
        ("light", LIGHT_TAG_SHA),
        ("refs/heads/dev", DEV_SHA),
        ("refs/tags/v1.0", TAG_COMMIT_SHA),
        ("refs/tags/light", LIGHT_TAG_SHA),
        ("refs/pull/12/head", PULL_SHA),
    ],
)
def test_match_ref_finds(ref, sha):
    assert match_ref(LS_REMOTE, ref) == sha


@pytest.mark.parametrize("ref", ["nope", "x", "feature", "heads/dev", "v1", "HEAD^{}"])
def test_match_ref_missing_is_none(ref):
    assert match_ref(LS_REMOTE, ref) is None


def test_match_ref_tag_object_never_returned_for_annotated_tag():
    assert match_ref(LS_REMOTE, "v1.0") != TAG_OBJECT_SHA


def test_match_ref_tolerates_blank_and_garbage_lines():
    out = "\n\nwarning: redirecting to https://x/\n" + LS_REMOTE + "\n"
    assert match_ref(out, "dev") == DEV_SHA


def test_match_ref_on_empty_output():
    assert match_ref("", "HEAD") is None


# --- GitProvider.parse ----------------------------------------------------------------------


def test_parse_quoted_https_url_and_branch():
    p = GitProvider(f"{QUOTED}/main")
    assert p.repo_url == REPO
    assert p.unresolved_ref == "main"
    assert p.spec == f"{QUOTED}/main"


def test_parse_ref_with_unencoded_slash():
    p = GitProvider(f"{QUOTED}/feature/x")
    assert (p.repo_url, p.unresolved_ref) == (REPO, "feature/x")


def test_parse_ref_with_encoded_slash():
    p = GitProvider(f"{QUOTED}/feature%2Fx")
    assert p.unresolved_ref == "feature/x"


def test_parse_empty_ref_is_head():
    assert GitProvider(f"{QUOTED}/").unresolved_ref == "HEAD"


@pytest.mark.parametrize(
    "url",
    [
        "git://git.example.org:9418/group/repo.git",
        "ssh://git@example.org/group/repo.git",
        "git@github.com:org/repo.git",
    ],
)
def test_parse_accepts_remote_url_kinds(url):
    p = GitProvider(spec(url, "v1.0"))
    assert (p.repo_url, p.unresolved_ref) == (url, "v1.0")


@pytest.mark.parametrize("raw", [QUOTED, "nourl", "/main", ""])
def test_parse_malformed_spec(raw):
    with pytest.raises(PanbinderError) as info:
        GitProvider(raw)
    assert info.value.reason == "malformed_spec"
    assert info.value.status_code == 400
    assert "url-quoted" in info.value.message


@pytest.mark.parametrize(
    "ref", ["a..b", "..", "a%20b", "with space", "-x", "--upload-pack=x", "a~1", "x.lock", "a//b"]
)
def test_parse_bad_ref(ref):
    with pytest.raises(PanbinderError) as info:
        GitProvider(f"{QUOTED}/{ref}")
    assert info.value.reason == "malformed_ref"
    assert info.value.status_code == 400


@pytest.mark.parametrize(
    "url",
    [
        "not a url",
        "ftp://x.org/r",
        "example.org/repo",
        "https://",
        "https:///path",
        "https://exa mple.org/r",
        "https://evil.example\\@127.0.0.1/r",
    ],
)
def test_parse_bad_url(url):
    with pytest.raises(PanbinderError) as info:
        GitProvider(spec(url))
    assert info.value.reason == "bad_url"
    assert info.value.status_code == 400


def test_parse_refuses_file_url_by_default():
    with pytest.raises(PanbinderError) as info:
        GitProvider(spec("file:///srv/repos/x"))
    assert info.value.status_code == 403
    assert info.value.reason == "local_repo"


def test_parse_allows_file_url_when_configured_by_kwarg():
    p = GitProvider(spec("file:///srv/repos/x"), allow_local=True)
    assert p.allow_local is True
    assert p.repo_url == "file:///srv/repos/x"


def test_parse_allows_file_url_when_configured_by_config():
    cfg = Config()
    cfg.GitProvider.allow_local = True
    assert GitProvider(spec("file:///srv/repos/x"), config=cfg).repo_url == "file:///srv/repos/x"


def test_parse_refuses_http_unless_allowed():
    with pytest.raises(PanbinderError) as info:
        GitProvider(spec("http://example.org/repo"))
    assert (info.value.status_code, info.value.reason) == (403, "http_not_allowed")
    cfg = Config()
    cfg.RepoGuard.allow_http = True
    assert GitProvider(spec("http://example.org/repo"), config=cfg).repo_url == "http://example.org/repo"


# --- GitProvider.resolve --------------------------------------------------------------------


@pytest.fixture
def public_dns(monkeypatch):
    """github.com answers with a public address, without asking a name server."""
    monkeypatch.setattr(RepoGuard, "resolver", staticmethod(lambda host, port: ["140.82.121.3"]))


async def test_full_sha_resolves_without_asking_the_remote(monkeypatch):
    async def no_git(*args, **kwargs):
        raise AssertionError(f"git must not run: {args}")

    p = GitProvider(spec(REPO, FEATURE_SHA))
    monkeypatch.setattr(p, "_git", no_git)
    assert await p.resolve() == FEATURE_SHA


def _fake_git(monkeypatch, provider, *, code=0, out="", err=""):
    calls = []

    async def fake(*args, **kwargs):
        calls.append(args)
        return code, out, err

    monkeypatch.setattr(provider, "_git", fake)
    return calls


async def test_resolve_branch_from_ls_remote(monkeypatch, public_dns):
    p = GitProvider(spec(REPO, "feature/x"))
    calls = _fake_git(monkeypatch, p, out=LS_REMOTE)
    assert await p.resolve() == FEATURE_SHA
    assert calls == [("ls-remote", "--", REPO)]


async def test_resolve_unknown_ref_is_404(monkeypatch, public_dns):
    p = GitProvider(spec(REPO, "nope"))
    _fake_git(monkeypatch, p, out=LS_REMOTE)
    with pytest.raises(PanbinderError) as info:
        await p.resolve()
    assert info.value.reason == "unknown_ref"
    assert info.value.status_code == 404
    assert "nope" in info.value.message


async def test_resolve_unreachable_repository_keeps_git_words_in_the_log(monkeypatch, public_dns):
    p = GitProvider(spec(REPO, "main"))
    _fake_git(monkeypatch, p, code=128, err="\nfatal: repository not found\n")
    with pytest.raises(PanbinderError) as info:
        await p.resolve()
    assert info.value.reason == "repo_unreachable"
    assert (
        info.value.message
        == f"Could not read the repository {REPO}; check the URL and that the repository is public."
    )
    assert "fatal: repository not found" in info.value.log_message


@pytest.mark.skipif(shutil.which("git") is None, reason="needs the git command")
async def test_resolve_against_local_repository(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

    git("init", "-q", "-b", "main")
    (repo / "a.txt").write_text("a")
    git("add", "a.txt")
    git("commit", "-q", "-m", "one")
    sha = git("rev-parse", "HEAD")
    url = repo.as_uri()
    assert await GitProvider(spec(url, "main"), allow_local=True).resolve() == sha
    assert await GitProvider(spec(url, ""), allow_local=True).resolve() == sha
    assert await GitProvider(spec(url, sha[:8]), allow_local=True).resolve() == sha


# --- the ref look-up as a way into the network (real git against servers on 127.0.0.1) -------


def loopback_config(**guard) -> Config:
    """The loopback servers below stand in for the facility network: open by setting, as a
    facility opens its internal GitLab."""
    cfg = Config()
    cfg.RepoGuard.allowed_hosts = ["127.0.0.1"]
    cfg.RepoGuard.allow_http = True
    for name, value in guard.items():
        setattr(cfg.RepoGuard, name, value)
    return cfg


async def test_prepare_refuses_loopback_before_git_runs(monkeypatch):
    p = GitProvider(spec("git://127.0.0.1:9418/analysis", "main"))
    calls = _fake_git(monkeypatch, p, out=LS_REMOTE)
    with pytest.raises(PanbinderError) as info:
        await p.prepare(Identity())
    assert (info.value.status_code, info.value.reason) == (403, "blocked_address")
    with pytest.raises(PanbinderError):
        await p.resolve()
    assert calls == []


async def test_full_sha_request_is_refused_too(monkeypatch):
    p = GitProvider(spec("https://169.254.169.254/x.git", FEATURE_SHA))
    with pytest.raises(PanbinderError) as info:
        await p.prepare(Identity())
    assert info.value.reason == "blocked_address"


@pytest.mark.skipif(shutil.which("git") is None, reason="needs the git command")
async def test_redirect_to_another_port_is_not_followed(tmp_path):
    _, sha = bare_repo(tmp_path)
    with LoopbackHTTP(serve=tmp_path) as target, LoopbackHTTP(redirect=target.url()) as redirector:
        # without the guard's options git follows the redirect to the other port
        plain = await asyncio.to_thread(
            subprocess.run, ["git", "ls-remote", redirector.url("/repo.git")], capture_output=True, text=True
        )
        assert plain.returncode == 0 and sha in plain.stdout and target.requests
        target.requests.clear()
        p = GitProvider(spec(redirector.url("/repo.git")), config=loopback_config())
        with pytest.raises(PanbinderError) as info:
            await p.resolve()
        assert info.value.reason == "repo_unreachable"
        assert redirector.requests and target.requests == []
        assert "302" not in info.value.message and str(target.port) not in info.value.message


@pytest.mark.skipif(shutil.which("git") is None, reason="needs the git command")
async def test_closed_silent_non_git_and_http_errors_read_the_same():
    """No answer tells a caller whether a port is closed, open, silent or speaks HTTP."""
    messages, logs = {}, {}
    with (
        LoopbackHTTP(status=404) as missing,
        LoopbackHTTP(status=500) as broken,
        LoopbackHTTP(status=403) as web,
        SilentPort() as silent,
    ):
        urls = {
            "closed": f"git://127.0.0.1:{free_port()}/x",
            "http server on a git url": f"git://127.0.0.1:{web.port}/x",
            "silent": f"git://127.0.0.1:{silent.port}/x",
            "404": missing.url("/x"),
            "500": broken.url("/x"),
            "ssh to a web server": f"ssh://git@127.0.0.1:{web.port}/x",
        }
        for kind, url in urls.items():
            p = GitProvider(spec(url), config=loopback_config(), timeout=1.0)
            with pytest.raises(PanbinderError) as info:
                await p.resolve()
            messages[kind] = (
                info.value.reason,
                info.value.status_code,
                info.value.message.replace(url, "URL"),
            )
            logs[kind] = info.value.log_message
    assert len(set(messages.values())) == 1, messages
    assert "port" not in next(iter(messages.values()))[2]
    assert "404" in logs["404"] or "not found" in logs["404"].lower()


@pytest.mark.skipif(shutil.which("git") is None, reason="needs the git command")
async def test_git_uses_the_checked_address_not_a_second_lookup(monkeypatch, tmp_path):
    """DNS rebinding: the second answer would be internal; git must not ask again."""
    _, sha = bare_repo(tmp_path)
    answers = iter([["127.0.0.1"], ["10.9.9.9"], ["10.9.9.9"]])
    asked = []

    def rebinding(host: str, port: int) -> list[str]:
        asked.append(host)
        return next(answers)

    monkeypatch.setattr(RepoGuard, "resolver", staticmethod(rebinding))
    cfg = loopback_config(allowed_hosts=["*.panbinder.invalid"])
    with LoopbackHTTP(serve=tmp_path) as server:
        url = f"http://rebind.panbinder.invalid:{server.port}/repo.git"  # unresolvable but for the pin
        p = GitProvider(spec(url), config=cfg)
        await p.prepare(Identity())
        assert await p.resolve() == sha
    with running_git(tmp_path) as daemon:
        daemon_url = f"git://rebind.panbinder.invalid:{daemon.port}/repo.git"
        answers = iter([["127.0.0.1"]])
        assert await GitProvider(spec(daemon_url), config=cfg).resolve() == sha
    assert asked == ["rebind.panbinder.invalid"] * 2


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not ipv6_loopback() or shutil.which("git") is None, reason="needs ::1 and git")
async def test_an_ipv6_address_is_pinned_for_https(monkeypatch, tmp_path):
    _, sha = bare_repo(tmp_path)
    monkeypatch.setattr(RepoGuard, "resolver", staticmethod(lambda host, port: ["::1"]))
    cfg = loopback_config(allowed_hosts=["*.panbinder.invalid"])
    with LoopbackHTTP(serve=tmp_path, host="::1") as server:
        url = f"http://v6.panbinder.invalid:{server.port}/repo.git"
        assert await GitProvider(spec(url), config=cfg).resolve() == sha
        assert server.requests


async def test_resolutions_beyond_the_limit_are_busy(monkeypatch, public_dns):
    monkeypatch.setattr(RepoGuard, "in_flight", 16)
    p = GitProvider(spec(REPO, "main"))
    calls = _fake_git(monkeypatch, p, out=LS_REMOTE)
    with pytest.raises(PanbinderError) as info:
        await p.resolve()
    assert (info.value.status_code, info.value.reason) == (503, "busy")
    assert calls == []


# --- plug-in lookup -------------------------------------------------------------------------


def test_get_provider_class_git():
    cls = get_provider_class("git")
    assert cls is GitProvider
    assert issubclass(cls, RepoProvider)
    assert cls.name == "git"


def test_get_provider_class_unknown_lists_known():
    with pytest.raises(PanbinderError) as info:
        get_provider_class("nosuchprovider")
    assert info.value.status_code == 404
    assert info.value.reason == "unknown_provider"
    assert "nosuchprovider" in info.value.message
    assert "git" in info.value.message
