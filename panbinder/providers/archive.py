"""Archive providers: ``/v2/zenodo/<DOI>``, ``/v2/figshare/<DOI>``, ``/v2/dataverse/<DOI>`` and
``/v2/swh/<SWHID>``, with BinderHub's URL schemes.

The spec is parsed by the archive's source (builder/archives/), which also resolves it to the
version that is the cache key: a record id, version number or directory hash instead of a
commit. Look-ups go through the URL guard's policy and hold one of its places, as git's do.
"""

from __future__ import annotations

from typing import ClassVar
from urllib.parse import unquote

from panbinder.builder.archives import (
    ArchiveSource,
    DataverseSource,
    FigshareSource,
    SoftwareHeritageSource,
    ZenodoSource,
)
from panbinder.executor import run_blocking

from .base import RepoProvider, shared


class ArchiveProvider(RepoProvider):
    """Base class: ``source_class`` names the archive."""

    source_class: ClassVar[type[ArchiveSource]]

    @property
    def source(self) -> ArchiveSource:
        if getattr(self, "_source", None) is None:
            self._source = self.source_class(parent=self, log=self.log)
        return self._source

    def parse(self, spec: str) -> tuple[str, str]:
        return self.source.parse(unquote(spec))

    async def resolve(self) -> str:
        key = ("archive", id(self.config), self.repo_url, self.unresolved_ref)
        return await shared(key, self._resolve)

    async def _resolve(self) -> str:
        with self.source.http.guard.slot():
            return await run_blocking(self.source.resolve, self.repo_url, self.unresolved_ref)

    def persistent_spec(self, resolved: str) -> str:
        """The spec of that version: a record id, ``<article>.v<N>``, ``<pid>@<N.M>``, a directory SWHID."""
        ident = self.repo_url.partition(":")[2]
        if self.name == "zenodo":
            return resolved
        if self.name == "figshare":
            return f"{ident}.v{resolved}"
        if self.name == "dataverse":
            return f"{ident}@{resolved}"
        return f"swh:1:dir:{resolved}"


class ZenodoProvider(ArchiveProvider):
    name = "zenodo"
    source_class = ZenodoSource


class FigshareProvider(ArchiveProvider):
    name = "figshare"
    source_class = FigshareSource


class DataverseProvider(ArchiveProvider):
    name = "dataverse"
    source_class = DataverseSource


class SoftwareHeritageProvider(ArchiveProvider):
    name = "swh"
    source_class = SoftwareHeritageSource
