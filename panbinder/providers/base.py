"""The provider seam: turn the spec after ``/v2/<provider>/`` into a repository and a ref.

A provider is a plug-in (entry point group ``panbinder.providers``). Each parses its spec,
validates it and resolves the ref to an immutable version before anything else happens.
Providers sit between the portal and the builder: they may use the builder's URL guard and the
dataset catalogue, and neither the builder nor the catalogue knows them.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, TypeVar

from traitlets.config import LoggingConfigurable

from panbinder.data_mounts.access import Identity
from panbinder.data_mounts.mounts import MountPlan
from panbinder.errors import PanbinderError

if TYPE_CHECKING:
    from panbinder.data_mounts.catalogue import Catalogue

T = TypeVar("T")
_UNDER_WAY: dict[tuple, asyncio.Future] = {}  # repository look-ups, shared by identical ones


async def shared(key: tuple, start: Callable[[], Awaitable[T]]) -> T:
    """The result of the look-up ``key`` under way, or of a new one made by ``start``. Nothing is
    kept once it ends; a requester that leaves does not cancel it for the others."""
    key = (id(asyncio.get_running_loop()), *key)
    future = _UNDER_WAY.get(key)
    if future is None:
        future = asyncio.ensure_future(start())
        _UNDER_WAY[key] = future
        future.add_done_callback(lambda _: _UNDER_WAY.pop(key, None))
    return await asyncio.shield(future)


class RepoProvider(LoggingConfigurable):
    """Base class. Subclasses set ``name`` and implement ``parse`` and ``resolve``."""

    name = "base"

    @property
    def image_provider(self) -> str:
        """The provider whose naming the image uses (a DOI launches its repository's image)."""
        return self.name

    def __init__(self, spec: str, *, catalogue: Catalogue | None = None, **kwargs: Any) -> None:
        """``catalogue``: the dataset catalogue, for providers that read it (``doi``)."""
        super().__init__(**kwargs)
        self.catalogue = catalogue
        self.spec = spec
        self.repo_url, self.unresolved_ref = self.parse(spec)

    def parse(self, spec: str) -> tuple[str, str]:
        raise NotImplementedError

    async def resolve(self) -> str:
        """The immutable version (a full commit sha for git)."""
        raise NotImplementedError

    def persistent_spec(self, resolved: str) -> str:
        """The spec that names this exact version, for binder_persistent_request."""
        return self.spec

    async def prepare(self, who: Identity) -> MountPlan:
        """Checks and mounts for this user before anything streams; raises PanbinderError (4xx)."""
        return MountPlan((), ())


@functools.cache
def provider_entry_points() -> dict[str, EntryPoint]:
    """The installed providers by name, read once: reading every installed package's entry points
    took about 20 ms of the event loop on every launch request."""
    return {ep.name: ep for ep in entry_points(group="panbinder.providers")}


@functools.cache
def _load(name: str) -> type[RepoProvider]:
    return provider_entry_points()[name].load()


def get_provider_class(name: str) -> type[RepoProvider]:
    found = provider_entry_points()
    if name in found:
        return _load(name)
    known = sorted(found)
    raise PanbinderError(
        f"Unknown repository provider '{name}'; this service knows: {', '.join(known)}.",
        reason="unknown_provider",
        status_code=404,
    )
