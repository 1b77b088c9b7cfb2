"""Where git may connect: a repository URL is checked after DNS resolution and pinned to that address.

Why: ``/build`` makes the service open connections to a URL anyone can give. Unguarded, git
fetched from loopback, the docker bridge and link-local metadata addresses, followed HTTP
redirects to other hosts and ports, and its error lines came back to the caller, which turned
the service into a port scanner of the facility's network.

The guard (1) parses the URL into a canonical form that git and curl cannot read differently
(no query, fragment, backslash, password or odd host characters), (2) resolves the host once,
in a thread with a timeout, and refuses it when any address lies in ``blocked_networks`` (IPv4
embedded in IPv6 forms included) unless the host name is in ``allowed_hosts``, and (3) returns
the git options that make git connect to exactly the checked address (curl's resolve list for
https, the address itself in a git:// URL, ssh's HostName), so a second DNS answer (rebinding)
cannot move the connection. The same guard runs before ``git ls-remote`` and before the build's
clone.
"""

from __future__ import annotations

import asyncio
import fnmatch
import ipaddress
import re
import socket
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar
from urllib.parse import urlsplit

from traitlets import Bool, Float, Int, List, TraitError, Unicode, validate
from traitlets.config import LoggingConfigurable

from panbinder.docker_engine import Docker
from panbinder.errors import PanbinderError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Loopback, private (RFC 1918, CGNAT), link-local, unique-local, unspecified, multicast,
# documentation/benchmark, reserved and broadcast; IPv6 forms that embed IPv4 are unwrapped.
DEFAULT_BLOCKED = (
    "0.0.0.0/8 10.0.0.0/8 100.64.0.0/10 127.0.0.0/8 169.254.0.0/16 172.16.0.0/12 192.0.0.0/24 192.0.2.0/24 "
    "192.88.99.0/24 192.168.0.0/16 198.18.0.0/15 198.51.100.0/24 203.0.113.0/24 224.0.0.0/4 240.0.0.0/4 "
    "::/96 ::1/128 ::ffff:0:0/96 64:ff9b::/96 64:ff9b:1::/48 100::/64 2001::/32 2001:db8::/32 "
    "2002::/16 fc00::/7 fe80::/10 fec0::/10 ff00::/8"
).split()
DEFAULT_PORTS = {"https": 443, "http": 80, "git": 9418, "ssh": 22}
HOST_RE = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*\.?$")
USER_RE = re.compile(r"^[A-Za-z0-9._-]+$")
BAD_CHARS_RE = re.compile(r"[\x00-\x20\x7f\\?#\"'<>^`{|}]")
SCP_RE = re.compile(r"^(?P<user>[^@/:]+)@(?P<host>\[[^\]/]+\]|[^:/\[\]]+):(?P<path>[^/].*)$")
UNREACHABLE = "Could not read the repository {url}; check the URL and that the repository is public."

_dns_pool: ThreadPoolExecutor | None = None


def _dns(threads: int) -> ThreadPoolExecutor:
    """Look-ups get their own few threads: a hung resolver cannot take the service's executor.
    The first look-up sizes the pool; it is shared by every guard of the process."""
    global _dns_pool
    if _dns_pool is None:
        _dns_pool = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="panbinder-dns")
    return _dns_pool


def bad_url(url: str, why: str) -> PanbinderError:
    return PanbinderError(
        f"'{url}' is not a valid repository URL ({why}); give an https://, git:// or ssh:// URL.",
        reason="bad_url",
    )


def unreachable(url: str, log_message: str) -> PanbinderError:
    """The one message for every failure to reach a repository (closed port, non-git port, HTTP
    error, timeout, unknown host), so the answer says nothing about the network behind it."""
    return PanbinderError(UNREACHABLE.format(url=url), reason="repo_unreachable", log_message=log_message)


