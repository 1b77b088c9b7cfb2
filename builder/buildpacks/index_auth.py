"""The deployment's package index credentials: used by build steps, kept out of images and logs.

A facility's private index is often named with its credentials
(``https://reader:TOKEN@pypi.facility.eu/simple``). Written as they are into ``PIP_INDEX_URL``,
they would stay in the image's configuration (``docker image inspect``), its history and every
image derived from it. Instead:

- the image's variables (``PIP_INDEX_URL``, ``UV_INDEX_URL``, the extra indexes) name the
  indexes without credentials;
- the credentials become a netrc file (``machine HOST login USER password PASSWORD``, which pip,
  through requests, and uv both read for an index host) that the build passes to BuildKit as a
  secret (``docker build --secret``, engine.py) and that each install step mounts
  (``RUN --mount=type=secret``), readable by the build user only: a secret mount is in no layer
  and not in the layer cache's key, so rotating a token rebuilds nothing;
- ``NETRC`` names the mount point (a path, not a secret). Outside a build step the file does not
  exist, which pip and uv take as "no netrc".

The builder process's own look-ups on the index (environment.yml converted to pip) send the same
credentials as an Authorization header. Log lines are scrubbed of URL credentials as always
(panbinder.logs.scrub), and errors name the index without them.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from panbinder.errors import PanbinderError

SECRET_ID = "panbinder-index-netrc"
SECRET_TARGET = f"/run/secrets/{SECRET_ID}"


@dataclass(frozen=True)
class IndexCredentials:
    """The user and password for one index host (``host`` with its port when it names one)."""

    host: str
    user: str
    password: str = ""

    def __repr__(self) -> str:  # never the password, also not in a traceback's locals
        return f"IndexCredentials(host={self.host!r}, user=...)"


def split_credentials(url: str) -> tuple[str, IndexCredentials | None]:
    """(``url`` without its user information, the credentials it carried or None)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    public = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return public, IndexCredentials(netloc, unquote(parts.username or ""), unquote(parts.password or ""))


def public_url(url: str) -> str:
    """``url`` without its user information."""
    return split_credentials(url)[0]


def credentials_of(settings: Any) -> tuple[IndexCredentials, ...]:
    """The credentials the deployment's index URLs carry (``PackSettings.index_url`` and
    ``extra_index_urls``), one per host."""
    found: dict[str, IndexCredentials] = {}
    for url in (settings.index_url, *settings.extra_index_urls):
        credentials = split_credentials(url)[1] if url else None
        if credentials is not None:
            found.setdefault(credentials.host, credentials)
    return tuple(found.values())


def netrc_text(credentials: tuple[IndexCredentials, ...]) -> str:
    """A netrc file for ``credentials`` (netrc's ``machine`` is the host without the port; a
    value with white space or quotes cannot be written, ValueError)."""
    lines = []
    for c in credentials:
        machine = c.host.rsplit(":", 1)[0] if not c.host.endswith("]") else c.host
        for value in (machine, c.user, c.password):
            if any(ch.isspace() or ch in "\"'#" for ch in value):
                raise ValueError(f"an index credential for {machine} contains white space or quotes")
        lines.append(f"machine {machine} login {c.user} password {c.password or '-'}\n")
    return "".join(lines)


def write_netrc(credentials: tuple[IndexCredentials, ...], folder: str) -> str:
    """Write the netrc file into ``folder`` (readable by this user only); its path."""
    try:
        text = netrc_text(credentials)
    except ValueError as e:
        raise PanbinderError(
            "The build cannot use the package index the deployment names; the operators must fix it.",
            reason="index_credentials",
            log_message=f"{e}: fix Repo2DockerBuilder.index_url / extra_index_urls",
            status_code=500,
        ) from None
    path = os.path.join(folder, "index.netrc")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def secret_mount(settings: Any) -> str:
    """The RUN option mounting the netrc secret for the build user ("" without credentials)."""
    uid = settings.uid
    if not credentials_of(settings):
        return ""
    return f"--mount=type=secret,id={SECRET_ID},target={SECRET_TARGET},uid={uid},gid={uid},mode=0400"


def build_env(settings: Any) -> list[tuple[str, str]]:
    """The image's index variables (without credentials) and the one naming the mounted netrc."""
    env = []
    if settings.index_url:
        env.append(("PIP_INDEX_URL", public_url(settings.index_url)))
    if settings.extra_index_urls:
        env.append(("PIP_EXTRA_INDEX_URL", " ".join(public_url(u) for u in settings.extra_index_urls)))
    if credentials_of(settings):
        env.append(("NETRC", SECRET_TARGET))
    return env


def authorization(url: str, credentials: tuple[IndexCredentials, ...]) -> str:
    """The Basic Authorization header value for ``url`` ("" when no credentials are for its host)."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    for c in credentials:
        if c.host == netloc:
            return "Basic " + base64.b64encode(f"{c.user}:{c.password}".encode()).decode()
    return ""


__all__ = [
    "SECRET_ID",
    "SECRET_TARGET",
    "IndexCredentials",
    "authorization",
    "build_env",
    "credentials_of",
    "netrc_text",
    "public_url",
    "secret_mount",
    "split_credentials",
    "write_netrc",
]
