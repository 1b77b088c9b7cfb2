"""Placing an archive record's files in the build's checkout, confined and bounded.

A record's file names, and the members of a zip or tar it holds, are hostile input: every name
goes through ``safe_join`` (no absolute paths, no ``..``, no way out through a link), tar members
other than files and folders (links, devices, fifos) are skipped, so is anything inside a folder
named ``.git`` (a record's own git configuration or hooks would run commands when git reads the
checkout), and the unpacked size counts
against a limit so a small zip cannot fill the disk. As repo2docker does, a record holding a
single zip or tar is unpacked, and an archive whose members all sit in one top folder (GitHub's
release zips, the Software Heritage vault's tarballs) has that folder removed.
"""

from __future__ import annotations

import errno
import logging
import os
import posixpath
import re
import shutil
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from panbinder.errors import PanbinderError
from panbinder.paths import safe_join

from ..checkout import human

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
_SEPARATORS = re.compile(r"[/\\]")
_default_log = logging.getLogger(__name__)


def in_git_folder(name: str) -> bool:
    """Whether the record's path ``name`` is, or lies inside, a folder named ``.git`` (any case)."""
    return any(part.lower() == ".git" for part in _SEPARATORS.split(name))


def _names_the_root(name: str) -> bool:
    """``.``, ``./`` or empty: the folder itself, as ``tar -C dir -czf x.tgz .`` writes first."""
    return posixpath.normpath(name.replace("\\", "/").strip("/") or ".") == "."


def skipped(name: str, log: logging.Logger | None = None) -> bool:
    """Whether ``name`` is left out of the checkout (inside a ``.git`` folder), logged when so."""
    if in_git_folder(name):
        (log or _default_log).warning("Skipping the record's file %r: it lies in a .git folder", name)
        return True
    return False


def is_archive(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def target(root: Path, name: str) -> Path:
    """Where the file ``name`` (a relative path from a record) goes under ``root``; never inside a
    ``.git`` folder (callers leave those names out first, with ``skipped``)."""
    if in_git_folder(name):
        raise PanbinderError(
            f"The record names a file '{name}' inside a .git folder; this service does not build it.",
            reason="archive_bad_member",
            status_code=422,
        )
    try:
        return safe_join(root, name.strip("/"))
    except PanbinderError:
        raise PanbinderError(
            f"The record names a file '{name}' outside its own folder; this service does not build it.",
            reason="archive_bad_member",
            status_code=422,
        ) from None


CLASHES = (errno.ENOTDIR, errno.EEXIST, errno.EISDIR)


def clash(root: Path, error: OSError) -> PanbinderError:
    """The 422 for a name that is both a file and a folder (``a``, then ``a/b``) in a record."""
    name = os.path.relpath(error.filename, root) if error.filename else "a name"
    return PanbinderError(
        f"The record holds '{name}' both as a file and as a folder; this service does not build it.",
        reason="archive_bad_member",
        log_message=f"placing {name} under {root}: {error!r}",
        status_code=422,
    )


def _too_big(limit: int) -> PanbinderError:
    return PanbinderError(
        f"The record's archive unpacks to more than this service's limit of {human(limit)}; move "
        "large data into a dataset linked to the publication, or ask the operators.",
        reason="archive_too_large",
        status_code=413,
    )


def _copy(src, dest: Path, limit: int, used: list[int], check: Callable[[], None]) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "wb") as out:
        while chunk := src.read(1 << 16):
            used[0] += len(chunk)
            if limit > 0 and used[0] > limit:
                raise _too_big(limit)
            out.write(chunk)
            check()


def unpack(
    path: Path,
    dest: Path,
    *,
    limit: int,
    check: Callable[[], None] = lambda: None,
    log: logging.Logger | None = None,
) -> None:
    """Unpack the zip or tar at ``path`` into ``dest`` (files and folders only), within ``limit``."""
    used = [0]
    try:
        if path.name.lower().endswith(".zip"):
            with zipfile.ZipFile(path) as zf:
                for info in zf.infolist():
                    if _names_the_root(info.filename) or skipped(info.filename, log):
                        continue
                    if info.is_dir():
                        target(dest, info.filename).mkdir(parents=True, exist_ok=True)
                        continue
                    mode = (info.external_attr >> 16) & 0o170000
                    if mode not in (0, 0o100000):  # a symbolic link or other special member
                        continue
                    with zf.open(info) as src:
                        _copy(src, target(dest, info.filename), limit, used, check)
            return
        with tarfile.open(path) as tf:
            for member in tf:
                if _names_the_root(member.name) or skipped(member.name, log):
                    continue
                if member.isdir():
                    target(dest, member.name).mkdir(parents=True, exist_ok=True)
                elif member.isfile():
                    src = tf.extractfile(member)
                    if src is not None:
                        out = target(dest, member.name)
                        _copy(src, out, limit, used, check)
                        if member.mode & 0o111:
                            out.chmod(0o755)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as e:
        if isinstance(e, OSError) and e.errno in CLASHES:
            raise clash(dest, e) from None
        if isinstance(e, OSError) and not isinstance(e, EOFError) and e.errno is not None:
            raise
        raise PanbinderError(
            f"The record's file {path.name} is not a readable zip or tar archive; check the record.",
            reason="archive_unreadable",
            log_message=f"unpacking {path}: {e!r}",
            status_code=422,
        ) from None


def flatten(root: Path) -> None:
    """When ``root`` holds exactly one folder and nothing else, move its content up."""
    entries = list(root.iterdir())
    if len(entries) != 1 or not entries[0].is_dir() or entries[0].is_symlink():
        return
    inner = entries[0]
    hold = root / f".panbinder-flatten-{os.getpid()}"
    inner.rename(hold)
    for child in hold.iterdir():
        child.rename(root / child.name)
    shutil.rmtree(hold)


__all__ = ["CLASHES", "clash", "flatten", "in_git_folder", "is_archive", "skipped", "target", "unpack"]