@dataclass(frozen=True)
class RepoLocation:
    """A repository URL taken apart: scheme, host (lower case, IPv6 without brackets), port, path."""

    scheme: str
    host: str
    port: int
    path: str
    user: str = ""
    scp: bool = False

    def url(self, host: str = "") -> str:
        """The canonical URL git is given, with ``host`` (an address) in place of the name."""
        if self.scheme == "file":
            return f"file://{self.path}"
        name = host or self.host
        name = f"[{name}]" if ":" in name else name
        if self.scp:
            return f"{self.user}@{name}:{self.path}"
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port != DEFAULT_PORTS[self.scheme] else ""
        return f"{self.scheme}://{user}{name}{port}{self.path}"


def _host(raw: str, url: str) -> str:
    host = raw.lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
            if "%" in host:
                raise ValueError("zone index")
        except ValueError:
            raise bad_url(url, "the host is not an IPv6 address") from None
        return host
    if not host:
        raise bad_url(url, "no host name")
    if not HOST_RE.match(host) or host.startswith("-"):
        raise bad_url(url, "the host name has characters a host name cannot have")
    return host


def parse_location(url: str) -> RepoLocation:
    """Take ``url`` apart or raise PanbinderError (400): https, http, git, ssh, scp-like or file."""
    if BAD_CHARS_RE.search(url) or url.startswith("-"):
        raise bad_url(url, "spaces, quotes, backslashes, '?' and '#' are not allowed")
    m = SCP_RE.match(url)
    if m and "://" not in url:
        if not USER_RE.match(m["user"]):
            raise bad_url(url, "the user name has characters it cannot have")
        return RepoLocation("ssh", _host(m["host"], url), 22, m["path"], m["user"], scp=True)
    scheme, sep, _ = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in (*DEFAULT_PORTS, "file"):
        raise PanbinderError(
            f"'{url}' is not a repository URL this service understands; "
            "give an https://, git:// or ssh:// URL (url-quoted in the path).",
            reason="bad_url",
        )
    if scheme == "file":
        return RepoLocation("file", "", 0, url[len("file://") :])
    try:
        parts = urlsplit(url)
    except ValueError as e:
        raise bad_url(url, str(e)) from None
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if at and (":" in userinfo or "@" in userinfo or not USER_RE.match(userinfo) or scheme == "git"):
        raise bad_url(url, "give no password or other user information in the URL")
    if hostport.startswith("[") and "]" not in hostport:
        raise bad_url(url, "unclosed IPv6 bracket")
    has_port = hostport.rfind(":") > hostport.rfind("]")  # the colons of [::1] are not a port
    host_part, port_part = hostport.rsplit(":", 1) if has_port else (hostport, "")
    if port_part and not (port_part.isdigit() and 0 < int(port_part) < 65536):
        raise bad_url(url, "the port is not a number from 1 to 65535")
    path = parts.path
    if not path.startswith("/") or path == "/":
        raise bad_url(url, "no repository path after the host")
    port = int(port_part) if port_part else DEFAULT_PORTS[scheme]
    return RepoLocation(scheme, _host(host_part, url), port, path, userinfo)


def embedded_ipv4(addr: IPAddress) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address carries (mapped, compatible, 6to4, NAT64, Teredo)."""
    if addr.version == 4:
        return []
    found = [addr.ipv4_mapped, addr.sixtofour]
    if addr.teredo:
        found.extend(addr.teredo)
    low = int(addr) & 0xFFFFFFFF
    if int(addr) >> 32 == 0 or addr in ipaddress.ip_network("64:ff9b::/96"):
        found.append(ipaddress.IPv4Address(low))
    return [a for a in found if a is not None]


def blocked_by(addr: IPAddress, networks: list[Network]) -> Network | None:
    """The first network of ``networks`` holding ``addr`` or an IPv4 address embedded in it."""
    for candidate in (addr, *embedded_ipv4(addr)):
        for net in networks:
            if candidate.version == net.version and candidate in net:
                return net
    return None


def getaddrinfo_addresses(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (numeric forms such as 0x7f000001 included)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]).split("%", 1)[0] for info in infos))


@lru_cache(maxsize=1)
def container_networks() -> tuple[str, ...]:
    """Subnets of the local container engine's networks (read once; none when it cannot be asked)."""
    try:
        docker = Docker(timeout=5)
        try:
            return docker.network_subnets()
        finally:
            docker.close()
    except Exception:  # no engine here: the default list still covers docker's default pools
        return ()


