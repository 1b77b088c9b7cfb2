"""Credentials for the registry: docker's ``config.json`` and the registry token protocol.

A plain registry (distribution with htpasswd) takes Basic credentials on every request. Harbor,
GitLab and Quay registries answer 401 with ``WWW-Authenticate: Bearer realm=...,service=...,
scope=...`` instead: the client fetches a token from the realm (with Basic credentials when it has
any, anonymously otherwise), then repeats the request with ``Authorization: Bearer <token>``
(https://distribution.github.io/distribution/spec/auth/token/). ``TokenCache`` keeps each token
per scope until shortly before it expires, so an image look-up costs one request again.

Credentials come from ``Registry.username``/``password`` when set, else from the ``auths`` entry
of docker's ``config.json`` for the registry's host (``auth``: base64 of ``user:password``), so
a registry the operator logged in to with ``docker login`` needs no second copy of the password.
Credential helpers (``credsStore``, ``credHelpers``) run external programs and are not supported:
a log line says so.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode, urlsplit

_PARAM_RE = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))')
# seconds a token counts as expired before its end, and its life when the server names none
EXPIRY_MARGIN = 10.0
DEFAULT_TOKEN_LIFE = 60.0


class CredentialError(Exception):
    """The token server refused or did not answer."""


def default_docker_config() -> str:
    """``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``."""
    folder = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(folder, "config.json")


def _host_of(key: str) -> str:
    """host[:port] of an ``auths`` key ("registry.example.org", "https://host/v1/" ...)."""
    return urlsplit(key if "://" in key else f"//{key}").netloc.lower()


def docker_config_auth(
    path: str | Path, host: str, log: logging.Logger | None = None
) -> tuple[str, str] | None:
    """(user, password) for ``host`` from the ``auths`` of docker's ``config.json`` at ``path``;
    None when the file, the entry or its ``auth`` is missing or unreadable."""
    log = log or logging.getLogger("panbinder.registry")
    try:
        config = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        log.warning("cannot read the docker config %s: %s", path, e)
        return None
    host = host.lower()
    helper = (config.get("credHelpers") or {}).get(host) or config.get("credsStore")
    for key, entry in (config.get("auths") or {}).items():
        if _host_of(key) != host or not isinstance(entry, dict):
            continue
        if entry.get("username") and entry.get("password"):
            return str(entry["username"]), str(entry["password"])
        try:
            user, sep, password = (
                base64.b64decode(entry.get("auth") or "", validate=True).decode().partition(":")
            )
        except (binascii.Error, UnicodeDecodeError):
            log.warning("the docker config %s has an unreadable auth entry for %s", path, host)
            return None
        if sep and user:
            return user, password
    if helper:
        log.warning(
            "the docker config %s keeps the credentials of %s in the credential helper %r, which "
            "panbinder does not run; set Registry.username and Registry.password instead",
            path,
            host,
            helper,
        )
    return None


@dataclass(frozen=True)
class Challenge:
    realm: str
    service: str = ""
    scope: str = ""


def parse_challenge(header: str) -> Challenge | None:
    """The Bearer challenge of a ``WWW-Authenticate`` header, or None (Basic, absent, no realm)."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    params = {
        m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
        for m in _PARAM_RE.finditer(rest)
    }
    if not params.get("realm"):
        return None
    return Challenge(params["realm"], params.get("service", ""), params.get("scope", ""))


def request_scope(method: str, path: str) -> str:
    """The cache key of a request: the scope a token server would grant for it, as derived from
    the URL (``repository:<name>:pull`` / ``pull,push`` / ``delete``, ``registry:catalog:*``)."""
    path = urlsplit(path).path
    if path.startswith("/v2/_catalog"):
        return "registry:catalog:*"
    m = re.match(r"^/v2/(.+?)/(manifests|blobs|tags)/", path)
    if not m:
        return ""
    action = {"GET": "pull", "HEAD": "pull", "DELETE": "delete"}.get(method.upper(), "pull,push")
    return f"repository:{m.group(1)}:{action}"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class TokenCache:
    """Bearer tokens by request scope, each until shortly before it expires (thread-safe)."""

    def __init__(self, clock=time.monotonic) -> None:
        self._tokens: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()
        self.clock = clock

    def get(self, scope: str) -> str | None:
        with self._lock:
            token, until = self._tokens.get(scope, ("", 0.0))
            return token if token and self.clock() < until else None

    def put(self, scope: str, token: str, expires_in: float) -> None:
        with self._lock:
            margin = min(EXPIRY_MARGIN, expires_in / 2)  # a short-lived token is still used a while
            self._tokens[scope] = (token, self.clock() + expires_in - margin)


def fetch_token(
    challenge: Challenge, credentials: tuple[str, str] | None, *, timeout: float
) -> tuple[str, float]:
    """(token, seconds it lives) from the challenge's realm, with Basic credentials if given."""
    query = {k: v for k, v in (("service", challenge.service), ("scope", challenge.scope)) if v}
    parts = urlsplit(challenge.realm)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CredentialError(f"the registry names an unusable token realm {challenge.realm!r}")
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    target = parts.path or "/"
    if parts.query or query:
        target += "?" + "&".join(q for q in (parts.query, urlencode(query)) if q)
    headers = {"Authorization": basic(*credentials)} if credentials else {}
    conn = cls(parts.netloc, timeout=timeout)
    try:
        conn.request("GET", target, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
    except OSError as e:
        raise CredentialError(f"the token server {challenge.realm} cannot be reached: {e}") from None
    finally:
        conn.close()
    if resp.status != 200:
        raise CredentialError(f"the token server {challenge.realm} answered HTTP {resp.status}")
    try:
        data = json.loads(body)
        token = data.get("token") or data.get("access_token")
        life = float(data.get("expires_in") or DEFAULT_TOKEN_LIFE)
    except (ValueError, AttributeError, TypeError):
        token, life = None, 0.0
    if not token:
        raise CredentialError(f"the token server {challenge.realm} sent no token")
    return str(token), life


__all__ = [
    "Challenge",
    "CredentialError",
    "TokenCache",
    "basic",
    "default_docker_config",
    "docker_config_auth",
    "fetch_token",
    "parse_challenge",
    "request_scope",
]
