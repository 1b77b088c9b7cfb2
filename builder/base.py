"""The builder seam: a request in, an async stream of events out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from traitlets.config import LoggingConfigurable

from panbinder.events import Event
from panbinder.registry_cache import ImageRef


@dataclass(frozen=True)
class BuildRequest:
    build_id: str
    provider: str
    repo_url: str
    resolved_ref: str
    unresolved_ref: str
    image: ImageRef


class Builder(LoggingConfigurable):
    """Turns a repository at a resolved ref into an image pushed to the registry.

    ``build`` yields ``fetching``/``building``/``pushing`` events with log lines and ends with
    exactly one ``built`` or ``failed`` event. It knows nothing of JupyterHub or HTTP.
    """

    async def build(self, request: BuildRequest) -> AsyncIterator[Event]:
        raise NotImplementedError
        yield  # pragma: no cover
