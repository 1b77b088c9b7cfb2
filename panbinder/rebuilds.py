"""Rebuild an image from its recorded lock (frozen) or from the repository's files (fresh), with
the components it is given, and say whether the lock came out the same.

``rebuild_image`` is what ``panbinder rebuild`` (``rebuild.py``) prints and what a check's
rebuild steps record (``checks.runner``). It takes the builder, the build manager (the build
queue, its timeout and step limits) and the catalogue of the command that runs it: inside
``panbinder serve`` that is serve's own manager, so a nightly check's rebuild waits for a slot
behind readers' builds (``background``) instead of starting a second queue beside them. What
makes the build a rebuild travels with its request (``builder.base.Recipe``), so the shared
builder serves readers' builds at the same time. The rebuilt image's lock is the one the build
recorded in the catalogue (the composition root's ``Builder.on_built``).

A frozen rebuild installs the recorded lock's exact pip list and pins its Debian packages; a
fresh one rebuilds from the repository's files without the layer cache, so pip and apt resolve
anew. Both push to a tag of their own, ``<tag>-frozen-<UTC time>`` or ``<tag>-fresh-<UTC time>``
(``registry_cache.naming.derived_ref``).

A check passes the publication's archive's ``git bundle`` (``bundle``): when the upstream
repository cannot give the pinned commit, the build checks that commit out of the bundle
(``builder.clone``) and the result says so (``RebuildResult.repository``, in its summary).
"""

from __future__ import annotations

import dataclasses
import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .builder.archives import archive_kind
from .builder.base import BuildRequest, Recipe
from .builder.buildpacks.frozen import apt_pins, frozen_requirements
from .builder.clone import FROM_BUNDLE
from .builder.lock import LABEL, diff_locks, dpkg_of, format_diff, image_lock, is_empty
from .builder.manager import BuildManager
from .builder.r2d import Repo2DockerBuilder
from .data_mounts.catalogue import Catalogue
from .docker_engine import Docker
from .errors import PanbinderError
from .executor import run_blocking
from .registry_cache import image_ref
from .registry_cache.naming import ImageRef, derived_ref, parse_image

DOI_RE = re.compile(r"^(doi:|https?://(dx\.)?doi\.org/)?10\.\d{4,9}/\S+$", re.IGNORECASE)
FROZEN, FRESH = "frozen", "fresh"


def pinned_image(*, registry: str, prefix: str, repo_url: str, sha: str) -> ImageRef:
    """The image a publication launches: its repository at the pinned commit, named as a launch
    of the repository's URL names it (the one place checks and rebuilds name it); an archive
    record's image is named for its archive, as ``/v2/zenodo/`` names it."""
    provider = archive_kind(repo_url) or "git"
    return image_ref(registry=registry, prefix=prefix, provider=provider, repo_url=repo_url, ref=sha)


def publication_image(catalogue: Catalogue, doi: str, *, registry: str, prefix: str) -> ImageRef:
    """The image of the registered publication ``doi``; PanbinderError (404) when it is not registered."""
    with catalogue.session() as session:
        publication = catalogue.get_publication(session, doi)
        if publication is None:
            raise PanbinderError(
                f"No publication with DOI {doi} is registered; check the DOI.", status_code=404
            )
        repo_url, sha = publication.repo_url, publication.resolved_sha
    return pinned_image(registry=registry, prefix=prefix, repo_url=repo_url, sha=sha)


@dataclasses.dataclass(frozen=True)
class RebuildResult:
    """What a rebuild found: the image rebuilt, its rebuilt image, whether the lock is identical
    (names, digests and timestamps aside), the changed lines, or why the build failed."""

    kind: str  # FROZEN or FRESH
    source: str  # the image rebuilt
    image: str  # the rebuilt image ("" when nothing was pushed)
    identical: bool = False
    changes: tuple[str, ...] = ()  # ``format_diff`` lines, recorded -> rebuilt
    failure: str = ""  # why the build failed ("" when it was built and its lock read)
    repository: str = ""  # FROM_BUNDLE's line when the checkout came from the archive's bundle

    @property
    def ok(self) -> bool:
        """Built; for a frozen rebuild also an identical lock."""
        return not self.failure and (self.identical or self.kind == FRESH)

    def report(self) -> list[str]:
        """The lines ``panbinder rebuild`` prints on stdout."""
        if self.failure:
            return []
        lines = [f"{self.kind} rebuild of {self.source}: {self.image}"]
        lines += [self.repository] if self.repository else []
        if self.kind == FROZEN:
            lines.append("lock: identical" if self.identical else "lock: differs")
        lines.append("differences (recorded -> rebuilt):")
        lines += list(self.changes) if self.changes else ["(none)"]
        return lines

    def summary(self, limit: int = 20) -> str:
        """One line for a check's step: the failure, or what the lock says."""
        source = f"; {self.repository}" if self.repository else ""
        if self.failure:
            return f"failed: {self.failure}{source}"
        changed = "; ".join(self.changes[:limit])
        more = f" (and {len(self.changes) - limit} more)" if len(self.changes) > limit else ""
        if self.kind == FRESH:
            return f"changed upstream: {changed or '(none)'}{more}{source}"
        return ("lock: identical" if self.identical else f"lock: differs: {changed}{more}") + source


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


