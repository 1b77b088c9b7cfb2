"""The frozen build pack: rebuild an image from its environment lock with the exact versions.

It is the default pack (``DebianPipBuildPack``) with two changes, so everything else (user,
venv, repository copy, requirements.txt, apt.txt, postBuild, start) happens as in the original
build:

- the single-user server step installs the lock's whole ``pip freeze`` list (a requirements
  file copied into the image) instead of resolving the server requirements anew; the
  repository's own requirements are then already satisfied, and a repository installed with
  ``pip install .`` (a ``name @ file://`` line) is installed again from its files;
- before it, a root step pins the Debian packages that the lock has and the base image does not
  have in that version (``apt-get install pkg=version``): apt.txt packages, their dependencies
  and repo2docker's base packages. Packages of the base image itself come from the base image.

Repositories built from their own Dockerfile cannot be rebuilt frozen (they have no /srv/venv).
"""

from __future__ import annotations

import dataclasses
import logging
import shlex
from functools import lru_cache

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


def frozen_pack(
    settings: PackSettings,
    *,
    requirements_file: str,
    pins: list[str],
    log: logging.Logger | None = None,
) -> type:
    """A configured ``FrozenPipBuildPack``: the server step installs ``requirements_file``."""
    frozen = dataclasses.replace(settings, server_requirements=("-r", FROZEN_IN_IMAGE))
    attrs = {
        "settings": frozen,
        "build_log": log,
        "requirements_file": requirements_file,
        "pins": tuple(pins),
    }
    return type(FrozenPipBuildPack.__name__, (FrozenPipBuildPack,), attrs)
