"""The notebooks of each publication's last check, kept for the publication page to show.

A check reads each notebook of its plan from the image's repository files (the repository at
the pinned commit) and executes it; the runner hands both versions here (``CheckRunner``, after
the run step) and the publication page shows them read-only (``web/handlers/notebooks.py``).

Bounded: only the last check of each kind (frozen, fresh) of a publication is kept, at most
``max_notebooks`` notebooks of it, each version at most ``max_notebook_bytes`` (a larger one is
not kept and the listing says why). With the defaults that is at most 2 x 50 x 2 x 5 MB per
publication; a typical analysis notebook with a few figures is 100 kB to 2 MB.

Confined: files are named by the SHA-256 of the DOI and the notebook's index in the plan
(``<folder>/<sha256(doi)>/<kind>/<index>.stored.ipynb``), never by a name from the repository;
a notebook is found by its repository path only through the manifest the check wrote, so a
requested path that is not one of the notebooks the check ran reaches no file.

Atomic: each check's notebooks go to a folder of their own (``.<kind>.<token>``, never changed
once written) and ``<kind>`` is a symlink to it; a new check replaces that symlink in one rename
and then removes the previous folder. A reader resolves the symlink once and reads the manifest
and the notebook from that one folder (``KeptVersion``), so it sees one check, never half of
each nor a notebook of another check at the same index; when the folder it resolved was removed
under it, it reads again. The portal keeps each notebook's rendered HTML in the same folder
(``KeptVersion.keep_rendered``), so it is removed with the check that kept it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from traitlets import Int, Unicode
from traitlets.config import LoggingConfigurable

from panbinder.errors import PanbinderError

from .verdict import Kind

VERSIONS = ("stored", "executed")


@dataclasses.dataclass(frozen=True)
class KeptNotebook:
    """One notebook a check ran: its path in the repository and which versions are kept."""

    path: str
    index: int
    stored: bool
    executed: bool
    note: str = ""  # why a version is missing


@dataclasses.dataclass(frozen=True)
class KeptCheck:
    """The notebooks kept of a publication's last check of one kind."""

    doi: str
    kind: Kind
    started: datetime
    notebooks: tuple[KeptNotebook, ...]

    def find(self, path: str) -> KeptNotebook | None:
        return next((n for n in self.notebooks if n.path == path), None)


@dataclasses.dataclass(frozen=True)
class KeptVersion:
    """One version of one kept notebook, in the folder of the check that kept it."""

    check: KeptCheck
    folder: Path
    notebook: KeptNotebook
    which: str

    @property
    def file(self) -> Path:
        return self.folder / f"{self.notebook.index}.{self.which}.ipynb"

    def read(self) -> dict[str, Any]:
        """The notebook; FileNotFoundError when a newer check removed this folder meanwhile."""
        file = self.file.resolve()
        if self.folder.resolve() not in file.parents:  # the names are ours; a planted symlink is not
            raise PanbinderError("That notebook is not readable here.", reason="not_found", status_code=404)
        return json.loads(file.read_text("utf-8"))

    def rendered(self) -> str | None:
        """The HTML kept by ``keep_rendered`` (None: none yet, or this check was replaced)."""
        try:
            return (self.folder / f"{self.notebook.index}.{self.which}.html").read_text("utf-8")
        except (FileNotFoundError, NotADirectoryError):
            return None

    def keep_rendered(self, html: str, max_bytes: int) -> bool:
        """Keep ``html`` next to the notebook (at most ``max_bytes``); False when not kept."""
        data = html.encode("utf-8")
        if len(data) > max_bytes:
            return False
        target = self.folder / f"{self.notebook.index}.{self.which}.html"
        partial = target.with_name(f".{target.name}.{secrets.token_hex(4)}")
        try:
            partial.write_bytes(data)
            os.replace(partial, target)
        except OSError:  # the check was replaced meanwhile: its folder is gone
            partial.unlink(missing_ok=True)
            return False
        return True


