"""``panbinder rebuild --frozen|--fresh IMAGE_OR_DOI``: rebuild an image and compare locks.

``--frozen`` rebuilds the repository at the recorded commit with the exact versions of the
recorded lock (``builder/buildpacks/frozen.py``) and reports whether the new lock is
identical (names, digests and timestamps aside). ``--fresh`` rebuilds from the repository's
files without the layer cache, so pip and apt resolve anew, and prints the differences in
package versions. Both push to a tag of their own, ``<tag>-frozen-<UTC time>`` or
``<tag>-fresh-<UTC time>`` (``registry_cache.naming.derived_ref``), and record its lock.

The lock is the one the catalogue recorded for the image; when it has none (another
deployment's image, a lost catalogue), the lock in the image's ``org.panbinder.lock`` label,
pulled from the registry first when the image is not local. A DOI stands for its publication's
image: the repository at the pinned commit, named as the portal names it. The build log goes to
stderr, the report to stdout. Exit status: 0 when done (for ``--frozen``: and identical), 1 when
the frozen lock differs or the build failed, 2 for usage errors and unknown images.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import sys
import tempfile
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, NoReturn

from traitlets import Bool

from .builder.base import BuildRequest
from .builder.build_engine import BuildEngine
from .builder.buildpacks.frozen import apt_pins, frozen_pack, frozen_requirements
from .builder.lock import LABEL, diff_locks, dpkg_of, format_diff, image_lock, is_empty
from .builder.manager import BuildManager
from .builder.r2d import Repo2DockerBuilder
from .command import PanbinderBase
from .components import Components
from .data_mounts.catalogue import Catalogue
from .docker_engine import Docker
from .errors import PanbinderError
from .executor import run_blocking
from .registry_cache import Registry, image_ref
from .registry_cache.naming import ImageRef, derived_ref, parse_image

DOI_RE = re.compile(r"^(doi:|https?://(dx\.)?doi\.org/)?10\.\d{4,9}/\S+$", re.IGNORECASE)


class RebuildBuilder(Repo2DockerBuilder):
    """Repo2DockerBuilder with an optional frozen pack and without the layer cache on demand."""

    frozen: dict[str, Any] | None = None  # {"requirements_file": path, "pins": [...], "lock": {...}}
    no_cache = False

    def _make_r2d(self, request, log, workdir):
        r2d = super()._make_r2d(request, log, workdir)
        if self.frozen is not None:
            pack = frozen_pack(self.pack_settings(), log=log, **self.frozen)
            r2d.buildpacks, r2d.default_buildpack = [pack], pack
        if self.no_cache:
            r2d.config.BuildKitEngine.no_cache = True
        return r2d


def docker_cli(builder: Repo2DockerBuilder) -> Docker:
    """The build engine, where rebuilds and their probes run."""
    return builder.build_engine.docker()


def lock_in_label(image: str, *, docker_cli: Docker) -> dict[str, Any] | None:
    """The lock in ``image``'s label, pulling the image first when it is not local (None if absent)."""
    lock = image_lock(image, docker_cli=docker_cli)
    if lock is not None or docker_cli.has_image(image):
        return lock
    try:
        docker_cli.pull(image)
    except Exception:  # not in the registry, or the registry away: no lock
        return None
    return image_lock(image, docker_cli=docker_cli)


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
        """The catalogue, the registry, the rebuild's builder and its build manager."""
        return Components(self, builder_class=RebuildBuilder)

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
        with self.components.catalogue.session() as s:
            pub = self.components.catalogue.get_publication(s, target)
            if pub is None:
                raise PanbinderError(f"No publication with DOI {target} is registered; check the DOI.")
            repo_url, sha = pub.repo_url, pub.resolved_sha
        host = self.components.registry.host
        return image_ref(
            registry=host, prefix=self.image_prefix, provider="git", repo_url=repo_url, ref=sha
        ).full

    async def recorded_lock(self, image: str, builder: Repo2DockerBuilder) -> dict[str, Any]:
        """The catalogue's lock of ``image``, else the lock in its label."""
        recorded = self.components.catalogue.get_lock(image)
        if recorded is not None:
            return recorded
        recorded = await run_blocking(lock_in_label, image, docker_cli=docker_cli(builder))
        if recorded is None:
            raise PanbinderError(
                f"No lock is recorded for {image}, neither in the catalogue nor in the image's {LABEL} "
                "label. Build it first (panbinder build, or launch it); every build records its lock."
            )
        self.log.info("the catalogue has no lock for %s; using the lock in its %s label", image, LABEL)
        return recorded

    async def rebuild(self, target: str) -> int:
        image = self.image_of(target)
        builder = self.components.builder
        assert isinstance(builder, RebuildBuilder)
        recorded = await self.recorded_lock(image, builder)
        kind = "frozen" if self.frozen else "fresh"
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        target_ref = derived_ref(parse_image(image), kind, stamp)
        with tempfile.TemporaryDirectory(prefix="panbinder-rebuild-") as tmp:
            if self.frozen:
                builder.frozen = await run_blocking(self.frozen_inputs, builder, recorded, tmp)
            else:
                builder.no_cache = True
            new_lock = await self.build(builder, recorded, target_ref)
        if new_lock is None:
            return 1
        diff = diff_locks(recorded, new_lock)
        same = is_empty(diff)
        print(f"{kind} rebuild of {image}: {target_ref.full}")
        if self.frozen:
            print("lock: identical" if same else "lock: differs")
        print("differences (recorded -> rebuilt):")
        print(format_diff(diff) if not same else "(none)")
        return 0 if same or self.fresh else 1

    def frozen_inputs(self, builder: Repo2DockerBuilder, lock: dict[str, Any], tmp: str) -> dict[str, Any]:
        path = os.path.join(tmp, "frozen-requirements.txt")
        with open(path, "w", encoding="utf-8") as f:
            f.write(frozen_requirements(lock.get("pip", [])))
        base = dpkg_of(builder.base_image, docker_cli=docker_cli(builder))
        return {"requirements_file": path, "pins": apt_pins(lock.get("dpkg", {}), base), "lock": lock}

    async def build(
        self, builder: Repo2DockerBuilder, lock: dict[str, Any], target: ImageRef
    ) -> dict[str, Any] | None:
        """Build and push ``target``; record and return its lock (None when the build failed)."""
        captured: dict[str, Any] = {}

        def on_built(image: str, digest: str, new_lock: dict[str, Any]) -> None:
            self.components.catalogue.record_lock(image, digest, new_lock)
            captured["lock"] = new_lock

        builder.on_built = on_built
        repo = lock.get("repo", {})
        if not repo.get("url") or not repo.get("commit"):
            raise PanbinderError("The recorded lock names no repository and commit; it cannot be rebuilt.")
        request = BuildRequest(
            build_id=secrets.token_hex(8),
            provider="git",
            repo_url=repo["url"],
            resolved_ref=repo["commit"],
            unresolved_ref=repo["commit"],
            image=target,
        )
        # through a build manager: the build timeout, the step limits and the kept log apply
        manager = self.components.manager
        job, _ = manager.attach(request)
        async for event in manager.follow(job):
            if event.phase == "failed":
                print(f"failed: {event.message}", file=sys.stderr)
                return None
            if event.message:
                sys.stderr.write(event.message)
        if "lock" not in captured:
            print("failed: the rebuilt image's lock could not be read (see the log)", file=sys.stderr)
            return None
        return captured["lock"]
