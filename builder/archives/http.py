"""HTTP to archives (Zenodo, Figshare, Dataverse, Software Heritage) under the URL guard's policy.

Why not repo2docker's content providers as they are: they fetch with ``requests`` wherever a
record or a redirect points, with no size bound, so a record could make the service download
from the facility's internal network or fill the build disk. Here every URL, each redirect's
too, is resolved once and checked by ``RepoGuard`` (blocked networks, allowed hosts), the
connection goes to exactly that address (TLS still checks the host name), and downloads stop at
``ArchiveDownloads.max_download_size``. Replies of the archive stay in the operator's log; users
see one message per failure kind. Everything here blocks: providers call it through
``run_blocking``, builds in their worker thread.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import urljoin, urlsplit

from traitlets import Bool, Float, Int
from traitlets.config import LoggingConfigurable

from panbinder.errors import PanbinderError

from ..checkout import human
from ..url_guard import DEFAULT_PORTS, RepoGuard, RepoLocation, _host

CHUNK = 1 << 16
REDIRECTS = (301, 302, 303, 307, 308)
UNREACHABLE = "Could not read {what} from its archive; check the identifier, or try again later."


def unreachable(what: str, log_message: str) -> PanbinderError:
    """The archive could not be read (no answer, a broken answer, too many redirects): 502."""
    return PanbinderError(
        UNREACHABLE.format(what=what), reason="archive_unreachable", log_message=log_message, status_code=502
    )


class ArchiveHTTPError(PanbinderError):
    """An archive answered with an HTTP error status (``status``: 404 for an unknown record)."""

    def __init__(self, message: str, *, status: int, log_message: str) -> None:
        super().__init__(message, reason="archive_unreachable", log_message=log_message, status_code=502)
        self.status = status


def too_large(size: int, limit: int, what: str) -> PanbinderError:
    return PanbinderError(
        f"{what} is larger than this service's limit of {human(limit)} for archive downloads "
        f"(at least {human(size)}). Put large data in a dataset linked to the publication, or ask "
        "the operators to raise ArchiveDownloads.max_download_size.",
        reason="archive_too_large",
        log_message=f"{what}: {size} bytes over the limit of {limit}",
        status_code=413,
    )


@dataclass(frozen=True)
class Budget:
    """Bytes a fetch may still download; shared by the files of one record."""

    limit: int
    used: list[int]

    @classmethod
    def of(cls, limit: int) -> Budget:
        return cls(limit, [0])

    def take(self, n: int, what: str) -> None:
        self.used[0] += n
        if self.limit > 0 and self.used[0] > self.limit:
            raise too_large(self.used[0], self.limit, what)


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


class ArchiveDownloads(LoggingConfigurable):
    """How archive records and files are fetched: limits, timeouts, and the guard's policy."""

    max_download_size = Int(
        512 * 1024**2,
        help="Largest total size in bytes of one archive record's files (declared or downloaded); a "
        "larger record fails with 413 before or during the download (0: no limit). Unpacked "
        "archives are bounded by Builder.max_repo_size.",
    ).tag(config=True)
    timeout = Float(30.0, help="Seconds allowed for connecting to an archive and for each read.").tag(
        config=True
    )
    max_redirects = Int(5, help="Redirects followed per request (each target is checked again).").tag(
        config=True
    )
    allow_http = Bool(
        False,
        help="Allow plain http:// archive URLs (tests, internal mirrors). Which hosts and networks "
        "may be reached is RepoGuard's policy (allowed_hosts, blocked_networks), as for git.",
    ).tag(config=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.guard = RepoGuard(parent=self, log=self.log)

    def location(self, url: str) -> RepoLocation:
        """Parse ``url`` (https, or http when allowed) without any network; 400 otherwise."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            parts, port = None, None
        scheme = parts.scheme.lower() if parts else ""
        if parts is None or scheme not in ("https", "http") or parts.username or parts.password:
            raise PanbinderError(
                f"'{url}' is not an archive URL this service can fetch; it needs an https:// URL.",
                reason="bad_url",
            )
        if scheme == "http" and not self.allow_http:
            raise PanbinderError(
                f"Plain http:// archive URLs are not allowed on this service; use https:// instead of '{url}'.",
                reason="http_not_allowed",
                status_code=403,
            )
        host = _host(parts.hostname or "", url)
        return RepoLocation(scheme, host, port or DEFAULT_PORTS[scheme], parts.path or "/")

    def _connect(self, url: str, what: str) -> tuple[http.client.HTTPConnection, str]:
        loc = self.location(url)
        try:
            address = self.guard.address_blocking(url, loc)
        except PanbinderError as e:
            if e.reason != "blocked_address":
                raise
            raise PanbinderError(  # the archive's URLs are not the user's to see
                f"{what} is on a private, local or internal network address this service does not "
                "connect to; ask the operators (RepoGuard.allowed_hosts) if it should.",
                reason="blocked_address",
                log_message=e.log_message,
                status_code=403,
            ) from None
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if loc.scheme == "https":
            conn: http.client.HTTPConnection = _PinnedHTTPS(
                loc.host, loc.port, address, self.timeout, ssl.create_default_context()
            )
        else:
            conn = _PinnedHTTP(loc.host, loc.port, address, self.timeout)
        return conn, target

    def open(self, url: str, what: str, *, method: str = "GET") -> http.client.HTTPResponse:
        """The response to ``url`` after redirects (each one checked); raises on an error status."""
        for _ in range(self.max_redirects + 1):
            conn, target = self._connect(url, what)
            try:
                conn.request(method, target, headers={"Accept": "application/json, */*"})
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                raise unreachable(what, f"{method} {url}: {e!r}") from None
            if resp.status in REDIRECTS and resp.getheader("Location"):
                url = urljoin(url, resp.getheader("Location", ""))
                method = "GET" if resp.status == 303 else method
                conn.close()
                continue
            if resp.status >= 400:
                body = resp.read(2000).decode(errors="replace")
                conn.close()
                raise ArchiveHTTPError(
                    UNREACHABLE.format(what=what),
                    status=resp.status,
                    log_message=f"{method} {url}: HTTP {resp.status}: {body}",
                )
            return resp
        raise unreachable(what, f"{url}: more than {self.max_redirects} redirects")

    def json(self, url: str, what: str, *, method: str = "GET") -> Any:
        """The JSON document at ``url`` (at most 16 MiB)."""
        resp = self.open(url, what, method=method)
        try:
            data = resp.read(16 * 1024**2 + 1)
        except (OSError, http.client.HTTPException) as e:
            raise unreachable(what, f"{url}: {e!r}") from None
        finally:
            resp.close()
        try:
            return json.loads(data)
        except ValueError:
            raise unreachable(what, f"{url}: not JSON: {data[:200]!r}") from None

    def download(
        self,
        url: str,
        out: BinaryIO,
        *,
        what: str,
        budget: Budget,
        md5: str = "",
        check: Callable[[], None] = lambda: None,
    ) -> int:
        """Copy ``url`` into ``out`` within ``budget``; an ``md5`` given by the record is verified."""
        resp = self.open(url, what)
        digest = hashlib.md5(usedforsecurity=False)
        total = 0
        try:
            while chunk := resp.read(CHUNK):
                budget.take(len(chunk), what)
                digest.update(chunk)
                out.write(chunk)
                total += len(chunk)
                check()
        except (OSError, http.client.HTTPException) as e:
            raise unreachable(what, f"{url}: {e!r}") from None
        finally:
            resp.close()
        if md5 and digest.hexdigest() != md5.lower():
            raise PanbinderError(
                f"{what} did not match the checksum its record gives; try again later, or tell the "
                "record's authors if it keeps failing.",
                reason="archive_checksum",
                log_message=f"{url}: md5 {digest.hexdigest()} != {md5}",
                status_code=502,
            )
        return total


__all__ = ["ArchiveDownloads", "ArchiveHTTPError", "Budget", "too_large"]
