"""Where a publication's or template's code lives: a git repository or an archive record.

``canonical`` turns what an operator typed (a git URL, ``zenodo:10.5281/zenodo.123``, a SWHID,
``figshare:<DOI>``, ``dataverse:<DOI>``) into the repository URL that is stored, and ``resolver``
pins its ref once at registration: a commit sha for git (``git ls-remote``), the record's
version for an archive, through the same URL guard as a build.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import quote

from traitlets.config import Configurable

from .builder.archives import parse_reference, source_for
from .executor import run_blocking

Resolver = Callable[[str, str], Awaitable[str]]


def canonical(repo: str, ref: str, parent: Configurable) -> tuple[str, str]:
    """``(repository URL, ref)`` to store; an archive reference keeps a given ref other than HEAD
    (a version), else the version its identifier names ("latest" when none)."""
    archived = parse_reference(repo, parent=parent)
    if archived is None:
        return repo.strip(), ref
    repo_url, asked = archived
    return repo_url, ref.strip() if ref.strip() not in ("", "HEAD") else asked


def resolver(parent: Configurable) -> Resolver:
    """Resolve a ref as a build would: the git provider for git, the archive's source otherwise."""

    async def resolve(repo_url: str, ref: str) -> str:
        source = source_for(repo_url, parent=parent)
        if source is not None:
            with source.http.guard.slot():
                return await run_blocking(source.resolve, repo_url, ref)
        from .providers.git import GitProvider

        return await GitProvider(f"{quote(repo_url, safe='')}/{ref}", parent=parent).resolve()

    return resolve


__all__ = ["Resolver", "canonical", "resolver"]
