"""The repository URL guard (builder/url_guard.py): parsing, refusals after DNS, pinning, limits.

Every refusal here must happen before git runs or a socket opens: the tests make both fail loudly.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import subprocess
import time

import pytest
from traitlets import TraitError
from traitlets.config import Config

from panbinder.builder import url_guard
from panbinder.builder.url_guard import RepoGuard, blocked_by, parse_location
from panbinder.errors import PanbinderError

ATTACKS = [
    "https://169.254.169.254/latest/meta-data.git",
    "git://10.0.0.1/repo",
    "https://[::1]/repo.git",
    "https://0x7f000001/repo.git",
    "git://2130706433/repo",
    "git://017700000001/repo",
    "git://127.1/repo",
    "https://localhost/repo.git",
    "https://[::ffff:127.0.0.1]/repo.git",
    "https://[::ffff:7f00:1]/repo.git",
    "https://[::127.0.0.1]/repo.git",
    "https://[2002:7f00:1::]/repo.git",
    "https://[64:ff9b::a9fe:a9fe]/repo.git",
    "https://[fe80::1]/repo.git",
    "https://[fd00::1]/repo.git",
    "git://172.17.0.1/repo",
    "git://192.168.1.1/repo",
    "git://100.64.0.1/repo",
    "git://0.0.0.0/repo",
    "git://224.0.0.1/repo",
    "git://255.255.255.255/repo",
    "git@127.0.0.1:org/repo.git",
    "ssh://git@[::1]:2222/repo.git",
]


@pytest.fixture
def no_connections(monkeypatch):
    """Fail the test if anything opens a socket or starts a process."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"a connection or process was attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)
    monkeypatch.setattr(asyncio, "create_subprocess_exec", refuse)


def fake_dns(monkeypatch, answers: dict[str, list[str]]) -> list[str]:
    """Answer look-ups from ``answers`` and record the names asked for."""
    asked: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        asked.append(host)
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return answers[host]

    monkeypatch.setattr(RepoGuard, "resolver", staticmethod(resolver))
    return asked


# --- parsing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "scheme", "host", "port", "canonical"),
    [
        ("https://GitHub.com/org/repo.git", "https", "github.com", 443, "https://github.com/org/repo.git"),
        ("git://git.example.org:9419/r", "git", "git.example.org", 9419, "git://git.example.org:9419/r"),
        ("ssh://git@example.org/r.git", "ssh", "example.org", 22, "ssh://git@example.org/r.git"),
        ("git@example.org:org/r.git", "ssh", "example.org", 22, "git@example.org:org/r.git"),
        ("https://[2001:db8::1]:8443/r", "https", "2001:db8::1", 8443, "https://[2001:db8::1]:8443/r"),
    ],
)
def test_parse_location(url, scheme, host, port, canonical):
    loc = parse_location(url)
    assert (loc.scheme, loc.host, loc.port) == (scheme, host, port)
    assert loc.url() == canonical


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example\\@127.0.0.1/r",  # a backslash: parsers disagree on the host
        "https://127.0.0.1#@evil.example/r",
        "https://evil.example?@127.0.0.1/r",
        "https://user:password@example.org/r",
        "https://a@b@example.org/r",
        "git://user@example.org/r",
        "https://exa mple.org/r",
        "https://example.org:0/r",
        "https://example.org:99999/r",
        "https://example.org:x/r",
        "https://[::1/r",
        "https://[not-v6]/r",
        "https://[fe80::1%25eth0]/r",
        "https://exa%6dple.org/r",
        "https://-oProxyCommand=x/r",
        "https://example.org",
        "https://example.org/",
        "https:///path",
        "ext::sh -c touch% /tmp/x",
        "ftp://example.org/r",
    ],
)
def test_parse_refuses_ambiguous_or_bad_urls(url):
    with pytest.raises(PanbinderError) as info:
        parse_location(url)
    assert info.value.status_code == 400
    assert info.value.reason == "bad_url"


def test_http_and_file_are_refused_by_default_and_allowed_by_setting():
    guard = RepoGuard()
    with pytest.raises(PanbinderError) as info:
        guard.location("http://example.org/r")
    assert (info.value.status_code, info.value.reason) == (403, "http_not_allowed")
    with pytest.raises(PanbinderError) as info:
        guard.location("file:///srv/repo")
    assert info.value.reason == "local_repo"
    cfg = Config()
    cfg.RepoGuard.allow_http = True
    assert RepoGuard(config=cfg).location("http://example.org/r").scheme == "http"
    assert guard.location("file:///srv/repo", allow_file=True).scheme == "file"


# --- refusals after resolution, before any connection ----------------------------------------


@pytest.mark.parametrize("url", ATTACKS)
async def test_default_guard_refuses_internal_addresses_before_connecting(url, no_connections):
    with pytest.raises(PanbinderError) as info:
        await RepoGuard().pin(url)
    assert info.value.status_code == 403
    assert info.value.reason == "blocked_address"
    assert "public repository URL" in info.value.message


@pytest.mark.parametrize("url", ATTACKS[:6])
def test_blocking_pin_refuses_the_same(url, no_connections):
    with pytest.raises(PanbinderError) as info:
        RepoGuard().pin_blocking(url)
    assert info.value.reason == "blocked_address"


async def test_every_resolved_address_is_checked(monkeypatch, no_connections):
    fake_dns(monkeypatch, {"mixed.example.org": ["93.184.216.34", "10.1.2.3"]})
    with pytest.raises(PanbinderError) as info:
        await RepoGuard().pin("https://mixed.example.org/r.git")
    assert "10.1.2.3" in info.value.log_message
    assert "10.1.2.3" not in info.value.message


