"""Compatibility re-exports: the build packs now live in ``panbinder.builder.buildpacks``."""

from __future__ import annotations

from .buildpacks import configure
from .buildpacks.python_pip import LAB_OVERRIDES, PIP_CACHE, DebianPipBuildPack
from .buildpacks.settings import CA_IN_IMAGE, VENV, PackSettings, env_value


def configured_pack(settings: PackSettings) -> type[DebianPipBuildPack]:
    """The plain Python pack carrying this deployment's settings."""
    return configure(DebianPipBuildPack, settings)


__all__ = [
    "CA_IN_IMAGE",
    "LAB_OVERRIDES",
    "PIP_CACHE",
    "VENV",
    "DebianPipBuildPack",
    "PackSettings",
    "configured_pack",
    "env_value",
]