async def recorded_lock(image: str, *, builder: Repo2DockerBuilder, catalogue: Catalogue, log: Any) -> dict:
    """The catalogue's lock of ``image``, else the lock in its label; PanbinderError when neither."""
    recorded = await run_blocking(catalogue.get_lock, image)
    if recorded is not None:
        return recorded
    recorded = await run_blocking(lock_in_label, image, docker_cli=docker_cli(builder))
    if recorded is None:
        raise PanbinderError(
            f"No lock is recorded for {image}, neither in the catalogue nor in the image's {LABEL} "
            "label. Build it first (panbinder build, or launch it); every build records its lock."
        )
    log.info("the catalogue has no lock for %s; using the lock in its %s label", image, LABEL)
    return recorded


def recipe_of(kind: str, lock: dict[str, Any], builder: Repo2DockerBuilder) -> Recipe:
    """The frozen recipe of ``lock`` (pins for the Debian packages the base image lacks), or
    the fresh one (blocking: a probe of the base image in the build engine)."""
    if kind == FRESH:
        return Recipe(no_cache=True)
    base = dpkg_of(builder.base_image, docker_cli=docker_cli(builder))
    return Recipe(
        frozen_requirements=frozen_requirements(lock.get("pip", [])),
        apt_pins=tuple(apt_pins(lock.get("dpkg", {}), base)),
        lock=lock,
    )


async def rebuild_image(
    image: str,
    kind: str,
    *,
    builder: Repo2DockerBuilder,
    manager: BuildManager,
    catalogue: Catalogue,
    log: Any,
    background: bool = False,
    on_line: Callable[[str], None] | None = None,
    bundle: Path | None = None,
) -> RebuildResult:
    """Rebuild ``image`` (``FROZEN`` or ``FRESH``) through ``manager`` and compare its lock with
    the recorded one. ``on_line`` receives the build log; a ``background`` build waits behind
    readers' builds. PanbinderError when it cannot start (no lock, a quota); a failed build is
    a result with its ``failure``. ``bundle``: the archive's repository bundle (confined to it
    by the caller, ``registry_cache.archive.repository_bundle``), used when the upstream fails."""
    if kind not in (FROZEN, FRESH):
        raise ValueError(f"kind must be {FROZEN!r} or {FRESH!r}, not {kind!r}")
    recorded = await recorded_lock(image, builder=builder, catalogue=catalogue, log=log)
    repo = recorded.get("repo", {})
    if not repo.get("url") or not repo.get("commit"):
        raise PanbinderError("The recorded lock names no repository and commit; it cannot be rebuilt.")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = derived_ref(parse_image(image), kind, stamp)
    recipe = await run_blocking(recipe_of, kind, recorded, builder)
    if bundle is not None:
        recipe = dataclasses.replace(recipe, repo_bundle=str(bundle))
    request = BuildRequest(
        build_id=secrets.token_hex(8),
        provider="git",
        repo_url=repo["url"],
        resolved_ref=repo["commit"],
        unresolved_ref=repo["commit"],
        image=target,
        recipe=recipe,
    )
    # through the build manager: its queue, the build timeout, the step limits and the kept log apply
    job, _ = manager.attach(request, background=background)
    from_bundle = FROM_BUNDLE.format(url=repo["url"])
    repository = ""
    async for event in manager.follow(job):
        if event.phase == "failed":
            return RebuildResult(kind, image, "", failure=event.message.strip(), repository=repository)
        if event.phase == "fetching" and event.message.startswith(from_bundle):
            repository = from_bundle
            log.warning("%s rebuild of %s: %s", kind, image, from_bundle)
        if event.message and on_line is not None:
            on_line(event.message)
    new_lock = await run_blocking(catalogue.get_lock, target.full)
    if new_lock is None:
        failure = f"the rebuilt image's lock could not be read from {target.full} (see the log)"
        return RebuildResult(kind, image, target.full, failure=failure, repository=repository)
    diff = diff_locks(recorded, new_lock)
    same = is_empty(diff)
    changes = tuple(line for line in format_diff(diff).splitlines() if line.strip()) if not same else ()
    return RebuildResult(kind, image, target.full, same, changes, repository=repository)


__all__ = [
    "DOI_RE",
    "FRESH",
    "FROZEN",
    "RebuildResult",
    "lock_in_label",
    "pinned_image",
    "publication_image",
    "rebuild_image",
]
