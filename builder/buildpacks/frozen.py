"""The frozen build pack: rebuild an image from its environment lock with the exact versions.

It is the default pack (``DebianPipBuildPack``) with two changes, so everything else (user,
venv, repository copy, requirements.txt, apt.txt, postBuild, start) happens as in the original
build:

- the single-user server step installs the lock's whole ``pip freeze`` list (a requirements
  file copied into the image) instead of resolving the server requirements anew; the
  repository's own requirements (as of the dates the lock recorded) are then already satisfied, and a repository installed with
  ``pip install .`` (a ``name @ file://`` line) is installed again from its files;
- before it, a root step pins the Debian packages that the lock has and the base image does not
  have in that version (``apt-get install pkg=version``): apt.txt packages, their dependencies
  and repo2docker's base packages. Packages of the base image itself come from the base image.

A lock with a ``conda`` section (an environment.yml built from the conda channel mirror) gets
``FrozenCondaBuildPack`` instead: the environment.yml pack's mirror steps, against this
deployment's mirror settings, with the lock's exact conda packages in place of environment.yml's
specs and the lock's versions for its 'pip:' section (``conda_mirror_lock.pinned_plan``). A
locked package that the mirror no longer has fails the build with a message naming it.

Repositories built from their own Dockerfile cannot be rebuilt frozen (they have no /srv/venv).
"""

from __future__ import annotations

import dataclasses
import logging
import shlex
from functools import lru_cache
from typing import Any

from .conda_mirror import CondaPlan
from .conda_mirror_lock import pinned_plan
from .environment_yml import EnvironmentYmlPipBuildPack
from .installer import locked_as_of
from .python_pip import DebianPipBuildPack
from .settings import PackSettings

FROZEN_IN_IMAGE = "/tmp/panbinder-frozen-requirements.txt"


def frozen_requirements(pip_lines: list[str]) -> str:
    """The lock's pip lines as a requirements file, without the repository's own local install."""
    keep = [ln for ln in pip_lines if ln.strip() and " @ file:" not in ln and not ln.startswith("-e ")]
    return "\n".join(keep) + "\n"


def apt_pins(image_dpkg: dict[str, str], base_dpkg: dict[str, str]) -> list[str]:
    """``pkg=version`` for packages the image has and the base image lacks in that version."""
    return sorted(
        f"{name}={version}" for name, version in image_dpkg.items() if base_dpkg.get(name) != version
    )


class FrozenPipBuildPack(DebianPipBuildPack):
    """Installs a lock's exact pip list and pins its Debian packages (set by ``frozen_pack``)."""

    requirements_file = ""  # host path of the frozen requirements file
    pins: tuple[str, ...] = ()

    def detect(self) -> bool:
        return True

    @lru_cache
    def get_build_script_files(self) -> dict[str, str]:
        return {**super().get_build_script_files(), self.requirements_file: FROZEN_IN_IMAGE}

    @lru_cache
    def get_build_scripts(self) -> list[tuple[str, str]]:
        scripts = list(super().get_build_scripts())
        if self.pins:
            pinned = " ".join(shlex.quote(p) for p in self.pins)
            apt = (
                "apt-get -qq update && apt-get install --yes --no-install-recommends --allow-downgrades "
                f"{pinned} && apt-get -qq clean && rm -rf /var/lib/apt/lists/*"
            )
            scripts.insert(0, ("root", apt))
        return scripts


class FrozenCondaBuildPack(FrozenPipBuildPack, EnvironmentYmlPipBuildPack):
    """``FrozenPipBuildPack`` plus environment.yml's conda mirror steps, pinned to the lock's packages."""

    lock: dict[str, Any] | None = None  # the recorded lock (its conda and conda_pip sections)

    def pin_plan(self, plan: CondaPlan) -> CondaPlan:
        return pinned_plan(plan, self.lock or {})


def frozen_pack(
    settings: PackSettings,
    *,
    requirements_file: str,
    pins: list[str],
    lock: dict[str, Any] | None = None,
    log: logging.Logger | None = None,
) -> type:
    """A configured frozen pack: the server step installs ``requirements_file``; with a ``lock``
    that has a ``conda`` section, the conda environment is installed from the mirror as locked."""
    # requirements files resolve as of the dates the lock recorded, without a new search
    frozen = dataclasses.replace(
        settings,
        server_requirements=("-r", FROZEN_IN_IMAGE),
        as_of="locked",
        as_of_locked=locked_as_of(lock or {}),
    )
    attrs: dict[str, Any] = {
        "settings": frozen,
        "build_log": log,
        "requirements_file": requirements_file,
        "pins": tuple(pins),
    }
    base: type = FrozenPipBuildPack
    if lock and lock.get("conda") is not None:
        base = FrozenCondaBuildPack
        attrs["settings"] = dataclasses.replace(frozen, conda_policy="mirror")
        attrs["lock"] = lock
    return type(base.__name__, (base,), attrs)
