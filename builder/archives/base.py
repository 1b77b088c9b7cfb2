"""The archive seam: a record in an archive (Zenodo, Figshare, Dataverse, Software Heritage)
named like a repository, resolved to a version like a commit, and fetched into a checkout.

A record's *repository URL* is ``<archive>:<record>`` (``zenodo:3242074``,
``figshare:9782777``, ``dataverse:doi:10.7910/DVN/TJCLKP``, ``swh:1:rev:<hash>``): what is stored
with a publication, named in images and matched by the ban/allow lists. It names no host, so a
deployment may point ``base_url`` at a mirror without renaming any image. The resolved *version*
(a Zenodo version's record id, a Figshare version number, a Dataverse ``major.minor``, the SWHID
directory hash) is the cache key, as a commit sha is for git. Each archive's code is a short
subclass: ``parse`` (no network), ``resolve`` and ``files``; fetching is shared here.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from traitlets import Unicode
from traitlets.config import LoggingConfigurable

from panbinder.errors import PanbinderError

from .http import ArchiveDownloads, ArchiveHTTPError, Budget, too_large
from .unpack import CLASHES, clash, flatten, is_archive, skipped, target, unpack

VERSION_RE = re.compile(r"^[0-9a-z][0-9a-z._-]{0,127}$")
DOI_PREFIXES = ("https://doi.org/", "http://doi.org/", "https://dx.doi.org/", "doi.org/", "doi:")


def strip_doi(text: str) -> str:
    """``text`` without a resolver or ``doi:`` prefix (case kept)."""
    value = text.strip()
    for prefix in DOI_PREFIXES:
        if value.lower().startswith(prefix):
            return value[len(prefix) :].strip()
    return value


@dataclass(frozen=True)
class RemoteFile:
    name: str  # relative path in the checkout
    url: str
    size: int = 0  # as the record declares it (0: unknown)
    md5: str = ""


class ArchiveSource(LoggingConfigurable):
    """Base class; subclasses set ``name``, ``label``, ``example`` and the three methods."""

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""  # "Zenodo", for messages
    example: ClassVar[str] = ""  # a valid spec, for messages
    base_url = Unicode(help="The archive's API base URL; each archive declares its own setting.")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.http = ArchiveDownloads(parent=self, log=self.log)

    @property
    def api(self) -> str:
        return self.base_url.rstrip("/")

    # the three methods of an archive -----------------------------------------------------------

    def parse(self, spec: str) -> tuple[str, str]:
        """``(repository URL, version asked or "latest")`` from a spec; 400 when malformed."""
        raise NotImplementedError

    def resolve(self, repo_url: str, ref: str) -> str:
        """The immutable version ``ref`` names now (blocking)."""
        raise NotImplementedError

    def files(
        self, repo_url: str, version: str, check: Callable[[], None] = lambda: None
    ) -> list[RemoteFile]:
        """The files of that version (blocking); ``check`` raises once the build is cancelled, for
        an archive that waits (the Software Heritage vault)."""
        raise NotImplementedError

    # shared ------------------------------------------------------------------------------------

    def malformed(self, spec: str, why: str = "") -> PanbinderError:
        return PanbinderError(
            f"'{spec}' is not a {self.label} identifier{f' ({why})' if why else ''}; give one like "
            f"/v2/{self.name}/{self.example}.",
            reason="malformed_spec",
        )

    def unknown(self, what: str) -> PanbinderError:
        return PanbinderError(
            f"{self.label} has no record {what}; check the DOI or identifier (and its version).",
            reason="unknown_record",
            status_code=404,
        )

    def bad_answer(self, what: str, detail: str) -> PanbinderError:
        """A 502: the archive answered for the record ``what``, but not in the shape it documents."""
        return PanbinderError(
            f"{self.label} gave an unexpected answer for the record {what} ({detail}); try again "
            "later, or tell the operators if it persists.",
            reason="archive_bad_answer",
            log_message=f"{self.label} record {what}: {detail}",
            status_code=502,
        )

    def mapping(self, value: Any, what: str, field: str, *, optional: bool = False) -> dict:
        """``value``, a JSON object (absent and ``optional``: empty); else ``bad_answer``."""
        if value is None and optional:
            return {}
        if not isinstance(value, dict):
            raise self.bad_answer(what, f"{field} is not an object")
        return value

    def listing(self, value: Any, what: str, field: str) -> list:
        """``value``, a JSON list (absent: empty); else ``bad_answer``."""
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.bad_answer(what, f"{field} is not a list")
        return value

    def size(self, value: Any, what: str, name: str) -> int:
        """A file's declared size (absent: 0, unknown); else ``bad_answer``."""
        if value is None or value == "":
            return 0
        try:
            size = int(value)
        except (TypeError, ValueError, OverflowError):
            size = -1
        if isinstance(value, bool) or size < 0:
            raise self.bad_answer(what, f"the size of the file {name!r} is not a number of bytes")
        return size

    def record(self, url: str, what: str) -> Any:
        """The JSON at ``url``; a 404 or 410 from the archive becomes ``unknown(what)``."""
        try:
            return self.http.json(url, f"the {self.label} record {what}")
        except ArchiveHTTPError as e:
            if e.status in (404, 410):
                raise self.unknown(what) from None
            raise

    def check_version(self, version: str, repo_url: str) -> str:
        version = str(version).strip().lower()
        if not VERSION_RE.match(version):
            raise PanbinderError(
                f"{self.label} gave no usable version for {repo_url}; try again later.",
                reason="archive_unreachable",
                log_message=f"{repo_url}: version {version!r}",
                status_code=502,
            )
        return version

    def fetch(
        self, repo_url: str, version: str, checkout: str, check: Callable[[], None] = lambda: None
    ) -> None:
        """Download the version's files into ``checkout`` (a new folder); a lone zip or tar is unpacked."""
        root = Path(checkout)
        root.mkdir(parents=True, exist_ok=True)
        listed = self.files(repo_url, version, check=check)
        files = [f for f in listed if not skipped(f.name, self.log)]
        if not files:
            raise PanbinderError(
                f"The {self.label} record {repo_url} (version {version}) has no files to build.",
                reason="empty_record",
                status_code=422,
            )
        limit = self.http.max_download_size
        declared = sum(f.size for f in files)
        if limit > 0 and declared > limit:
            raise too_large(declared, limit, f"The {self.label} record {repo_url}")
        budget = Budget.of(limit)
        if len(files) == 1 and is_archive(files[0].name):
            with tempfile.TemporaryDirectory(prefix="panbinder-archive-") as tmp:
                path = Path(tmp) / Path(files[0].name).name
                self._get(files[0], path, budget, check)
                unpack(path, root, limit=self.unpack_limit(), check=check, log=self.log)
            flatten(root)
            return
        for f in files:
            try:
                self._get(f, target(root, f.name), budget, check)
            except OSError as e:
                if e.errno in CLASHES:
                    raise clash(root, e) from None
                raise

    def unpack_limit(self) -> int:
        """Unpacked bytes allowed: the checkout's own cap (Builder.max_repo_size) is checked after;
        this bound stops a small archive from filling the disk first."""
        return 4 * self.http.max_download_size if self.http.max_download_size > 0 else 0

    def _get(self, f: RemoteFile, path: Path, budget: Budget, check: Callable[[], None]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as out:
            self.http.download(f.url, out, what=f"The file {f.name}", budget=budget, md5=f.md5, check=check)


__all__ = ["VERSION_RE", "ArchiveSource", "RemoteFile", "strip_doi"]
