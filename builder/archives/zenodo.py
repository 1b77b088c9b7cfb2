"""Zenodo (and other InvenioRDM sites): ``/v2/zenodo/<DOI or record id>``.

The record's files are listed inline (``files``) or at ``links.files`` (``entries``, as
InvenioRDM answers); each is downloaded from ``links.content`` (else ``links.self``) and its
``md5:`` checksum verified. A Zenodo DOI is ``10.5281/zenodo.<record id>``; ``doi_prefixes`` lists the prefixes of sites
that mint them the same way. The record asked may be a concept (all versions): the archive
answers with its latest version, whose record id is the version built and the cache key.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from traitlets import List, Unicode

from .base import ArchiveSource, RemoteFile, strip_doi

RECORD_URL_RE = re.compile(r"^https?://[^/]+/(?:api/)?records?/(\d+)/?$")


class ZenodoSource(ArchiveSource):
    name = "zenodo"
    label = "Zenodo"
    example = "10.5281/zenodo.3242074"
    base_url = Unicode(
        "https://zenodo.org/api", help="Zenodo's API base URL (records at <base>/records/<id>)."
    ).tag(config=True)
    doi_prefixes = List(
        Unicode(),
        ["10.5281"],
        help="DOI prefixes whose DOIs end in 'zenodo.<record id>' (Zenodo's own; add a mirror's).",
    ).tag(config=True)

    def parse(self, spec: str) -> tuple[str, str]:
        text = spec.strip()
        m = RECORD_URL_RE.match(text)
        if m:
            return f"zenodo:{m[1]}", m[1]
        if text.isdigit():
            return f"zenodo:{int(text)}", str(int(text))
        doi = strip_doi(text).lower()
        prefix, _, suffix = doi.partition("/")
        m = re.fullmatch(r"zenodo\.(\d+)", suffix)
        if prefix not in self.doi_prefixes or not m:
            raise self.malformed(spec, "a Zenodo DOI ends in zenodo.<record id>; or give the record id")
        return f"zenodo:{int(m[1])}", str(int(m[1]))

    def resolve(self, repo_url: str, ref: str) -> str:
        record = self.record(f"{self.api}/records/{ref}", ref)
        return self.check_version(record.get("id", "") if isinstance(record, dict) else "", repo_url)

    def files(
        self, repo_url: str, version: str, check: Callable[[], None] = lambda: None
    ) -> list[RemoteFile]:
        record = self.mapping(self.record(f"{self.api}/records/{version}", version), version, "the answer")
        entries = record.get("files")
        files_url = self.mapping(record.get("links"), version, "its 'links'", optional=True).get("files")
        if not isinstance(entries, list) and files_url:  # InvenioRDM: the files are a resource of their own
            listing = self.record(str(files_url), f"{version} (its files)")
            entries = self.mapping(listing, version, "its file listing").get("entries")
        out = []
        for f in self.listing(entries, version, "its files"):
            f = self.mapping(f, version, "a file entry")
            name = str(f.get("key") or f.get("filename") or "")
            links = self.mapping(f.get("links"), version, f"the links of the file {name!r}", optional=True)
            checksum = str(f.get("checksum", ""))
            out.append(
                RemoteFile(
                    name=name,
                    url=str(links.get("content") or links.get("self") or ""),
                    size=self.size(f.get("size"), version, name),
                    md5=checksum[4:] if checksum.startswith("md5:") else "",
                )
            )
        return out
