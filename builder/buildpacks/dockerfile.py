"""A Dockerfile (in ``binder/``, ``.binder/`` or the root) used alone, as in repo2docker.

Only images on ``PackSettings.allowed_base_images`` may appear in ``FROM`` (nothing can be
pulled here, and the allow-list keeps builds on vetted local bases); a later ``FROM`` may also
name an earlier stage.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from repo2docker.buildpacks.docker import DockerBuildPack

from panbinder.errors import PanbinderError

from .settings import PackSettings

FROM_RE = re.compile(r"^\s*FROM\s+(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", re.IGNORECASE)


def from_images(text: str) -> list[tuple[str, str | None]]:
    """(image, stage name) of every FROM line, line continuations joined."""
    joined = re.sub(r"\\\r?\n", " ", text)
    return [(m.group(1), m.group(2)) for line in joined.splitlines() if (m := FROM_RE.match(line))]


def check_bases(text: str, source: str, allowed: tuple[str, ...]) -> None:
    """PanbinderError naming the first FROM that is neither allowed nor an earlier stage."""
    stages: set[str] = set()
    images = from_images(text)
    if not images:
        raise PanbinderError(
            f"{source} has no FROM line. Start it with 'FROM {allowed[0] if allowed else 'IMAGE'}'.",
            reason="dockerfile_base_not_allowed",
            status_code=422,
        )
    for image, stage in images:
        if image not in allowed and image.lower() not in stages:
            names = ", ".join(allowed) or "(none configured)"
            raise PanbinderError(
                f"{source} starts FROM '{image}', which is not an allowed base image on this deployment. "
                f"Allowed base images: {names}. Change the FROM line, or remove the Dockerfile to let "
                "panbinder build from requirements.txt and the other configuration files.",
                reason="dockerfile_base_not_allowed",
                status_code=422,
            )
        if stage:
            stages.add(stage.lower())


class AllowListDockerBuildPack(DockerBuildPack):
    """repo2docker's Dockerfile pack with a check of every FROM against the allow-list."""

    settings = PackSettings()
    build_log = None

    def _checked(self) -> str:
        source = self.binder_path("Dockerfile")
        with open(source, encoding="utf-8", errors="replace") as f:
            text = f.read()
        check_bases(text, source, self.settings.allowed_base_images)
        return text

    def render(self, build_args: dict[str, str] | None = None) -> str:
        return self._checked()

    def build(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        self._checked()
        yield from super().build(*args, **kwargs)
