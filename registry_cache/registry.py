"""The one client of the registry's HTTP API (Docker/OCI distribution v2).

Every registry call goes through ``Registry``: the image look-up of each launch, ``/health``,
retention's listing and deleting (``retention.RegistryAdmin``), and the blob-for-blob copies of
archive and restore (``transfer.RegistryClient``). It sends the registry's credentials (settings,
else docker's ``config.json``) and speaks the token protocol (``credentials.py``). Two transports
share that: ``fetch`` (tornado, for the event loop) and ``request`` (``http.client``, blocking,
streaming blobs in chunks, for archive threads); a token is fetched in a blocking call, through
the executor from async code, once per scope until it expires.
"""

from __future__ import annotations

import http.client
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin, urlsplit

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest, HTTPResponse
from traitlets import Float, Unicode, default
from traitlets.config import LoggingConfigurable

from panbinder.errors import PanbinderError
from panbinder.executor import run_blocking

from .credentials import (
    CredentialError,
    TokenCache,
    basic,
    default_docker_config,
    docker_config_auth,
    fetch_token,
    parse_challenge,
    request_scope,
)
from .naming import ImageRef

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)
CHUNK = 1024 * 1024
REDIRECTS = (301, 302, 303, 307, 308)


class Registry(LoggingConfigurable):
    url = Unicode(
        "http://127.0.0.1:5000",
        help="Base URL of the registry that caches built images (distribution v2 API).",
    ).tag(config=True)
    username = Unicode(
        "", help="Registry user name (empty: the registry's entry in docker_config, else none)."
    ).tag(config=True)
    password = Unicode("", help="Registry password or token.").tag(config=True)
    docker_config = Unicode(
        help="docker's config.json whose `auths` entry for the registry's host gives the credentials "
        "when username is empty (default: $DOCKER_CONFIG/config.json, else ~/.docker/config.json; "
        "credential helpers are not supported).",
    ).tag(config=True)
    timeout = Float(10.0, help="Seconds before a registry request is abandoned.").tag(config=True)

    @default("docker_config")
    def _docker_config_default(self) -> str:
        return default_docker_config()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tokens = TokenCache()
        self._credentials: tuple[str, str] | bool | None = False  # False: not read yet
        # images restored into the run engine whose upload here is still running (full name ->
        # archived digest): launchable from the engine's copy (panbinder/restores.py)
        self.restoring: dict[str, str] = {}

    @property
    def host(self) -> str:
        """host[:port] as used in image names."""
        return self.url.split("://", 1)[-1].rstrip("/")

    @property
    def base(self) -> str:
        return self.url.rstrip("/")

    def credentials(self) -> tuple[str, str] | None:
        """(user, password): the settings, else docker's config.json (read once), else None."""
        if self.username:
            return self.username, self.password
        if self._credentials is False:
            self._credentials = docker_config_auth(self.docker_config, self.host, self.log)
        return self._credentials or None

    def auth_headers(self, method: str = "GET", url: str = "") -> dict[str, str]:
        """The Authorization header for a request: a cached token for its scope, else Basic."""
        token = self.tokens.get(request_scope(method, url)) if url else None
        if token:
            return {"Authorization": f"Bearer {token}"}
        credentials = self.credentials()
        return {"Authorization": basic(*credentials)} if credentials else {}

    def renew_token(self, method: str, url: str, header: str) -> dict[str, str]:
        """After a 401: fetch the token its ``WWW-Authenticate`` header asks for (blocking), cache
        it for the request's scope and return its Authorization header ({} when there is no
        Bearer challenge or no token)."""
        challenge = parse_challenge(header or "")
        if challenge is None:
            return {}
        try:
            token, life = fetch_token(challenge, self.credentials(), timeout=self.timeout)
        except CredentialError as e:
            self.log.warning("registry %s: %s", self.url, e)
            return {}
        self.tokens.put(request_scope(method, url), token, life)
        return {"Authorization": f"Bearer {token}"}

    def _url(self, path_or_url: str) -> str:
        return path_or_url if "://" in path_or_url else f"{self.base}{path_or_url}"

    # --- event loop transport ------------------------------------------------------------------

    async def fetch(
        self, method: str, path_or_url: str, *, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> HTTPResponse:
        """One request (a path under the registry or a full URL) with its credentials; on a
        Bearer challenge, once more with a token. Raises HTTPClientError for an error status
        (599 when nothing answered in time) and OSError when the connection failed."""
        url = self._url(path_or_url)
        kwargs.setdefault("request_timeout", self.timeout)
        auth = self.auth_headers(method, url)
        for attempt in (1, 2):
            req = HTTPRequest(url, method=method, headers={**auth, **(headers or {})}, **kwargs)
            resp = await AsyncHTTPClient().fetch(req, raise_error=False)
            if resp.code == 401 and attempt == 1:
                challenge = resp.headers.get("WWW-Authenticate", "")
                auth = await run_blocking(self.renew_token, method, url, challenge)
                if auth:
                    continue
            if resp.code >= 400:
                raise HTTPClientError(resp.code, message=None, response=resp)
            return resp
        raise AssertionError("unreachable")

    # --- blocking transport ---------------------------------------------------------------------

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        body: object = None,
        headers: dict[str, str] | None = None,
        sink: Callable[[bytes], None] | None = None,
        timeout: float | None = None,
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        """(status, headers, body), blocking; with ``sink`` a 200 body is streamed to it. Follows
        redirects (credentials go to the registry's own host only); on a Bearer challenge, once
        more with a token. Raises OSError when the registry cannot be reached."""
        url, renewed = self._url(path_or_url), {}
        for _ in range(6):
            own = _same_origin(url, self.base)
            auth = (renewed or self.auth_headers(method, url)) if own else {}
            status, resp_headers, data = self._send(
                method, url, body, {**auth, **(headers or {})}, sink, timeout
            )
            if status in REDIRECTS and method in ("GET", "HEAD"):
                url = urljoin(url, resp_headers.get("Location", ""))
                continue
            if status == 401 and own and not renewed:
                renewed = self.renew_token(method, url, resp_headers.get("WWW-Authenticate", ""))
                if renewed and _rewind(body):
                    continue
            return status, resp_headers, data
        raise OSError(f"too many redirects from the registry at {self.url}")

    def _send(
        self,
        method: str,
        url: str,
        body: object,
        headers: dict[str, str],
        sink: Callable[[bytes], None] | None,
        timeout: float | None,
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        parts = urlsplit(url)
        cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        conn = cls(parts.netloc, timeout=timeout or self.timeout, blocksize=CHUNK)
        try:
            conn.request(
                method, parts.path + (f"?{parts.query}" if parts.query else ""), body=body, headers=headers
            )
            resp = conn.getresponse()
            if sink is not None and resp.status == 200:
                while chunk := resp.read(CHUNK):
                    sink(chunk)
                return resp.status, resp.headers, b""
            return resp.status, resp.headers, resp.read()
        finally:
            conn.close()

    # --- image look-ups -------------------------------------------------------------------------

    async def digest(self, image: ImageRef) -> str | None:
        """The manifest digest of ``image``, or None when the registry does not have it (an
        image restored into the run engine counts while its upload finishes: ``restoring``).

        Raises PanbinderError (503): ``registry_unreachable`` when nothing answers (refused,
        reset, timed out) and ``registry_error`` when the registry answers with an error.
        """
        if image.full in self.restoring:  # the run engine has it; the upload is finishing
            return self.restoring[image.full]
        path = f"/v2/{image.name}/manifests/{image.tag}"
        where = f"registry HEAD {self.base}{path}"
        try:
            resp = await self.fetch("HEAD", path, headers={"Accept": MANIFEST_TYPES})
        except HTTPClientError as e:
            if e.code == 404:
                return None
            if e.code == 599:  # tornado's code for a timeout or a connection closed mid-answer
                raise unreachable(f"{where}: {e}") from e
            raise PanbinderError(
                "The image registry answered with an error, so this image cannot be looked up; "
                "try again in a few minutes, and tell the operators if it persists.",
                reason="registry_error",
                log_message=f"{where}: {e}",
                status_code=503,
            ) from e
        except OSError as e:
            raise unreachable(f"{where}: {e}") from e
        return resp.headers.get("Docker-Content-Digest", "") or "unknown"

    async def exists(self, image: ImageRef) -> bool:
        return await self.digest(image) is not None

    async def ping(self) -> bool:
        """Whether the registry answers its API root (with our credentials) within ``timeout``."""
        try:
            await self.fetch("GET", "/v2/", request_timeout=min(self.timeout, 3.0))
        except (HTTPClientError, OSError) as e:
            self.log.warning("registry %s does not answer: %s", self.url, e)
            return False
        return True


def _rewind(body: object) -> bool:
    """Whether ``body`` can be sent again (bytes, or a file rewound to its start)."""
    if body is None or isinstance(body, bytes | bytearray | str):
        return True
    seek = getattr(body, "seek", None)
    if seek is None:
        return False
    seek(0)
    return True


def unreachable(log_message: str) -> PanbinderError:
    """Nothing answers at the registry: the user waits; the operators start it again."""
    return PanbinderError(
        "Registry unreachable: the image registry does not answer, so images can be neither "
        "looked up nor built right now; try again in a few minutes, and tell the operators if "
        "it persists.",
        reason="registry_unreachable",
        log_message=log_message,
        status_code=503,
    )


def _same_origin(url: str, base: str) -> bool:
    """Whether ``url`` is on the registry's own scheme, host and port (credentials go nowhere
    else: a prefix test would also match ``https://registry.example.org.evil.test``)."""
    a, b = urlsplit(url), urlsplit(base)
    return (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)
