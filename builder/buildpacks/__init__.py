"""panbinder's build packs and the one list that registers them, in repo2docker's order.

repo2docker picks the first pack whose ``detect()`` is true, so the order is the precedence:
a Dockerfile is used alone, then R / Julia (refused here), environment.yml, Pipfile, and
finally plain Python (requirements.txt, setup.py, pyproject.toml), which is also the default.
Each pack reads ``binder/`` or ``.binder/`` instead of the root when such a folder exists.

Plug-in seam: packs named in the entry point group ``panbinder.buildpacks`` and in
``Repo2DockerBuilder.extra_buildpacks`` ("module:Class") are tried *before* these, so a
deployment that can build R adds a pack that wins over the R refusal without touching it.
"""

from __future__ import annotations

import importlib
import logging
from importlib.metadata import entry_points

from .dockerfile import AllowListDockerBuildPack
from .environment_yml import EnvironmentYmlPipBuildPack
from .pipfile import PipfilePipBuildPack
from .python_pip import DebianPipBuildPack
from .refusals import JuliaRefusal, RRefusal
from .settings import BASE_IMAGE, CA_IN_IMAGE, NOTICE_PREFIX, VENV, PackSettings, env_value

ENTRY_POINT_GROUP = "panbinder.buildpacks"
BUILTIN_PACKS: list[type] = [
    AllowListDockerBuildPack,
    JuliaRefusal,
    RRefusal,
    EnvironmentYmlPipBuildPack,
    PipfilePipBuildPack,
    DebianPipBuildPack,
]


def import_pack(path: str) -> type:
    """A class from "package.module:Class"."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def plugin_packs(extra: list[str] | tuple[str, ...] = ()) -> list[type]:
    """Packs from the entry point group (sorted by name), then those named in ``extra``."""
    found = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)
    return [ep.load() for ep in found] + [import_pack(p) for p in extra]


def configure(pack: type, settings: PackSettings, log: logging.Logger | None = None) -> type:
    """A subclass carrying this deployment's settings (repo2docker instantiates packs itself)."""
    return type(pack.__name__, (pack,), {"settings": settings, "build_log": log})


def configured_packs(
    settings: PackSettings, log: logging.Logger | None = None, extra: list[str] | tuple[str, ...] = ()
) -> list[type]:
    """Every pack, plug-ins first, configured; the last one is the default pack."""
    return [configure(p, settings, log) for p in [*plugin_packs(extra), *BUILTIN_PACKS]]


__all__ = [
    "BASE_IMAGE",
    "BUILTIN_PACKS",
    "CA_IN_IMAGE",
    "ENTRY_POINT_GROUP",
    "NOTICE_PREFIX",
    "VENV",
    "AllowListDockerBuildPack",
    "DebianPipBuildPack",
    "EnvironmentYmlPipBuildPack",
    "JuliaRefusal",
    "PackSettings",
    "PipfilePipBuildPack",
    "RRefusal",
    "configure",
    "configured_packs",
    "env_value",
    "plugin_packs",
]
