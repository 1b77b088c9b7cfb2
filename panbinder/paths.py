"""Path confinement: every dataset location stays under a configured storage root.

``confine`` is the one check used when a location is registered (import, scan), when a launch
plans its mounts and again in the Hub's spawner. ``safe_join`` is the only way a string that
came from outside (a record, a PID, a file name) becomes part of a path. ``slug`` names a
dataset's mount point. These are shared helpers (the catalogue, the spawner, the build logs and
the portal use them), so they live in the core package and import nothing but its errors.

Refusals name a path relative to its storage root (``shown_name``), never the host's absolute
path: messages reach anonymous readers and launched servers' owners, and an absolute path tells
them how the facility's storage is laid out. The absolute path goes to ``log_message``.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from .errors import PanbinderError

SLUG_MAX = 48
_SLUG_BAD = re.compile(r"[^a-z0-9._-]+")


def _refuse(message: str, log_message: str | None = None) -> PanbinderError:
    return PanbinderError(message, reason="path_refused", status_code=403, log_message=log_message)


def shown_name(path: str | os.PathLike[str], roots: Iterable[str | os.PathLike[str]] = ()) -> str:
    """``path`` as users may see it: relative to the root it lies under (as spelled, before
    symlinks), else only its last component."""
    raw = os.path.normpath(os.fspath(path))
    for root in roots:
        base = os.path.normpath(os.fspath(root))
        if base and os.path.isabs(base) and (raw == base or raw.startswith(base.rstrip("/") + "/")):
            return os.path.relpath(raw, base) if raw != base else "."
    return os.path.basename(raw) or "."


def _resolve(
    path: str | os.PathLike[str], *, strict: bool, roots: Iterable[str | os.PathLike[str]] = ()
) -> Path:
    raw = os.fspath(path)
    if "\0" in raw:
        raise _refuse("A path may not contain NUL characters.")
    shown = shown_name(raw, roots)
    try:
        return Path(raw).resolve(strict=strict)
    except FileNotFoundError:
        raise PanbinderError(
            f"'{shown}' does not exist; check the path or ask the facility where the files are.",
            reason="path_missing",
            status_code=404,
            log_message=f"{raw} does not exist",
        ) from None
    except (OSError, RuntimeError) as e:  # symlink loop, permission denied on a parent
        raise _refuse(
            f"'{shown}' cannot be resolved ({e.__class__.__name__}); check its symbolic links.",
            log_message=f"{raw} cannot be resolved: {e}",
        ) from None


def resolved_roots(roots: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """The storage roots with their symlinks resolved (a root may itself be a symlink)."""
    out = []
    for root in roots:
        raw = os.fspath(root)
        if not raw or not os.path.isabs(raw):
            raise _refuse(
                f"Storage root '{raw}' is not an absolute path; "
                "fix Catalogue.storage_roots in the configuration."
            )
        out.append(_resolve(raw, strict=False))
    return out


def confine(
    path: str | os.PathLike[str], roots: Iterable[str | os.PathLike[str]], *, must_exist: bool = True
) -> Path:
    """``path`` resolved (symlinks followed), if it lies inside one of ``roots``; else PanbinderError.

    With ``must_exist`` (the default) the path is resolved strictly and a missing path is an
    error (``reason="path_missing"``, status 404). Relative paths are refused: a location is
    absolute. ``..`` components and symlinks are resolved first, so an escape through either
    is caught (``reason="path_refused"``, status 403).
    """
    raw = os.fspath(path)
    root_list = resolved_roots(roots)
    if not root_list:
        raise _refuse(
            "No storage roots are configured, so no dataset location is allowed; "
            "set Catalogue.storage_roots to the folders that hold facility data."
        )
    if not raw or not os.path.isabs(raw):
        raise _refuse(f"'{raw}' is not an absolute path; give the full path of the dataset on the storage.")
    given = [os.fspath(r) for r in roots]
    resolved = _resolve(raw, strict=must_exist, roots=[*given, *map(str, root_list)])
    for root in root_list:
        if resolved.is_relative_to(root):
            return resolved
    shown = shown_name(raw, [*given, *map(str, root_list)])
    raise _refuse(
        f"'{shown}' is outside the storage roots; move the data under a storage root "
        "or add its root to Catalogue.storage_roots.",
        log_message=f"{raw} resolves to {resolved}, outside {', '.join(map(str, root_list))}",
    )


def check_relative(relative: str) -> PurePosixPath:
    """A relative POSIX path with no ``..``, no absolute start and no NUL; else PanbinderError."""
    if not isinstance(relative, str) or not relative or "\0" in relative or "\\" in relative:
        raise _refuse(f"'{relative}' is not a usable relative path.")
    rel = PurePosixPath(relative)
    if rel.is_absolute() or relative.startswith("~") or re.match(r"^[A-Za-z]:", relative):
        raise _refuse(f"'{relative}' is an absolute path; give a path relative to the storage root.")
    if any(part == ".." for part in rel.parts):
        raise _refuse(f"'{relative}' climbs out of its folder with '..'; give a path inside it.")
    if not rel.parts:
        raise _refuse("An empty relative path names no file.")
    return rel


def safe_join(root: str | os.PathLike[str], relative: str) -> Path:
    """``root / relative`` with symlinks resolved, refusing anything that leaves ``root``."""
    rel = check_relative(relative)
    base = _resolve(root, strict=False)
    joined = _resolve(base.joinpath(*rel.parts), strict=False, roots=[base])
    if not joined.is_relative_to(base) or joined == base:
        raise _refuse(
            f"'{relative}' leads outside its folder (through a symbolic link); remove the link.",
            log_message=f"{base}/{relative} resolves to {joined}, outside {os.fspath(root)}",
        )
    return joined


def slug(pid: str) -> str:
    """A safe, unique folder name for a PID: ``[a-z0-9._-]``, bounded, plus a short hash of the PID.

    Launches mount each dataset at ``/data/<slug>/``. Golden values are pinned in the tests:
    changing this function renames every mount point.
    """
    digest = hashlib.sha256(pid.encode("utf-8")).hexdigest()[:8]
    base = _SLUG_BAD.sub("-", pid.lower()).strip("-._")[:SLUG_MAX].rstrip("-._")
    return f"{base}-{digest}" if base else f"dataset-{digest}"
