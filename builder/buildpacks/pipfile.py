"""Pipfile and Pipfile.lock, installed with pip (no pipenv): the lock wins over the Pipfile.

Pipfile.lock's ``default`` section (exact pins) or the Pipfile's ``[packages]`` (as written)
become a requirements file inside the build context, installed like requirements.txt.
As in repo2docker, the files are read from ``binder/`` or ``.binder/`` when that folder exists,
and the repository itself is not ``pip install``-ed (unless the Pipfile lists it as a path).
"""

from __future__ import annotations

import json
import os
import tomllib
from functools import lru_cache
from typing import Any

from panbinder.errors import PanbinderError

from .python_pip import DebianPipBuildPack
from .settings import write_generated


def requirement_line(name: str, spec: Any) -> str:
    """One pip requirement from a Pipfile / Pipfile.lock entry (a version string or a table)."""
    if isinstance(spec, str):
        return name if spec.strip() in ("", "*") else f"{name}{spec.strip()}"
    if not isinstance(spec, dict):
        raise ValueError(f"cannot read the entry for {name!r}")
    extras = f"[{','.join(spec['extras'])}]" if spec.get("extras") else ""
    markers = f" ; {spec['markers']}" if spec.get("markers") else ""
    if "git" in spec:
        ref = f"@{spec['ref']}" if spec.get("ref") else ""
        url = spec["git"] if spec["git"].startswith("git+") else "git+" + spec["git"]
        return f"{name}{extras} @ {url}{ref}{markers}"
    if "path" in spec or "file" in spec:
        target = spec.get("path") or spec.get("file")
        return ("-e " if spec.get("editable") else "") + target
    version = spec.get("version", "*")
    version = "" if version.strip() in ("", "*") else version.strip()
    return f"{name}{extras}{version}{markers}"


def lock_to_requirements(lock: dict) -> list[str]:
    """Pinned requirements from Pipfile.lock's ``default`` section (sorted, hashes left out)."""
    return [requirement_line(name, spec) for name, spec in sorted(lock.get("default", {}).items())]


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
        name = "requirements-from-" + os.path.basename(source) + ".txt"
        return write_generated(name, f"# converted by panbinder from {source}\n" + "\n".join(lines) + "\n")
