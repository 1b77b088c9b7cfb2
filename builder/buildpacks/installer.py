"""How build steps install Python packages: uv or pip, and as of which date.

**uv or pip** (``PackageInstaller.tool``, default uv). Both install into ``/srv/venv`` the same
versions (the benchmark compares the image locks: identical), uv in about a third of pip's time.
uv is the pinned ``PackageInstaller.uv_requirement`` from the package index, installed with pip
into ``/srv/panbinder-uv`` in the shared server layer (outside the venv: ``pip freeze`` and so
the lock do not list it; the index is what builds reach anyway, so nothing comes from outside).
pip stays for what uv cannot do: when uv fails on a requirements file (pip-only options such as
``--global-option``, a legacy ``setup.py`` that only pip's fallbacks build), pip runs the same
install, and its error lines are the ones the failure explanations read (failure_causes.py).
pip also removes ``drop_packages``. ``pip install .`` of a repository that is a package resolves
as of the date of the last commit that changed its setup.py or pyproject.toml (the date search
reads its dependencies from that file), as do the conda environment's ``pip:`` section
(conda_mirror.py) and a Pipfile.lock, whose hashes it requires (pipfile.py).

**As of a date** (``PackageInstaller.resolve_as_of``, default "requirements"): a requirements
file resolves as of the date of the last commit that changed it (for a generated file, e.g. one
converted from environment.yml or inferred from imports, the last commit that changed an
environment file, else the pinned commit's date). That date, not the pinned commit's, keeps the
requirements layer cached across commits that change only code. "commit" uses the pinned
commit's date (the requirements layer then rebuilds for every commit); "off" resolves with
today's releases. The search for the earliest date that installs on this Python is as_of.py,
run inside the build step (it resolves the repository's requirements, which may name any index
or URL: that belongs in the build engine, not on the host). A frozen rebuild uses the dates its
lock recorded, without a search.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from traitlets import Enum, Unicode
from traitlets.config import Configurable

from . import index_auth
from .settings import GENERATED_DIR, VENV, PackSettings, notice, write_generated

UV_HOME = "/srv/panbinder-uv"
UV = f"{UV_HOME}/bin/uv"
UV_CACHE = "--mount=type=cache,target=/tmp/uv-cache,uid={uid},gid={uid}"
PIP_CACHE = "--mount=type=cache,target=/tmp/pip-cache,uid={uid},gid={uid}"
AS_OF_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "as_of.py")
# Copied into the checkout's generated folder, so into the build context and the repository's
# layers only: a change to it does not rebuild the shared server layer. Steps run in REPO_DIR.
AS_OF_IN_CHECKOUT = os.path.join(GENERATED_DIR, "as_of.py")
# One JSON line per dated install (as_of.py); the lock probe reads it (lock.py).
AS_OF_RECORD = f"{VENV}/panbinder-as-of.jsonl"
ENVIRONMENT_FILES = (
    "requirements.txt",
    "Pipfile",
    "Pipfile.lock",
    "environment.yml",
    "setup.py",
    "pyproject.toml",
)


class PackageInstaller(Configurable):
    """Which tool installs Python packages in builds, and as of which date requirements resolve."""

    tool = Enum(
        ["uv", "pip"],
        "uv",
        help="'uv' resolves and installs with uv (falling back to pip when uv fails on a requirements "
        "file); 'pip' installs with pip only. Both give the same versions (identical locks).",
    ).tag(config=True)
    uv_requirement = Unicode(
        "uv==0.13.9",
        help="The pinned uv that images install with pip from the package index, into "
        "/srv/panbinder-uv (outside the venv), when tool is 'uv' or resolve_as_of is on.",
    ).tag(config=True)
    pip_requirement = Unicode(
        "pip==26.3",
        help="The pip the venv gets before the server requirements (26.x has --uploaded-prior-to).",
    ).tag(config=True)
    resolve_as_of = Enum(
        ["requirements", "commit", "off"],
        "requirements",
        help="Requirements resolve as of a date, stepping forward to the earliest date that resolves "
        "on this Python when nothing from it does: 'requirements' the date of the last commit that "
        "changed the requirements file (code-only commits keep the cached layer), 'commit' the "
        "pinned commit's date, 'off' today's releases. Needs an index with upload times (PEP 700).",
    ).tag(config=True)

    def apply(self, settings: PackSettings) -> PackSettings:
        """``settings`` with these traits filled in (for Repo2DockerBuilder.pack_settings)."""
        return replace(
            settings,
            installer=self.tool,
            uv_requirement=self.uv_requirement,
            pip_requirement=self.pip_requirement,
            as_of=self.resolve_as_of,
        )


def uses_uv(settings: PackSettings) -> bool:
    return settings.installer == "uv" or settings.as_of in ("requirements", "commit")


def build_env(settings: PackSettings) -> list[tuple[str, str]]:
    """Variables uv reads (it ignores pip's): the same indexes, no interpreter downloads, and
    bytecode written at install as pip does (without it every server start compiles the modules it
    imports, in a container layer that is thrown away: about 2 s of each start)."""
    if not uses_uv(settings):
        return []
    env = [("UV_LINK_MODE", "copy"), ("UV_PYTHON_DOWNLOADS", "never"), ("UV_NO_PROGRESS", "1")]
    env.append(("UV_COMPILE_BYTECODE", "1"))
    if settings.index_url:
        env.append(("UV_INDEX_URL", index_auth.public_url(settings.index_url)))
    if settings.extra_index_urls:
        env.append(
            ("UV_EXTRA_INDEX_URL", " ".join(index_auth.public_url(u) for u in settings.extra_index_urls))
        )
    return env


def pip(settings: PackSettings, args: str, dated: bool = False) -> str:
    date = ' ${D:+"--uploaded-prior-to=$D"}' if dated else ""
    return f"PIP_CACHE_DIR=/tmp/pip-cache {VENV}/bin/pip install --no-warn-script-location{date} {args}"


def command(settings: PackSettings, args: str, *, dated: bool = False, what: str = "") -> str:
    """The command installing ``args`` (pip's arguments) into /srv/venv, without the cache mounts.
    ``dated``: as of the date in the shell variable D (empty: none), set by ``dated_install``."""
    if settings.installer != "uv":
        return pip(settings, args, dated)
    date = ' ${D:+"--exclude-newer=$D"}' if dated else ""  # quoted: one argument, or none
    fallback = shlex.quote(f"panbinder: uv could not install {what or args}; trying pip")
    return (
        f"{{ UV_CACHE_DIR=/tmp/uv-cache {UV} pip install{date} {args} || "
        f"{{ echo {fallback} && {pip(settings, args, dated)}; }}; }}"
    )


def mounts(settings: PackSettings) -> str:
    """The cache mounts of an install step, and the index credentials' secret mount when the
    deployment's index URLs carry credentials (they must come first in the RUN line)."""
    uid = settings.uid
    found = [PIP_CACHE.format(uid=uid), UV_CACHE.format(uid=uid) if uses_uv(settings) else ""]
    return " ".join(filter(None, [*found, index_auth.secret_mount(settings)]))


def install(settings: PackSettings, args: str, *, what: str = "") -> str:
    """A whole install step: the cache mounts and ``command``."""
    return f"{mounts(settings)} {command(settings, args, what=what)}"


def setup(settings: PackSettings) -> str:
    """The server layer's start: uv (when used) and the pinned pip, before the server packages."""
    steps = []
    if uses_uv(settings):
        steps.append(
            f"PIP_CACHE_DIR=/tmp/pip-cache {VENV}/bin/pip install --no-warn-script-location -q "
            f"--target {UV_HOME} {shlex.quote(settings.uv_requirement)}"
        )
    if settings.pip_requirement:
        if settings.installer == "uv":
            steps.append(
                f"UV_CACHE_DIR=/tmp/uv-cache {UV} pip install {shlex.quote(settings.pip_requirement)}"
            )
        else:
            steps.append(pip(settings, shlex.quote(settings.pip_requirement)))
    return " && ".join(steps) or "true"


def git_date(*paths: str) -> str:
    """The author date (ISO 8601) of the last commit of the checkout in the current folder that
    changed ``paths`` (of HEAD without paths); "" when git cannot tell."""
    try:
        done = subprocess.run(
            ["git", "log", "-1", "--format=%aI", "HEAD", "--", *paths],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def since(pack: Any, path: str) -> tuple[str, str]:
    """(requested date as ISO 8601 UTC, where it comes from) for the requirements file ``path``;
    ("", "") when requirements resolve with today's releases."""
    policy = pack.settings.as_of
    if policy not in ("requirements", "commit"):
        return "", ""
    found, why = "", "the pinned commit's date"
    if policy == "requirements":
        generated = os.path.normpath(path).startswith(GENERATED_DIR + os.sep)
        files = [pack.binder_path(f) for f in ENVIRONMENT_FILES] if generated else [path]
        found = git_date(*files)
        why = (
            "the last commit that changed the environment files"
            if generated
            else f"the last commit that changed {path}"
        )
    if not found:
        found, why = git_date(), "the pinned commit's date"
    if not found:
        return "", ""
    moment = datetime.fromisoformat(found).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ"), why


def locked_date(settings: PackSettings, path: str) -> str | None:
    """A frozen rebuild's date for ``path`` ("" for none); None when the build is not frozen."""
    if settings.as_of != "locked":
        return None
    return dict(settings.as_of_locked).get(path, "")


def dated_install(pack: Any, path: str, *, args: str = "", options: str = "") -> str:
    """The step installing the requirements file ``path`` as of its date (see the module text).
    ``args``: what to install instead of ``-r path`` (``.`` for a repository that is a package,
    whose ``path`` is then its setup.py or pyproject.toml, which the date search resolves);
    ``options``: more install options (``--require-hashes``)."""
    settings, quoted = pack.settings, shlex.quote(path)
    args = " ".join(filter(None, [options, args or f"-r {quoted}"]))
    locked = locked_date(settings, path)
    if locked is not None:
        if not locked:
            return install(settings, args, what=path)
        dated = command(settings, args, dated=True, what=path)
        return f"{mounts(settings)} D={shlex.quote(locked)} && {dated}"
    search = as_of_search(pack, path, f"{VENV}/bin/python")
    if not search:
        return install(settings, args, what=path)
    dated = command(settings, args, dated=True, what=path)
    return f"{mounts(settings)} D={search} && {dated}"


def as_of_search(pack: Any, path: str, python: str) -> str:
    """The command substitution printing the date the requirements file ``path`` resolves as of
    for the interpreter ``python`` (a shell word: a path, or "$PY"), with the notice saying so;
    "" when requirements resolve with today's releases."""
    settings = pack.settings
    requested, why = since(pack, path)
    if not requested:
        return ""
    notice(pack, f"{path} resolves as of {requested[:10]} ({why}; PackageInstaller.resolve_as_of)")
    search = " ".join(
        shlex.quote(a)
        for a in (
            f"{VENV}/bin/python",
            AS_OF_IN_CHECKOUT,
            f"--since={requested}",
            f"--uv={UV}",
        )
    )
    search += f" --python={python} " + " ".join(
        shlex.quote(a)
        for a in (
            f"--python-version={settings.python_version}",
            f"--label={path}",
            f"--why={why}",
            f"--record={AS_OF_RECORD}",
            path,
        )
    )
    return f"$(UV_CACHE_DIR=/tmp/uv-cache {search})"


def script_files(settings: PackSettings) -> dict[str, str]:
    """Files of the checkout the requirements steps need before the repository is copied (the
    date search, written into the checkout's generated folder)."""
    if settings.as_of not in ("requirements", "commit"):
        return {}
    with open(AS_OF_SCRIPT, encoding="utf-8") as f:
        path = write_generated("as_of.py", f.read())
    return {path: path}


# What uv's --exclude-newer and pip's --uploaded-prior-to take: a day or an RFC 3339 moment.
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2}))?")


def iso_date(value: Any) -> str | None:
    """``value`` when it is an ISO date (``2019-05-03``) or RFC 3339 moment
    (``2019-05-03T14:02:11Z``), else None. The dates come from a file in the built image, which
    the repository's own build code can write, and end up in a shell command."""
    if not isinstance(value, str) or not ISO_DATE.fullmatch(value):
        return None
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value


def locked_as_of(lock: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """(file, date used or "") for each dated install a lock recorded; a date that is not an
    ISO date counts as none."""
    found = []
    for r in lock.get("resolved_as_of") or []:
        if isinstance(r, dict):
            found.append((str(r.get("file", "")), iso_date(r.get("used")) or ""))
    return tuple(found)


__all__ = [
    "AS_OF_RECORD",
    "PackageInstaller",
    "as_of_search",
    "build_env",
    "command",
    "dated_install",
    "install",
    "iso_date",
    "locked_as_of",
    "mounts",
    "script_files",
    "setup",
    "since",
]
