"""A Pipfile's own package indexes (``[[source]]``, Pipfile.lock's ``_meta.sources``).

pipenv installs from the indexes a Pipfile names. Builds honour them within the deployment's
policy: a source naming PyPI (pypi.org, what ``pipenv`` writes by default) means the deployment's
index, which may be a mirror, and adds nothing; a source on a host of ``index_url`` /
``extra_index_urls`` or matching ``Repo2DockerBuilder.allowed_index_hosts`` becomes an
``--extra-index-url`` line of the converted requirements file (the deployment's index stays the
main one, so the server's packages keep coming from it); any other host fails the build naming
the host and the setting. ``verify_ssl = false`` adds ``--trusted-host`` for that host (pip
ignores a plain-http index otherwise; uv reads the same line).

A source URL may carry the repository's own credentials: they stay in the requirements file
(which holds the repository's text anyway) and are left out of every notice and error, which name
the host only. pipenv's ``${VARIABLE}`` expansion is refused: builds have no such variables.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from panbinder.errors import PanbinderError

from .index_auth import public_url
from .settings import DEFAULT_INDEX, PackSettings

PYPI_HOSTS = ("pypi.org", "pypi.python.org", "files.pythonhosted.org")


@dataclass(frozen=True)
class Source:
    """One index a Pipfile names."""

    name: str
    url: str
    verify_ssl: bool = True

    @property
    def netloc(self) -> str:
        """host[:port], without credentials."""
        return urlsplit(public_url(self.url)).netloc.lower()

    @property
    def host(self) -> str:
        return (urlsplit(self.url).hostname or "").lower()


def sources_of(data: dict, *, lock: bool) -> list[Source]:
    """The sources of a parsed Pipfile (``[[source]]``) or Pipfile.lock (``_meta.sources``);
    ValueError for an entry that is not a table with a URL."""
    entries = (data.get("_meta", {}) if lock else data).get("sources" if lock else "source") or []
    if not isinstance(entries, list):
        raise ValueError("the sources are not a list of tables")
    found = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
            raise ValueError("a source has no url")
        verify = entry.get("verify_ssl", True)
        found.append(Source(str(entry.get("name", "")), entry["url"].strip(), verify is not False))
    return found


def deployment_hosts(settings: PackSettings) -> set[str]:
    """host[:port] of the deployment's own indexes."""
    urls = [settings.index_url or DEFAULT_INDEX, *settings.extra_index_urls]
    return {urlsplit(public_url(u)).netloc.lower() for u in urls}


def allowed(source: Source, settings: PackSettings) -> bool:
    if source.netloc in deployment_hosts(settings):
        return True
    return any(fnmatch.fnmatch(source.netloc, p.lower()) or fnmatch.fnmatch(source.host, p.lower())
               for p in settings.allowed_index_hosts)  # fmt: skip


def source_lines(sources: list[Source], settings: PackSettings, origin: str) -> list[str]:
    """The requirements-file option lines for ``sources`` (see the module text); PanbinderError
    for a source the deployment does not allow."""
    lines: list[str] = []
    for source in sources:
        scheme = urlsplit(source.url).scheme
        if "${" in source.url or scheme not in ("http", "https"):
            raise PanbinderError(
                f"{origin} names the package index '{source.name or source.netloc}' with a URL builds "
                "cannot use (environment variables are not available in builds; use an http(s) URL).",
                reason="pipfile_source",
                status_code=422,
            )
        if source.host in PYPI_HOSTS:
            continue  # the deployment's index (perhaps a mirror) stands for PyPI
        if not allowed(source, settings):
            raise PanbinderError(
                f"{origin} names the package index host {source.netloc}, which this deployment does "
                "not allow builds to use. Install from the deployment's index, or ask the operators "
                f"to add {source.host} to Repo2DockerBuilder.allowed_index_hosts.",
                reason="index_not_allowed",
                status_code=422,
            )
        lines.append(f"--extra-index-url {source.url}")
        if not source.verify_ssl:
            lines.append(f"--trusted-host {source.netloc}")
    return lines


def describe(sources: list[Source], settings: PackSettings) -> str:
    """The notice naming the extra indexes (hosts only), "" when there are none."""
    hosts = [s.netloc for s in sources if s.host not in PYPI_HOSTS]
    unchecked = [s.netloc for s in sources if s.host not in PYPI_HOSTS and not s.verify_ssl]
    if not hosts:
        return ""
    text = f"installing also from the package indexes the Pipfile names: {', '.join(hosts)}"
    if unchecked:
        text += f" (TLS certificates not checked for {', '.join(unchecked)}: verify_ssl = false)"
    return text


def read(data: Any, settings: PackSettings, origin: str, *, lock: bool) -> tuple[list[str], str]:
    """(option lines, notice) for a parsed Pipfile or Pipfile.lock."""
    try:
        sources = sources_of(data, lock=lock)
    except ValueError as e:
        raise PanbinderError(
            f"{origin} has a [[source]] panbinder cannot read ({e}). Fix the entry.",
            reason="bad_pipfile",
            status_code=422,
        ) from e
    return source_lines(sources, settings, origin), describe(sources, settings)


__all__ = ["PYPI_HOSTS", "Source", "read", "source_lines", "sources_of"]
