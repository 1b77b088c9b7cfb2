"""``panbinder rebuild --frozen|--fresh IMAGE_OR_DOI``: rebuild an image and compare locks.

``--frozen`` rebuilds the repository at the recorded commit with the exact versions of the
recorded lock (``builder/buildpacks/frozen.py``) and reports whether the new lock is
identical (names, digests and timestamps aside). ``--fresh`` rebuilds from the repository's
files without the layer cache, so pip and apt resolve anew, and prints the differences in
package versions. Both push to a tag of their own, ``<tag>-frozen-<UTC time>`` or
``<tag>-fresh-<UTC time>`` (``registry_cache.naming.derived_ref``), and record its lock.

The rebuild itself is ``rebuilds.rebuild_image`` (a check's rebuild steps call it too); this
command gives it its components and prints its result. The lock is the one the catalogue
recorded for the image; when it has none (another deployment's image, a lost catalogue), the
lock in the image's ``org.panbinder.lock`` label, pulled from the registry first when the image
is not local. A DOI stands for its publication's
image: the repository at the pinned commit, named as the portal names it. The build log goes to
stderr, the report to stdout. Exit status: 0 when done (for ``--frozen``: and identical), 1 when
the frozen lock differs or the build failed, 2 for usage errors and unknown images.
"""

from __future__ import annotations

import asyncio
import sys
from functools import cached_property
from typing import NoReturn

from traitlets import Bool

from .builder.build_engine import BuildEngine
from .builder.manager import BuildManager
from .builder.r2d import Repo2DockerBuilder
from .command import PanbinderBase
from .components import Components
from .data_mounts.catalogue import Catalogue
from .errors import PanbinderError
from .rebuilds import DOI_RE, FRESH, FROZEN, publication_image, rebuild_image
from .registry_cache import Registry


class RebuildApp(PanbinderBase):
    name = "panbinder-rebuild"
    usage = "panbinder rebuild --frozen|--fresh IMAGE_OR_DOI"
    description = (
        "Rebuild IMAGE_OR_DOI from its recorded lock with exact versions (--frozen) and report "
        "whether the new lock is identical, or from the repository's files (--fresh) and print "
        "the differences in package versions."
    )
    classes = [PanbinderBase, Registry, Repo2DockerBuilder, BuildEngine, BuildManager, Catalogue]
    frozen = Bool(False, help="Rebuild with the exact versions of the recorded lock.").tag(config=True)
    fresh = Bool(False, help="Rebuild from the repository's files without the layer cache.").tag(config=True)
    flags = {
        **PanbinderBase.flags,
        "frozen": ({"RebuildApp": {"frozen": True}}, frozen.help),
        "fresh": ({"RebuildApp": {"fresh": True}}, fresh.help),
    }

    @cached_property
    def components(self) -> Components:
        """The catalogue, the registry, the builder and its build manager."""
        return Components(self)

    def fail(self, message: str, status: int = 2) -> NoReturn:
        print(f"error: {message}", file=sys.stderr)
        self.exit(status)
        raise SystemExit(status)

    def start(self) -> None:
        if len(self.extra_args) != 1 or self.frozen == self.fresh:
            self.fail("usage: panbinder rebuild --frozen|--fresh IMAGE_OR_DOI")
        try:
            sys.exit(asyncio.run(self.rebuild(self.extra_args[0])))
        except PanbinderError as e:
            self.log.debug("details", exc_info=True)
            self.fail(e.message)

    def image_of(self, target: str) -> str:
        """The full image name of an image or of a registered publication's DOI."""
        if not DOI_RE.match(target):
            return target
        parts = self.components
        return publication_image(
            parts.catalogue, target, registry=parts.registry.host, prefix=self.image_prefix
        ).full

    async def rebuild(self, target: str) -> int:
        """Rebuild, print the report on stdout (the build log on stderr); the exit status."""
        parts = self.components
        builder = parts.builder
        if not isinstance(builder, Repo2DockerBuilder):
            raise PanbinderError("Rebuilds need the repo2docker builder (ServiceApp.builder_class).")
        result = await rebuild_image(
            self.image_of(target),
            FROZEN if self.frozen else FRESH,
            builder=builder,
            manager=parts.manager,
            catalogue=parts.catalogue,
            log=self.log,
            on_line=sys.stderr.write,
        )
        if result.failure:
            print(f"failed: {result.failure}", file=sys.stderr)
            return 1
        print("\n".join(result.report()))
        return 0 if result.ok else 1
