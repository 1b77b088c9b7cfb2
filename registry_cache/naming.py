"""The only code that names images.

Scheme 1 (pinned by golden tests; never change it in place, add a scheme instead):
``<registry>/<prefix><provider>-<slug>-<hash>:<resolved ref>`` where ``slug`` is the repository
URL lower-cased with runs of other characters turned into ``-`` and cut to 40 characters, and
``hash`` is the first 10 hex digits of sha256 of ``<provider>:<repository URL>``, so two
repositories whose slugs collide still get different names.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

SCHEME = 1
_SCHEME_RE = re.compile(r"^[a-z][a-z0-9+.-]*://")
_NON_ALNUM = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class ImageRef:
    registry: str  # host[:port], empty for a local-only image
    name: str  # repository path inside the registry
    tag: str

    @property
    def repository(self) -> str:
        return f"{self.registry}/{self.name}" if self.registry else self.name

    @property
    def full(self) -> str:
        return f"{self.repository}:{self.tag}"

    def __str__(self) -> str:
        return self.full


def repo_slug(repo_url: str, length: int = 40) -> str:
    text = _SCHEME_RE.sub("", repo_url.lower())
    text = text.removesuffix(".git")
    slug = _NON_ALNUM.sub("-", text).strip("-")
    return slug[:length].strip("-") or "repo"


def image_ref(*, registry: str, prefix: str, provider: str, repo_url: str, ref: str) -> ImageRef:
    """Name the image for ``repo_url`` at the resolved ref (a full commit sha for git)."""
    digest = hashlib.sha256(f"{provider}:{repo_url}".encode()).hexdigest()[:10]
    name = f"{prefix}{provider}-{repo_slug(repo_url)}-{digest}"
    tag = _NON_ALNUM.sub("-", ref.lower())[:128]
    return ImageRef(registry=registry, name=name, tag=tag)


def derived_ref(image: ImageRef, kind: str, stamp: str) -> ImageRef:
    """A rebuild of ``image`` in the same repository: tag ``<tag>-<kind>-<stamp>``.

    ``kind`` is e.g. "frozen" or "fresh", ``stamp`` a UTC timestamp like 20260101T120000Z; the
    original tag is kept as the prefix (cut so the tag stays within Docker's 128 characters).
    """
    suffix = "-" + _NON_ALNUM.sub("-", f"{kind}-{stamp}".lower()).strip("-")
    return ImageRef(registry=image.registry, name=image.name, tag=image.tag[: 128 - len(suffix)] + suffix)


def parse_image(full: str) -> ImageRef:
    """``[registry/]name:tag`` back into an ImageRef (the registry is the first part with a ':' or '.')."""
    rest, sep, tag = full.rpartition(":")
    if not sep or "/" in tag:
        rest, tag = full, "latest"
    first, slash, remainder = rest.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return ImageRef(registry=first, name=remainder, tag=tag)
    return ImageRef(registry="", name=rest, tag=tag)