class KeptNotebooks(LoggingConfigurable):
    """Writes (the check runner) and reads (the portal) the notebooks of each last check."""

    folder = Unicode(
        "",
        help="Folder for the notebooks of each publication's last check, as stored in the "
        "repository and as executed (shown on the publication page); empty: "
        "<state folder>/check-notebooks.",
    ).tag(config=True)
    max_notebook_bytes = Int(
        5_000_000, help="Bytes of one kept notebook (as stored or as executed); a larger one is not kept."
    ).tag(config=True)
    max_notebooks = Int(50, help="Notebooks kept of one check; the rest are listed as not kept.").tag(
        config=True
    )
    max_rendered_bytes = Int(
        20_000_000,
        help="Bytes of one notebook's rendered HTML kept next to it for the portal's notebook view "
        "(a larger one is rendered again on each view).",
    ).tag(config=True)

    def __init__(self, *, state: Path | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.state = state

    @property
    def root(self) -> Path:
        if self.folder:
            return Path(self.folder)
        if self.state is None:
            raise PanbinderError("KeptNotebooks needs a folder or a state folder.", status_code=500)
        return Path(self.state) / "check-notebooks"

    def _publication(self, doi: str) -> Path:
        return self.root / hashlib.sha256(doi.encode("utf-8")).hexdigest()

    def keep(
        self,
        doi: str,
        kind: Kind,
        started: datetime,
        notebooks: Iterable[tuple[str, Mapping[str, Any] | None, Mapping[str, Any] | None]],
    ) -> KeptCheck:
        """Keep ``(path, stored, executed)`` of each notebook (None: that version does not
        exist), replacing what the previous check of ``kind`` kept."""
        home = self._publication(doi)
        home.mkdir(parents=True, exist_ok=True)
        token = secrets.token_hex(8)
        new = home / f".{kind.value}.{token}"
        new.mkdir()
        kept: list[KeptNotebook] = []
        try:
            for index, (path, *versions) in enumerate(notebooks):
                if index >= self.max_notebooks:
                    kept.append(KeptNotebook(path, index, False, False, "not kept: too many notebooks"))
                    continue
                have, notes = {}, []
                for which, notebook in zip(VERSIONS, versions, strict=True):
                    have[which], note = self._write(new / f"{index}.{which}.ipynb", which, notebook)
                    notes += [note] if note else []
                kept.append(KeptNotebook(path, index, have["stored"], have["executed"], "; ".join(notes)))
            check = KeptCheck(doi, kind, started, tuple(kept))
            manifest = {
                "doi": doi,
                "kind": kind.value,
                "started": started.isoformat(),
                "notebooks": [dataclasses.asdict(n) for n in kept],
            }
            (new / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
            self._switch(home / kind.value, new, token)
        except BaseException:
            shutil.rmtree(new, ignore_errors=True)
            raise
        return check

    def _write(self, target: Path, which: str, notebook: Mapping[str, Any] | None) -> tuple[bool, str]:
        if notebook is None:
            return False, f"not {which}" if which == "executed" else "not readable in the repository"
        data = json.dumps(notebook, ensure_ascii=False).encode("utf-8")
        if len(data) > self.max_notebook_bytes:
            return False, f"{which} version not kept: {len(data)} bytes, more than {self.max_notebook_bytes}"
        target.write_bytes(data)
        return True, ""

    @staticmethod
    def _switch(current: Path, new: Path, token: str) -> None:
        """Point ``current`` at ``new`` in one rename, then remove the folder it pointed at."""
        previous = current.parent / os.readlink(current) if current.is_symlink() else None
        link = current.with_name(f".{current.name}.link-{token}")
        os.symlink(new.name, link)
        if current.is_dir() and not current.is_symlink():  # the layout before versioned folders
            previous = current.with_name(f".{current.name}.old-{token}")
            os.replace(current, previous)
        os.replace(link, current)
        if previous is not None and previous != new:
            shutil.rmtree(previous, ignore_errors=True)

    def _folder(self, doi: str, kind: Kind) -> Path:
        """The folder of the last check of ``kind``, resolved once."""
        current = self._publication(doi) / kind.value
        try:
            return current.parent / os.readlink(current)
        except OSError:  # none yet, or the layout before versioned folders
            return current

    @staticmethod
    def _check(folder: Path) -> KeptCheck | None:
        try:
            raw = json.loads((folder / "manifest.json").read_text("utf-8"))
        except (FileNotFoundError, NotADirectoryError):
            return None
        notebooks = tuple(KeptNotebook(**n) for n in raw["notebooks"])
        return KeptCheck(raw["doi"], Kind(raw["kind"]), datetime.fromisoformat(raw["started"]), notebooks)

    def _last(self, doi: str, kind: Kind) -> tuple[KeptCheck | None, Path]:
        for _ in range(3):  # the folder resolved may be removed by a newer check before it is read
            folder = self._folder(doi, kind)
            check = self._check(folder)
            if check is not None or not folder.name.startswith("."):
                break
        return check, folder

    def last(self, doi: str, kind: Kind = Kind.FROZEN) -> KeptCheck | None:
        """The notebooks kept of the publication's last check of ``kind`` (None: none kept)."""
        return self._last(doi, kind)[0]

    def read(self, doi: str, path: str, which: str, kind: Kind = Kind.FROZEN) -> dict[str, Any]:
        """The kept notebook at repository path ``path``, ``which`` version ("stored" or
        "executed"); PanbinderError 404 naming the notebooks there are when it was not kept."""
        for _ in range(2):
            try:
                return self.version(doi, path, which, kind).read()
            except FileNotFoundError:  # a newer check replaced this one meanwhile: read that
                continue
        return self.version(doi, path, which, kind).read()

    def version(self, doi: str, path: str, which: str, kind: Kind = Kind.FROZEN) -> KeptVersion:
        """The kept ``which`` version of the notebook at repository path ``path`` in the last
        check of ``kind``, manifest and file from one folder; PanbinderError 404 naming the
        notebooks there are when it was not kept."""
        if which not in VERSIONS:
            raise PanbinderError(
                f"'as' must be 'stored' or 'executed', not '{which[:40]}'.", reason="bad_argument"
            )
        check, folder = self._last(doi, kind)
        if check is None:
            raise PanbinderError(
                f"No notebooks of {doi} are kept here yet: they are kept when a check runs them.",
                reason="not_found",
                status_code=404,
            )
        found = check.find(path)
        if found is None:
            names = ", ".join(n.path for n in check.notebooks[:20]) or "none"
            raise PanbinderError(
                f"'{path[:200]}' is not a notebook the last check of {doi} ran; those are: {names}.",
                reason="not_found",
                status_code=404,
            )
        if not (found.stored if which == "stored" else found.executed):
            raise PanbinderError(
                f"The {which} version of {path} is not kept: {found.note or 'the check did not get it'}.",
                reason="not_found",
                status_code=404,
            )
        return KeptVersion(check, folder, found, which)


__all__ = ["KeptCheck", "KeptNotebook", "KeptNotebooks", "KeptVersion"]