@dataclass(frozen=True)
class PinnedRepo:
    """What git is given: the URL (git:// names the checked address) and ``-c`` settings that keep
    git to that address, to the allowed transports and away from redirects."""

    url: str
    address: str
    config: tuple[str, ...]

    def git(self, *args: str) -> list[str]:
        """A git command line with this repository's settings."""
        options = [part for item in self.config for part in ("-c", item)]
        return ["git", *options, *args]


class RepoGuard(LoggingConfigurable):
    """Checks repository URLs before git connects anywhere, and pins the address it checked."""

    allowed_hosts = List(
        Unicode(),
        help="Host names (shell patterns such as '*.gitlab.example.org', or an address exactly as "
        "written in the URL) that may be reached even when they resolve to a blocked address, for "
        "example the facility's internal GitLab. The resolved address is still pinned.",
    ).tag(config=True)
    blocked_networks = List(
        Unicode(),
        DEFAULT_BLOCKED,
        help="Networks (CIDR) git never connects to: loopback, private, link-local, unique-local, "
        "multicast, reserved. IPv4 addresses inside IPv6 forms (::ffff:a.b.c.d, 6to4, NAT64) count.",
    ).tag(config=True)
    block_container_networks = Bool(
        True, help="Also refuse the subnets of the local docker engine's networks (read once)."
    ).tag(config=True)
    allow_http = Bool(
        False, help="Allow plain http:// repository URLs (unencrypted; off: https, git and ssh only)."
    ).tag(config=True)
    resolve_timeout = Float(5.0, help="Seconds allowed for resolving a repository's host name.").tag(
        config=True
    )
    resolver_threads = Int(
        8,
        help="Threads that resolve repository host names, apart from the service's other blocking "
        "calls (a hung resolver holds one; read at the first look-up).",
    ).tag(config=True)
    max_concurrent = Int(
        16,
        help="Repository look-ups (DNS and git ls-remote) running at once; a request beyond that "
        "gets 503 'busy, try again'.",
    ).tag(config=True)
    low_speed_time = Int(
        10, help="https: git gives up after this many seconds below 1 KB/s (connecting included)."
    ).tag(config=True)
    connect_timeout = Int(10, help="ssh: seconds allowed for connecting.").tag(config=True)
    answer_timeout = Float(
        15.0,
        help="Seconds a remote has to list its refs before a build's clone starts (git:// has no "
        "connect timeout of its own: a silent port would hold the build until its time limit).",
    ).tag(config=True)

    in_flight: ClassVar[int] = 0  # look-ups running in this process, shared by every guard
    resolver: Callable[[str, int], list[str]] = staticmethod(getaddrinfo_addresses)

    @validate("blocked_networks")
    def _valid_networks(self, proposal) -> list[str]:
        for cidr in proposal["value"]:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError as e:
                raise TraitError(f"RepoGuard.blocked_networks: {e}") from None
        return proposal["value"]

    def networks(self) -> list[Network]:
        extra = container_networks() if self.block_container_networks else ()
        return [ipaddress.ip_network(c, strict=False) for c in (*self.blocked_networks, *extra)]

    def check_scheme(self, loc: RepoLocation, *, allow_file: bool, url: str) -> None:
        if loc.scheme == "file" and not allow_file:
            raise PanbinderError(
                "Local repositories (file://) are not allowed on this service; "
                "give an https, git or ssh URL.",
                reason="local_repo",
                status_code=403,
            )
        if loc.scheme == "http" and not self.allow_http:
            raise PanbinderError(
                f"Plain http:// repository URLs are not allowed on this service; use https:// "
                f"instead of '{url}'.",
                reason="http_not_allowed",
                status_code=403,
            )

    def location(self, url: str, *, allow_file: bool = False) -> RepoLocation:
        """Parse and check the transport; no network."""
        loc = parse_location(url)
        self.check_scheme(loc, allow_file=allow_file, url=url)
        return loc

    def host_allowed(self, host: str) -> bool:
        return any(fnmatch.fnmatchcase(host, pattern.lower().strip("[]")) for pattern in self.allowed_hosts)

    def choose(self, url: str, loc: RepoLocation, addresses: list[str]) -> str:
        """The address to pin: every address must pass unless the host is allowed by name."""
        if not addresses:
            raise unreachable(url, f"{loc.host} resolved to no address")
        if not self.host_allowed(loc.host):
            networks = self.networks()
            for text in addresses:
                net = blocked_by(ipaddress.ip_address(text), networks)
                if net is not None:
                    raise PanbinderError(
                        f"The repository {url} is on a private, local or internal network address "
                        "this service does not connect to; give a public repository URL.",
                        reason="blocked_address",
                        log_message=f"refused {url}: {loc.host} resolves to {text} in {net}",
                        status_code=403,
                    )
        return addresses[0]

    def pinned(self, loc: RepoLocation, address: str) -> PinnedRepo:
        schemes = ["file"] if loc.scheme == "file" else [loc.scheme]
        ssh = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={self.connect_timeout}"]
        if loc.scheme == "ssh":
            ssh += ["-o", f"HostName={address}", "-o", f"HostKeyAlias={loc.host}"]
        config = [
            "protocol.allow=never",
            *(f"protocol.{s}.allow=always" for s in schemes),
            "http.followRedirects=false",
            "http.lowSpeedLimit=1000",
            f"http.lowSpeedTime={self.low_speed_time}",
            "credential.helper=",
            f"core.sshCommand={' '.join(ssh)}",
        ]
        if loc.scheme in ("https", "http") and loc.host != address:
            config.append(f"http.curloptResolve={loc.host}:{loc.port}:{_bracket(address)}")
        url = loc.url(address) if loc.scheme == "git" else loc.url()
        return PinnedRepo(url=url, address=address, config=tuple(config))

    async def pin(self, url: str, *, allow_file: bool = False) -> PinnedRepo:
        """Parse, resolve (in a thread, with a timeout), check and pin ``url``."""
        loc = self.location(url, allow_file=allow_file)
        if loc.scheme == "file":
            return self.pinned(loc, "")
        future = _dns(self.resolver_threads).submit(self.resolver, loc.host, loc.port)
        try:
            addresses = await asyncio.wait_for(asyncio.wrap_future(future), self.resolve_timeout)
        except (OSError, UnicodeError, TimeoutError) as e:
            raise unreachable(url, f"resolving {loc.host}: {e!r}") from None
        return self.pinned(loc, self.choose(url, loc, addresses))

    def pin_blocking(self, url: str, *, allow_file: bool = False) -> PinnedRepo:
        """``pin`` for worker threads (the build's clone)."""
        loc = self.location(url, allow_file=allow_file)
        if loc.scheme == "file":
            return self.pinned(loc, "")
        return self.pinned(loc, self.address_blocking(url, loc))

    def address_blocking(self, url: str, loc: RepoLocation) -> str:
        """The checked address to connect to for ``loc`` (resolved in a DNS thread with the
        timeout), for callers that open the connection themselves (archive downloads)."""
        future = _dns(self.resolver_threads).submit(self.resolver, loc.host, loc.port)
        try:
            addresses = future.result(self.resolve_timeout)
        except (OSError, UnicodeError, FutureTimeout) as e:
            future.cancel()
            raise unreachable(url, f"resolving {loc.host}: {e!r}") from None
        return self.choose(url, loc, addresses)

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one of ``max_concurrent`` look-up places, or refuse with 503 at once."""
        if RepoGuard.in_flight >= self.max_concurrent:
            raise PanbinderError(
                "This service is busy looking up other repositories; try again in a minute.",
                reason="busy",
                log_message=f"{RepoGuard.in_flight} repository look-ups running (max_concurrent)",
                status_code=503,
            )
        RepoGuard.in_flight += 1
        try:
            yield
        finally:
            RepoGuard.in_flight -= 1


def _bracket(address: str) -> str:
    return f"[{address}]" if ":" in address else address


__all__ = ["PinnedRepo", "RepoGuard", "RepoLocation", "parse_location", "unreachable"]
