"""Software Heritage: ``/v2/swh/<SWHID>``, a directory (``swh:1:dir:<hash>``) or a revision
(``swh:1:rev:<hash>``, resolved to its directory). Qualifiers (``;origin=...``) are dropped.

The directory hash is the cache key: two SWHIDs naming the same tree launch the same image. The
files come from the archive's vault as one tarball (``/vault/flat/<dir SWHID>/``), which the
vault may first have to cook: it is asked (POST), then polled every ``vault_poll_interval`` seconds for
at most ``vault_timeout`` seconds.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from traitlets import Float, Unicode

from panbinder.errors import PanbinderError

from .base import ArchiveSource, RemoteFile

SWHID_RE = re.compile(r"^swh:1:(dir|rev):([0-9a-f]{40})$")
HASH_RE = re.compile(r"^[0-9a-f]{40}$")


class SoftwareHeritageSource(ArchiveSource):
    name = "swh"
    label = "Software Heritage"
    example = "swh:1:dir:" + "0" * 40
    base_url = Unicode(
        "https://archive.softwareheritage.org/api/1", help="Software Heritage's API base URL."
    ).tag(config=True)
    vault_timeout = Float(600.0, help="Seconds the vault may take to prepare a directory's tarball.").tag(
        config=True
    )
    vault_poll_interval = Float(2.0, help="Seconds between two questions to the vault.").tag(config=True)

    def parse(self, spec: str) -> tuple[str, str]:
        swhid = spec.strip().split(";", 1)[0].lower()
        m = SWHID_RE.match(swhid)
        if not m:
            raise PanbinderError(
                f"'{spec}' is not a SWHID this service builds; give a directory or revision "
                f"identifier like swh:1:dir:<40 hex digits> or swh:1:rev:<40 hex digits>.",
                reason="malformed_spec",
            )
        return swhid, m[2]

    def resolve(self, repo_url: str, ref: str) -> str:
        kind, _, digest = repo_url.removeprefix("swh:1:").partition(":")
        if kind == "dir":
            return digest
        record = self.record(f"{self.api}/revision/{digest}/", repo_url)
        directory = str(record.get("directory", "") if isinstance(record, dict) else "")
        if not HASH_RE.match(directory):
            raise self.unknown(f"{repo_url} (no directory)")
        return directory

    def files(
        self, repo_url: str, version: str, check: Callable[[], None] = lambda: None
    ) -> list[RemoteFile]:
        return [RemoteFile(name=f"{version}.tar.gz", url=self._cooked(version, check))]

    def _cooked(self, version: str, check: Callable[[], None] = lambda: None) -> str:
        """The tarball URL once the vault has it (asked to cook it when it has not)."""
        url = f"{self.api}/vault/flat/swh:1:dir:{version}/"
        what = f"swh:1:dir:{version}"
        status = self.http.json(url, f"the {self.label} vault's tarball of {what}", method="POST")
        deadline = time.monotonic() + self.vault_timeout
        while isinstance(status, dict) and status.get("status") in ("new", "pending"):
            if time.monotonic() > deadline:
                raise PanbinderError(
                    f"The {self.label} vault did not prepare {what} within {self.vault_timeout:.0f} s; "
                    "try again later.",
                    reason="archive_unreachable",
                    status_code=504,
                )
            time.sleep(self.vault_poll_interval)
            check()
            status = self.record(url, what)
        if not isinstance(status, dict) or status.get("status") != "done" or not status.get("fetch_url"):
            raise PanbinderError(
                f"The {self.label} vault could not prepare {what}; try again later.",
                reason="archive_unreachable",
                log_message=f"vault answer for {what}: {status!r}"[:500],
                status_code=502,
            )
        return str(status["fetch_url"])
