"""Pipfile and Pipfile.lock, installed with pip (no pipenv): the lock wins over the Pipfile.

Pipfile.lock's ``default`` section (exact pins) or the Pipfile's ``[packages]`` (as written)
become a requirements file inside the build context, installed like requirements.txt (as of its
date). Each line is checked with ``packaging``; environment markers (``markers`` or pipenv's marker
keys such as ``sys_platform``) are kept; a lock's hashes are kept and required
(``--require-hashes``) when every entry has them. The indexes the file names (``[[source]]``) are
used within the deployment's policy (pipfile_sources.py).
As in repo2docker, the files are read from ``binder/`` or ``.binder/`` when that folder exists,
and the repository itself is not ``pip install``-ed (unless the Pipfile lists it as a path).
"""

from __future__ import annotations

import json
import os
import tomllib
from functools import lru_cache
from typing import Any

from packaging.markers import Marker
from packaging.requirements import Requirement

from panbinder.errors import PanbinderError

from . import pipfile_sources
from .python_pip import DebianPipBuildPack
from .settings import notice, write_generated

# Pipfile entries may name environment markers as keys (pipenv: ``sys_platform = "== 'linux'"``).
MARKER_KEYS = (
    "os_name", "sys_platform", "platform_machine", "platform_python_implementation", "platform_release",
    "platform_system", "platform_version", "python_version", "python_full_version",
    "implementation_name", "implementation_version",
)  # fmt: skip


def entry_markers(spec: dict) -> str:
    """The environment markers of a Pipfile / Pipfile.lock entry (``markers`` and marker keys),
    checked by packaging; "" when none."""
    parts = [str(spec["markers"])] if spec.get("markers") else []
    parts += [f"{key} {str(spec[key]).strip()}" for key in MARKER_KEYS if spec.get(key)]
    if not parts:
        return ""
    text = parts[0] if len(parts) == 1 else " and ".join(f"({p})" for p in parts)
    return str(Marker(text))  # InvalidMarker is a ValueError


def requirement_line(name: str, spec: Any) -> str:
    """One pip requirement from a Pipfile / Pipfile.lock entry (a version string or a table),
    checked by packaging (InvalidRequirement is a ValueError)."""
    if isinstance(spec, str):
        line = name if spec.strip() in ("", "*") else f"{name}{spec.strip()}"
        return str(Requirement(line))
    if not isinstance(spec, dict):
        raise ValueError(f"cannot read the entry for {name!r}")
    extras = f"[{','.join(spec['extras'])}]" if spec.get("extras") else ""
    markers = entry_markers(spec)
    marker_part = f" ; {markers}" if markers else ""
    if "git" in spec:
        ref = f"@{spec['ref']}" if spec.get("ref") else ""
        url = spec["git"] if spec["git"].startswith("git+") else "git+" + spec["git"]
        return str(Requirement(f"{name}{extras} @ {url}{ref}{marker_part}"))
    if "path" in spec or "file" in spec:
        target = spec.get("path") or spec.get("file")
        return ("-e " if spec.get("editable") else "") + target + marker_part
    version = spec.get("version", "*")
    version = "" if version.strip() in ("", "*") else version.strip()
    return str(Requirement(f"{name}{extras}{version}{marker_part}"))


def lock_to_requirements(lock: dict) -> list[str]:
    """Pinned requirements from Pipfile.lock's ``default`` section (sorted), each with its hashes
    (``--hash=``) when every entry has them: pip and uv then check every download against the
    lock (``--require-hashes``, ``hashed``). One entry without (a path or git entry) leaves the
    hashes out, as hash-checking mode refuses requirements without hashes."""
    entries = sorted(lock.get("default", {}).items())
    with_hashes = hashed(lock)
    lines = []
    for name, spec in entries:
        line = requirement_line(name, spec)
        if with_hashes:
            line += "".join(f" --hash={h}" for h in spec["hashes"])
        lines.append(line)
    return lines


def hashed(lock: dict) -> bool:
    """Every entry of Pipfile.lock's ``default`` section has hashes (and there is one)."""
    entries = lock.get("default", {}).values()
    return bool(entries) and all(isinstance(s, dict) and s.get("hashes") for s in entries)


def pipfile_to_requirements(pipfile: dict) -> list[str]:
    """Requirements from a Pipfile's ``[packages]`` table, versions as written."""
    return [requirement_line(name, spec) for name, spec in pipfile.get("packages", {}).items()]


class PipfilePipBuildPack(DebianPipBuildPack):
    """Pipfile / Pipfile.lock converted to a requirements file and installed with pip."""

    def detect(self) -> bool:
        name = self.runtime[0]
        if name and name != "python":
            return False
        return os.path.exists(self.binder_path("Pipfile")) or os.path.exists(self.binder_path("Pipfile.lock"))

    def is_python_package(self) -> bool:
        return False

    @lru_cache
    def _parsed(self) -> tuple[str, dict]:
        lock = self.binder_path("Pipfile.lock")
        source = lock if os.path.exists(lock) else self.binder_path("Pipfile")
        try:
            if source.endswith(".lock"):
                with open(source, encoding="utf-8") as f:
                    return source, json.load(f)
            with open(source, "rb") as f:
                return source, tomllib.load(f)
        except (ValueError, tomllib.TOMLDecodeError) as e:
            raise PanbinderError(
                f"{source} could not be read ({e}). Fix the file or regenerate it with 'pipenv lock'.",
                reason="bad_pipfile",
                status_code=422,
            ) from e

    def _install_options(self, path: str) -> str:
        """``--require-hashes`` for a Pipfile.lock whose entries all have hashes."""
        source, data = self._parsed()
        return "--require-hashes" if source.endswith(".lock") and hashed(data) else ""

    def requested_pythons(self) -> list[tuple[str, str]]:
        source, data = self._parsed()
        requires = (data.get("_meta", {}) if source.endswith(".lock") else data).get("requires", {})
        version = requires.get("python_full_version") or requires.get("python_version")
        own = [(str(version), source)] if version else []
        return [*super().requested_pythons(), *own]

    @lru_cache
    def _requirements(self) -> str | None:
        source, data = self._parsed()
        try:
            lines = lock_to_requirements(data) if source.endswith(".lock") else pipfile_to_requirements(data)
        except (ValueError, KeyError, AttributeError) as e:
            raise PanbinderError(
                f"{source} has an entry panbinder cannot convert for pip ({e}). "
                "Fix the entry or use requirements.txt.",
                reason="bad_pipfile",
                status_code=422,
            ) from e
        if source.endswith(".lock") and not hashed(data) and data.get("default"):
            notice(
                self, f"{source} has entries without hashes (path or git entries): downloads are not checked"
            )
        options, message = pipfile_sources.read(data, self.settings, source, lock=source.endswith(".lock"))
        if message:
            notice(self, message)
        name = "requirements-from-" + os.path.basename(source) + ".txt"
        text = "\n".join([*options, *lines])
        return write_generated(name, f"# converted by panbinder from {source}\n" + text + "\n")
