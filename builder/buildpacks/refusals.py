"""R and Julia environments: detected with repo2docker's rules and refused with a clear message.

A deployment that can build them registers its own packs (entry point group
``panbinder.buildpacks`` or ``Repo2DockerBuilder.extra_buildpacks``); those are tried first.
"""

from __future__ import annotations

import os
from typing import Any

from repo2docker.buildpacks.base import BaseImage

from panbinder.errors import PanbinderError

from .settings import PackSettings


class RefusalBuildPack(BaseImage):
    """Detects a kind of environment and refuses it in render() and build()."""

    settings = PackSettings()
    build_log = None
    kind = ""

    def found(self) -> list[str]:
        """The files that ask for this environment."""
        return []

    def detect(self) -> bool:
        return bool(self.found())

    def refuse(self) -> PanbinderError:
        files = ", ".join(self.found())
        return PanbinderError(
            f"{self.kind} environments are not available on this deployment (found {files}). "
            "Use requirements.txt (Python) and apt.txt (Debian packages), or ask the operators "
            f"for a deployment with {self.kind}.",
            reason="environment_unavailable",
            status_code=422,
        )

    def render(self, build_args: dict[str, str] | None = None) -> str:
        raise self.refuse()

    def build(self, *args: Any, **kwargs: Any) -> Any:
        raise self.refuse()


class RRefusal(RefusalBuildPack):
    """install.R, DESCRIPTION (root, no binder folder) or runtime.txt naming r-..."""

    kind = "R / Julia"

    def found(self) -> list[str]:
        hits = [p for p in (self.binder_path("install.R"),) if os.path.exists(p)]
        if not self.binder_dir and os.path.exists("DESCRIPTION"):
            hits.append("DESCRIPTION")
        try:
            if self.runtime[0] == "r":
                hits.append(self.binder_path("runtime.txt"))
        except ValueError:
            pass
        return hits


class JuliaRefusal(RefusalBuildPack):
    """Project.toml, JuliaProject.toml or REQUIRE."""

    kind = "R / Julia"

    def found(self) -> list[str]:
        names = ("Project.toml", "JuliaProject.toml", "REQUIRE")
        return [self.binder_path(n) for n in names if os.path.exists(self.binder_path(n))]
