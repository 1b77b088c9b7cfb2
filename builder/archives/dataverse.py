"""Dataverse: ``/v2/dataverse/<DOI or persistent id>``, e.g. ``doi:10.7910/DVN/TJCLKP``.

One installation per deployment (``base_url``). The latest published version is built unless a
version follows the identifier after ``@`` (``doi:10.7910/DVN/TJCLKP@1.0``); ``major.minor`` is
the cache key. Drafts are never built: they change in place.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import quote

from traitlets import Unicode

from .base import ArchiveSource, RemoteFile, strip_doi

PID_RE = re.compile(r"^(doi:10\.\d{4,9}/[^\s@?#]+|hdl:[^\s@?#]+)$", re.IGNORECASE)
VERSION_RE = re.compile(r"^\d+\.\d+$")


class DataverseSource(ArchiveSource):
    name = "dataverse"
    label = "Dataverse"
    example = "doi:10.7910/DVN/TJCLKP"
    base_url = Unicode("https://dataverse.harvard.edu", help="The Dataverse installation's base URL.").tag(
        config=True
    )

    def parse(self, spec: str) -> tuple[str, str]:
        text, _, version = spec.strip().partition("@")
        pid = text if text.lower().startswith("hdl:") else "doi:" + strip_doi(text)
        if not PID_RE.match(pid):
            raise self.malformed(spec, "expected doi:10.NNNN/... or hdl:...")
        if version and not VERSION_RE.match(version):
            raise self.malformed(spec, "a version is major.minor, like 1.0")
        return f"dataverse:{pid}", version or "latest"

    def _url(self, repo_url: str, version: str) -> str:
        pid = repo_url.removeprefix("dataverse:")
        which = ":latest-published" if version == "latest" else version
        return f"{self.api}/api/datasets/:persistentId/versions/{which}?persistentId={quote(pid, safe=':/')}"

    def _what(self, repo_url: str, version: str) -> str:
        return repo_url.removeprefix("dataverse:") + ("" if version == "latest" else f" version {version}")

    def _version(self, repo_url: str, version: str) -> dict:
        what = self._what(repo_url, version)
        answer = self.mapping(self.record(self._url(repo_url, version), what), what, "the answer")
        return self.mapping(answer.get("data"), what, "its 'data'", optional=True)

    def resolve(self, repo_url: str, ref: str) -> str:
        data = self._version(repo_url, ref)
        found = f"{data.get('versionNumber', '')}.{data.get('versionMinorNumber', '')}"
        return self.check_version(found if VERSION_RE.match(found) else "", repo_url)

    def files(
        self, repo_url: str, version: str, check: Callable[[], None] = lambda: None
    ) -> list[RemoteFile]:
        what = self._what(repo_url, version)
        out = []
        for f in self.listing(self._version(repo_url, version).get("files"), what, "its 'files'"):
            f = self.mapping(f, what, "a file entry")
            data = self.mapping(f.get("dataFile"), what, "a file's 'dataFile'", optional=True)
            folder = str(f.get("directoryLabel") or "").strip("/")
            name = str(data.get("filename", ""))
            path = f"{folder}/{name}" if folder else name
            file_id = data.get("id")
            if isinstance(file_id, bool) or not isinstance(file_id, int | str) or not str(file_id).isdigit():
                raise self.bad_answer(what, f"the file {path!r} has no numeric id")
            out.append(
                RemoteFile(
                    name=path,
                    url=f"{self.api}/api/access/datafile/{int(file_id)}",
                    size=self.size(data.get("filesize"), what, path),
                    md5=str(data.get("md5") or ""),
                )
            )
        return out
