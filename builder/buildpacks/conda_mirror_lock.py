"""The conda environment of a mirror-built image in its environment lock, and the frozen plan.

``lock.PROBE`` reads two more sections in the same ``docker run`` (both empty when the image has
no ``CONDA_PREFIX``):

- ``CONDA_META_PROBE``: every ``conda-meta/*.json`` record, read with the base image's python3,
  becomes the lock's ``conda`` section, ``{name: "<version>=<build> <channel URL>/<subdir>"}``
  (one short string per package, like the package's URL without its file name);
- ``pip freeze --all`` of the environment's own Python, when it has one with pip: ``conda_pip``.

Two locks describe the same conda environment when each package has the same version, build,
channel name and subdir (``conda_environment``): the mirror's host may move. A frozen rebuild
pins each package exactly (``conda_pins``: rattler's ``name ==version build``, which its strict
match spec parser accepts) and ``pinned_plan`` puts the pins in place of environment.yml's specs.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import replace
from typing import Any

from panbinder.errors import PanbinderError

from .conda_mirror import CONDA_PREFIX, CondaPlan

# Prints one JSON object {name: [version, build, channel, subdir, url]}, or "unreadable".
_META_SCRIPT = (
    "import glob, json\n"
    "out = {}\n"
    f"for path in sorted(glob.glob('{CONDA_PREFIX}/conda-meta/*.json')):\n"
    "    with open(path, encoding='utf-8') as f:\n"
    "        r = json.load(f)\n"
    "    out[r['name']] = [str(r.get(k) or '') for k in ('version', 'build', 'channel', 'subdir', 'url')]\n"
    "print(json.dumps(out, sort_keys=True))\n"
)
CONDA_META_PROBE = (
    f"if [ -d {CONDA_PREFIX}/conda-meta ]; then python3 -c {shlex.quote(_META_SCRIPT)} || echo unreadable; fi"
)
CONDA_PIP_PROBE = (
    f"if [ -x {CONDA_PREFIX}/bin/python ] && {CONDA_PREFIX}/bin/python -m pip --version >/dev/null 2>&1; "
    f"then {CONDA_PREFIX}/bin/python -m pip freeze --all --disable-pip-version-check; fi"
)
# The environment.yml 'pip:' lines that refer to the repository's files (installed after the copy).
_LOCAL_RE = re.compile(r"^\s*(-e\s|--editable|-r\s|-c\s|--requirement|\.|/|file:)")


def conda_entry(version: str, build: str, channel: str, subdir: str, url: str = "") -> str:
    """The lock's string for one package; channel and subdir from the URL when the record lacks them."""
    parts = url.rsplit("/", 2)
    channel = (channel or (parts[0] if len(parts) == 3 else "")).rstrip("/")
    subdir = subdir or (parts[1] if len(parts) == 3 else "")
    where = "/".join(p for p in (channel, subdir) if p)
    return f"{version}={build}" + (f" {where}" if where else "")


def split_entry(entry: str) -> tuple[str, str, str]:
    """(version, build, "channel URL/subdir") of a ``conda`` section value."""
    pinned, _, where = entry.partition(" ")
    version, _, build = pinned.partition("=")
    return version, build, where


def parse_conda_meta(text: str) -> dict[str, str] | None:
    """The ``conda`` section from ``CONDA_META_PROBE``'s output; None when it printed nothing."""
    text = text.strip()
    if not text:
        return None
    try:
        records = json.loads(text)
        return {name: conda_entry(*fields) for name, fields in sorted(records.items())}
    except (ValueError, TypeError, AttributeError) as e:
        raise PanbinderError(
            f"The conda packages of the image could not be read from {CONDA_PREFIX}/conda-meta; "
            "rebuild the image.",
            reason="lock",
            log_message=f"unexpected conda-meta probe output: {text[:500]!r}",
        ) from e


def conda_environment(conda: dict[str, str]) -> dict[str, str]:
    """{name: "version=build channel-name/subdir"}: the conda section without the mirror's address."""
    found = {}
    for name, entry in conda.items():
        version, build, where = split_entry(entry)
        short = "/".join(where.rstrip("/").split("/")[-2:]) if "/" in where else where
        found[name] = f"{version}={build}" + (f" {short}" if short else "")
    return found


def conda_pins(conda: dict[str, str]) -> list[str]:
    """One exact match spec per locked package: ``name ==version build``."""
    pins = []
    for name, entry in sorted(conda.items()):
        version, build, _ = split_entry(entry)
        pins.append(f"{name} =={version} {build}" if build else f"{name} =={version}")
    return pins


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def frozen_conda_pip(plan: CondaPlan, conda: dict[str, str], conda_pip: list[str]) -> tuple[str, ...]:
    """The 'pip:' lines of a frozen plan: the lock's ``conda_pip`` versions of what pip installed
    (not the conda packages, not the repository itself), then the section's local lines.

    Without ``conda_pip`` the section went into /srv/venv, whose frozen list has it already.
    """
    if not plan.pip:
        return ()
    conda_names = {_normalise(name) for name in conda}
    pinned = [
        line.strip()
        for line in conda_pip
        if line.strip()
        and " @ " not in line
        and not line.startswith("-e ")
        and _normalise(re.split(r"[=<>!~\[ ]", line.strip(), maxsplit=1)[0]) not in conda_names
    ]
    return (*pinned, *(p for p in plan.pip if _LOCAL_RE.match(p)))


def pinned_plan(plan: CondaPlan, lock: dict[str, Any]) -> CondaPlan:
    """``plan`` (environment.yml's channels against this deployment's mirror) with the lock's
    exact conda packages instead of environment.yml's specs, and its pip versions."""
    conda = lock.get("conda") or {}
    pip = frozen_conda_pip(plan, conda, list(lock.get("conda_pip") or []))
    return replace(plan, specs=tuple(conda_pins(conda)), pip=pip, pinned=True)


__all__ = [
    "CONDA_META_PROBE",
    "CONDA_PIP_PROBE",
    "conda_entry",
    "conda_environment",
    "conda_pins",
    "frozen_conda_pip",
    "parse_conda_meta",
    "pinned_plan",
    "split_entry",
]
