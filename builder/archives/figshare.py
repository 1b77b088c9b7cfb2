"""Figshare: ``/v2/figshare/<DOI or article id>``, e.g. ``10.6084/m9.figshare.9782777.v1``.

A DOI ending in ``.v<N>`` names version N; without it the latest version is built. The version
number is the cache key.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from traitlets import List, Unicode

from .base import ArchiveSource, RemoteFile, strip_doi

SUFFIX_RE = re.compile(r"^(?:m9\.)?figshare\.(\d+)(?:\.v(\d+))?$")
ID_RE = re.compile(r"^(\d+)(?:\.v(\d+))?$")


class FigshareSource(ArchiveSource):
    name = "figshare"
    label = "Figshare"
    example = "10.6084/m9.figshare.9782777.v1"
    base_url = Unicode("https://api.figshare.com/v2", help="Figshare's API base URL.").tag(config=True)
    doi_prefixes = List(Unicode(), ["10.6084"], help="DOI prefixes of Figshare DOIs.").tag(config=True)

    def parse(self, spec: str) -> tuple[str, str]:
        text = strip_doi(spec).lower()
        m = ID_RE.match(text)
        if not m:
            prefix, _, suffix = text.partition("/")
            m = SUFFIX_RE.match(suffix) if prefix in self.doi_prefixes else None
        if not m:
            raise self.malformed(spec, "a Figshare DOI ends in figshare.<article id>[.v<version>]")
        return f"figshare:{int(m[1])}", m[2] or "latest"

    def article(self, repo_url: str) -> str:
        return repo_url.removeprefix("figshare:")

    def resolve(self, repo_url: str, ref: str) -> str:
        article = self.article(repo_url)
        if ref == "latest":
            record = self.record(f"{self.api}/articles/{article}", article)
            return self.check_version(record.get("version", "") if isinstance(record, dict) else "", repo_url)
        self.record(f"{self.api}/articles/{article}/versions/{ref}", f"{article} version {ref}")
        return self.check_version(ref, repo_url)

    def files(
        self, repo_url: str, version: str, check: Callable[[], None] = lambda: None
    ) -> list[RemoteFile]:
        article = self.article(repo_url)
        what = f"{article} version {version}"
        record = self.mapping(
            self.record(f"{self.api}/articles/{article}/versions/{version}", what), what, "the answer"
        )
        out = []
        for f in self.listing(record.get("files"), what, "its 'files'"):
            f = self.mapping(f, what, "a file entry")
            if f.get("is_link_only"):
                continue
            name = str(f.get("name", ""))
            out.append(
                RemoteFile(
                    name=name,
                    url=str(f.get("download_url", "")),
                    size=self.size(f.get("size"), what, name),
                    md5=str(f.get("computed_md5") or ""),
                )
            )
        return out
