"""Code that lives in an archive: Zenodo, Figshare, Dataverse and Software Heritage records,
named ``<archive>:<record>`` and built like a repository at a commit (see base.py)."""

from __future__ import annotations

from typing import Any

from .base import ArchiveSource, RemoteFile
from .dataverse import DataverseSource
from .figshare import FigshareSource
from .http import ArchiveDownloads
from .swh import SoftwareHeritageSource
from .zenodo import ZenodoSource

SOURCES: dict[str, type[ArchiveSource]] = {
    cls.name: cls for cls in (ZenodoSource, FigshareSource, DataverseSource, SoftwareHeritageSource)
}


def archive_kind(repo_url: str) -> str:
    """The archive a repository URL names (``zenodo:123`` -> ``zenodo``), or "" for git."""
    scheme, sep, rest = repo_url.partition(":")
    return scheme if sep and scheme in SOURCES and not rest.startswith("//") else ""


def source_for(repo_url: str, **kwargs: Any) -> ArchiveSource | None:
    """The archive source for ``repo_url`` (traitlets kwargs: parent, log), or None for git."""
    kind = archive_kind(repo_url)
    return SOURCES[kind](**kwargs) if kind else None


def parse_reference(text: str, **kwargs: Any) -> tuple[str, str] | None:
    """``(repository URL, version asked)`` for ``<archive>:<identifier>`` or a SWHID, else None
    (a git URL). Used where a publication names its code."""
    text = text.strip()
    if text.lower().startswith("swh:"):
        return SoftwareHeritageSource(**kwargs).parse(text)
    scheme, sep, rest = text.partition(":")
    if sep and scheme.lower() in SOURCES and not rest.startswith("//"):
        return SOURCES[scheme.lower()](**kwargs).parse(rest)
    return None


__all__ = [
    "SOURCES",
    "ArchiveDownloads",
    "ArchiveSource",
    "DataverseSource",
    "FigshareSource",
    "RemoteFile",
    "SoftwareHeritageSource",
    "ZenodoSource",
    "archive_kind",
    "parse_reference",
    "source_for",
]
