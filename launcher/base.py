"""The launcher seam."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from traitlets.config import LoggingConfigurable

from panbinder.data_mounts import MountSpec
from panbinder.events import Event
from panbinder.registry_cache import ImageRef


@dataclass(frozen=True)
class LaunchRequest:
    launch_id: str
    image: ImageRef
    mounts: tuple[MountSpec, ...] = ()
    environment: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class LaunchResult:
    url: str  # the server's URL, ending with '/'
    token: str
    user: str
    extra: dict = field(default_factory=dict)


class Launcher(LoggingConfigurable):
    """Starts a server for an image. ``launch`` yields ``launching`` events and ends with
    ``ready`` (extra: url, token, image) or ``failed``. It never builds."""

    async def launch(self, request: LaunchRequest) -> AsyncIterator[Event]:
        raise NotImplementedError
        yield  # pragma: no cover

    async def ping(self) -> bool:
        raise NotImplementedError
