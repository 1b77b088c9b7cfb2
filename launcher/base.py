"""The launcher seam."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import unquote

from traitlets.config import LoggingConfigurable

from panbinder.data_mounts import MountSpec
from panbinder.events import Event
from panbinder.registry_cache import ImageRef

from .profiles import Profile, Profiles

if TYPE_CHECKING:
    from panbinder.docker_engine import Docker

    from .pool import ServerPool


def server_user(url: str) -> str:
    """The temporary user of a server URL ``.../user/<name>/`` (a ready event's ``url``)."""
    return unquote(url.rstrip("/").rsplit("/", 1)[-1])


@dataclass(frozen=True)
class LaunchRequest:
    launch_id: str
    image: ImageRef
    mounts: tuple[MountSpec, ...] = ()
    environment: tuple[tuple[str, str], ...] = ()
    profile: Profile | None = None  # resources chosen at launch (None: the back-end's defaults)
    workspace: str = ""  # the signed-in portal user whose workspace the server mounts ("": anonymous)


@dataclass(frozen=True)
class LaunchResult:
    url: str  # the server's URL, ending with '/'
    token: str
    user: str
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ServerScope:
    """What marks this Hub's server containers: their name prefix and the Hub API URL they
    were given (containers of another Hub on the same engine share neither)."""

    container_prefix: str
    hub_api_url: str = ""


class Launcher(LoggingConfigurable):
    """Starts a server for an image. ``launch`` yields ``launching`` events and ends with
    ``ready`` (extra: url, token, image) or ``failed``. It never builds.

    ``pool`` holds the servers a launcher starts ahead of requests (None: it starts none, or
    the command turned it off); /health and the metrics count them.
    """

    pool: ServerPool | None = None

    def use_secrets(self, secret: Callable[[str], str]) -> None:
        """Take the secrets this launcher needs and was not configured with; ``secret(name)``
        reads one from the state folder, made on first use. Default: it needs none."""

    def profile(self, name: str, groups: frozenset[str] | bool | None = True) -> Profile | None:
        """The resource profile called ``name`` (empty: Profiles.default_profile, None when
        there is none) for a caller in Hub ``groups`` (True: the service itself, which may
        choose any; None: an anonymous caller). PanbinderError naming the caller's choices:
        400 for an unknown name, 403 (profile_not_allowed) for a profile restricted to groups
        the caller is in none of."""
        return Profiles(parent=self, log=self.log).get(name, groups)

    def workspace_path(self, owner: str) -> str:
        """Where ``owner``'s persistent workspace appears in their servers ("": none, e.g. for
        anonymous launches or a back-end without workspaces). Default: none."""
        return ""

    def use_run_engine(self, docker: Docker) -> None:
        """Take the client of the docker engine that runs the servers (made once by the
        composition root). Default: this launcher does not talk to it."""

    async def launch(self, request: LaunchRequest) -> AsyncIterator[Event]:
        raise NotImplementedError
        yield  # pragma: no cover

    async def ping(self) -> bool:
        raise NotImplementedError

    async def start(self, scope: ServerScope | None = None) -> None:
        """Begin background work (the portal calls this once its Hub answers); ``scope`` says
        which containers are this Hub's servers. Default: nothing to start."""

    async def stop(self) -> None:
        """End background work and remove the servers only this process holds (on shutdown)."""

    async def pause_server(self, user: str, paused: bool = True) -> bool:
        """Freeze (or thaw) the ready server of ``user`` so that it waits without using CPU;
        True when done. Default: this back-end cannot (the server waits running)."""
        return False

    async def server_state(self, user: str) -> str:
        """'paused', 'running', 'gone' or 'unknown' (default: the back-end cannot tell)."""
        return "unknown"

    async def server_memory(self, user: str) -> int | None:
        """Bytes of memory the server of ``user`` uses now (None: the back-end cannot tell)."""
        return None

    async def delete_user(self, user: str) -> bool:
        """Stop the server of ``user`` (a launch this launcher handed out, e.g. a check's, once
        done, or one whose review link ended) and remove the user, so that its token cannot
        start it again; True when done or already gone. Default: nothing to remove."""
        return True
