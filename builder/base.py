"""The builder seam: a request in, an async stream of events out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jupyterhub.traitlets import Callable
from traitlets import Int
from traitlets.config import LoggingConfigurable

from panbinder.events import Event
from panbinder.registry_cache import ImageRef

from .cancel import CancelToken

if TYPE_CHECKING:
    from .build_engine import BuildEngine


@dataclass(frozen=True)
class Recipe:
    """How a rebuild differs from a build of the repository's own files (``panbinder/rebuild.py``).

    ``frozen_requirements`` (a requirements file's text: the recorded lock's exact pip list) and
    ``apt_pins`` (``pkg=version``) make a frozen build; ``lock`` is the recorded lock (its conda
    section, if any, is installed as locked). ``no_cache`` builds without the layer cache, so pip
    and apt resolve anew. ``repo_bundle`` stands in for a repository gone upstream. It travels with the request, so one builder serves readers' builds and
    rebuilds at once. Builders that make no locks ignore it.
    """

    frozen_requirements: str = ""
    apt_pins: tuple[str, ...] = ()
    lock: dict[str, Any] | None = field(default=None, compare=False)
    no_cache: bool = False
    # an archive's ``git bundle`` (confined to it by the caller): the checkout comes from it at
    # the pinned commit when the upstream cannot give that commit (builder/clone.py)
    repo_bundle: str = field(default="", compare=False)

    @property
    def frozen(self) -> bool:
        return bool(self.frozen_requirements)


@dataclass(frozen=True)
class BuildRequest:
    build_id: str
    provider: str
    repo_url: str
    resolved_ref: str
    unresolved_ref: str
    image: ImageRef
    recipe: Recipe | None = None  # a rebuild's (frozen or fresh); None: the repository's files


class Builder(LoggingConfigurable):
    """Turns a repository at a resolved ref into an image pushed to the registry.

    ``build`` yields ``fetching``/``building``/``pushing`` events with log lines and ends with
    exactly one ``built`` or ``failed`` event. It knows nothing of JupyterHub or HTTP.

    ``cancel`` is called (on the event loop) when the build must stop: its timeout passed or
    nobody waits for it. It should stop the work at once (kill processes); the manager then
    cancels the ``build`` iteration, which must end promptly. The default does nothing, which
    suits builders whose work is all in ``build``'s awaits; builders that run processes
    ``track`` each build's ``CancelToken`` and the default ``cancel`` fires it.

    ``on_built`` is the hook for a builder that records each image's environment lock: the
    composition root sets it (the catalogue records the lock); a builder that makes no locks
    never calls it.
    """

    on_built = Callable(
        None,
        allow_none=True,
        help="Callable on_built(image, digest, lock) called (in the build thread) after each push "
        "with the image's environment lock; set by the application (the catalogue records it).",
    )

    max_repo_size = Int(
        1024**3,
        help="Largest repository checkout in bytes (its .git folder included) that is built; a larger "
        "one fails before anything is built (0: no limit).",
    ).tag(config=True)

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._cancel_tokens: dict[str, CancelToken] = {}

    def track(self, request: BuildRequest) -> CancelToken:
        """A new token for this build, fired by ``cancel``; ``untrack`` it when the build ends."""
        token = self._cancel_tokens[request.build_id] = CancelToken()
        return token

    def untrack(self, request: BuildRequest) -> None:
        self._cancel_tokens.pop(request.build_id, None)

    def cancel(self, request: BuildRequest) -> None:
        """Stop the build of ``request`` now; safe to call for a build that already ended."""
        token = self._cancel_tokens.get(request.build_id)
        if token is not None:
            token.cancel()

    def use_build_engine(self, engine: BuildEngine) -> None:
        """Take the build engine the composition root made (the one the build manager's step
        limits watch). Default: this builder needs none."""

    async def ping(self) -> bool:
        """Whether builds can run now (for /health); builders that need a service check it."""
        return True

    async def build(self, request: BuildRequest) -> AsyncIterator[Event]:
        raise NotImplementedError
        yield  # pragma: no cover