async def test_unresolvable_host_is_the_generic_failure(no_connections):
    with pytest.raises(PanbinderError) as info:
        await RepoGuard().pin("https://no-such-host.panbinder.invalid/r.git")
    assert info.value.reason == "repo_unreachable"
    assert info.value.message.startswith("Could not read the repository")


async def test_default_configuration_refuses_the_test_git_daemon(no_connections):
    with pytest.raises(PanbinderError) as info:
        await RepoGuard().pin("git://127.0.0.1:9418/analysis")
    assert info.value.reason == "blocked_address"


async def test_resolution_is_bounded_by_its_timeout(monkeypatch):
    def slow(host: str, port: int) -> list[str]:
        time.sleep(2)
        return ["93.184.216.34"]

    monkeypatch.setattr(RepoGuard, "resolver", staticmethod(slow))
    start = time.monotonic()
    with pytest.raises(PanbinderError) as info:
        await RepoGuard(resolve_timeout=0.2).pin("https://slow.example.org/r.git")
    assert time.monotonic() - start < 1.5
    assert info.value.reason == "repo_unreachable"


@pytest.mark.parametrize(
    ("address", "blocked"),
    [
        ("::ffff:10.0.0.1", True),
        ("::ffff:93.184.216.34", True),  # mapped forms are refused outright
        ("2002:a9fe:a9fe::1", True),
        ("64:ff9b::7f00:1", True),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", True),  # Teredo
        ("2606:4700::1111", False),
        ("93.184.216.34", False),
    ],
)
def test_blocked_by_unwraps_ipv4_in_ipv6(address, blocked):
    networks = RepoGuard(block_container_networks=False).networks()
    assert (blocked_by(ipaddress.ip_address(address), networks) is not None) is blocked


def test_container_networks_are_blocked(monkeypatch):
    monkeypatch.setattr(url_guard, "container_networks", lambda: ("198.19.77.0/24",))
    guard = RepoGuard(blocked_networks=[])
    assert blocked_by(ipaddress.ip_address("198.19.77.5"), guard.networks()) is not None
    assert blocked_by(ipaddress.ip_address("198.19.78.5"), guard.networks()) is None


def test_bad_blocked_network_is_a_config_error():
    with pytest.raises(TraitError, match="blocked_networks"):
        RepoGuard(blocked_networks=["10.0.0.0/33"])


# --- allowed hosts and pinning ---------------------------------------------------------------


async def test_allowed_hosts_open_a_facility_server_and_still_pin(monkeypatch, no_connections):
    asked = fake_dns(monkeypatch, {"gitlab.internal.example.org": ["10.20.30.40"]})
    guard = RepoGuard(allowed_hosts=["*.internal.example.org"])
    pinned = await guard.pin("https://gitlab.internal.example.org/group/r.git")
    assert pinned.address == "10.20.30.40"
    assert "http.curloptResolve=gitlab.internal.example.org:443:10.20.30.40" in pinned.config
    assert asked == ["gitlab.internal.example.org"]
    with pytest.raises(PanbinderError):  # a name outside the pattern is not opened
        await guard.pin("https://internal.example.org.evil.example/r.git")


async def test_allowed_hosts_match_names_not_numeric_forms(no_connections):
    guard = RepoGuard(allowed_hosts=["127.0.0.1"])
    assert (await guard.pin("git://127.0.0.1:9418/r")).url == "git://127.0.0.1/r"
    with pytest.raises(PanbinderError):
        await guard.pin("git://0x7f000001:9418/r")


async def test_pinned_git_options(monkeypatch, no_connections):
    fake_dns(monkeypatch, {"git.example.org": ["93.184.216.34"], "v6.example.org": ["2606:4700::1111"]})
    guard = RepoGuard()
    https = await guard.pin("https://git.example.org/r.git")
    assert https.url == "https://git.example.org/r.git"
    command = https.git("ls-remote", "--", https.url)
    for option in (
        "protocol.allow=never",
        "protocol.https.allow=always",
        "http.followRedirects=false",
        "http.curloptResolve=git.example.org:443:93.184.216.34",
    ):
        assert command[command.index(option) - 1] == "-c"
    assert "protocol.git.allow=always" not in https.config
    daemon = await guard.pin("git://git.example.org:9419/r")
    assert daemon.url == "git://93.184.216.34:9419/r"  # the checked address, not the name
    ssh = await guard.pin("git@v6.example.org:org/r.git")
    assert "-o HostName=2606:4700::1111 -o HostKeyAlias=v6.example.org" in " ".join(ssh.config)
    v6 = await guard.pin("https://v6.example.org/r.git")
    assert "http.curloptResolve=v6.example.org:443:[2606:4700::1111]" in v6.config


# --- bounded concurrency ---------------------------------------------------------------------


def test_slots_are_bounded_and_busy_is_503():
    guard = RepoGuard(max_concurrent=2)
    with guard.slot(), guard.slot():
        with pytest.raises(PanbinderError) as info, guard.slot():
            pass
        assert info.value.status_code == 503
        assert "try again" in info.value.message
    with guard.slot():  # released again
        assert RepoGuard.in_flight == 1
    assert RepoGuard.in_flight == 0


def test_settings_are_listed_for_the_config_file():
    from panbinder.components import COMPONENTS

    assert RepoGuard in COMPONENTS
    section = RepoGuard.class_config_section()
    for name in ("allowed_hosts", "blocked_networks", "allow_http", "resolve_timeout", "max_concurrent"):
        assert f"c.RepoGuard.{name}" in section
