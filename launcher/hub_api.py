"""HubLauncher: temporary user + server per launch via the JupyterHub REST API.

Concurrency is a setting, not an accident of an HTTP client: at most
``max_concurrent_launches`` launches talk to the Hub at once, each with a progress stream of
the launcher's own; the others wait in line and are told their position. Whatever a launch
leaves unfinished (it failed, or its reader left) is removed in the background within
``cleanup_timeout``; what even that misses is the reaper's.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable
from functools import cached_property
from typing import Any
from urllib.parse import quote

from traitlets import Float, Int, Type, Unicode, default

from panbinder.docker_engine import Docker
from panbinder.events import Event
from panbinder.executor import log_task_exception

from . import signing
from .base import Launcher, LaunchRequest, ServerScope
from .hub_client import HubClient
from .reaper import Reaper, escape_name
from .slots import LaunchSlots
from .workspace_disk import workspace_note
from .workspaces import Workspaces

FAILED_MESSAGE = "The server could not be started; try again, or tell the operators if it keeps failing."


class HubLauncher(Launcher):
    hub_url = Unicode(
        help="URL of JupyterHub (its proxy) as the portal reaches it (default: the address of the Hub "
        "that panbinder serve runs, HubProcess.ip and HubProcess.port)."
    ).tag(config=True)
    api_token = Unicode("", help="Token of the panbinder service in the Hub (generated when empty).").tag(
        config=True
    )
    public_url = Unicode(
        "",
        help="URL users reach the Hub at, e.g. behind a TLS reverse proxy (empty: hub_url). "
        "Server URLs in ready events start with it.",
    ).tag(config=True)
    signing_key = Unicode(
        "", help="Key for signing launch options (generated in the state directory when empty)."
    ).tag(config=True)
    signature_lifetime = Int(
        300,
        help="Seconds signed launch options stay valid: the Hub must start the server within this "
        "time; afterwards they cannot be replayed.",
    ).tag(config=True)
    user_prefix = Unicode("pb-", help="Prefix of temporary user names.").tag(config=True)
    token_expires_in = Int(24 * 3600, help="Seconds a launched server's access token stays valid.").tag(
        config=True
    )
    launch_timeout = Float(120.0, help="Seconds a server may take to start.").tag(config=True)
    retries = Int(3, help="Attempts for each Hub API call that fails on connection errors.").tag(config=True)
    call_timeout = Float(
        30.0,
        help="Seconds a short Hub API call (users, tokens, server state) and the connection of a "
        "progress stream may take.",
    ).tag(config=True)
    max_concurrent_launches = Int(
        help="Launches that may start servers at once (each holds one progress stream to the Hub, "
        "and its server's start takes about a core); more wait in line and get 'waiting' events "
        "with their position. Default: twice the machine's cores, at least 4.",
    ).tag(config=True)
    api_connections = Int(
        16,
        help="Connections for short Hub calls (users, tokens, server state), kept apart from the "
        "progress streams so a long stream never makes them wait.",
    ).tag(config=True)
    cleanup_timeout = Float(
        60.0,
        help="Seconds the removal of a failed or abandoned launch's server and user may take "
        "(stop the server, wait until it has stopped, delete the user); the reaper retries the rest.",
    ).tag(config=True)
    ping_timeout = Float(
        3.0, help="Seconds the Hub may take to answer a health check (/health) before it counts as down."
    ).tag(config=True)
    pool_class = Type(
        "panbinder.launcher.pool.ServerPool",
        klass="panbinder.launcher.pool.ServerPool",
        allow_none=True,
        help="Pre-started server pool (None: every launch starts a new server).",
    ).tag(config=True)

    @default("max_concurrent_launches")
    def _max_concurrent_launches_default(self) -> int:
        # more starts than cores share them: each then takes that many times longer, so a burst
        # all finishes late (20 at once on 2 cores: 75 s each, past launch_timeout under load)
        # instead of the first ones early and the rest in line, with their position
        return max(4, 2 * (os.cpu_count() or 1))

    @default("hub_url")
    def _hub_url_default(self) -> str:
        from .hub_process import HubProcess

        return HubProcess(parent=self, log=self.log).public_url

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pool = self.pool_class(parent=self, launcher=self, log=self.log) if self.pool_class else None
        self.reaper = Reaper(parent=self, launcher=self, log=self.log)
        self.scope: ServerScope | None = None
        self.slots = LaunchSlots(self.max_concurrent_launches)
        self.live: set[str] = set()  # users of launches in progress or being removed
        self.spawning: set[str] = set()  # users whose server is starting (launches and the pool)
        self.leftover: set[str] = set()  # users whose removal failed: the reaper retries
        self.tasks: set[asyncio.Task] = set()
        self._hub: HubClient | None = None

    @cached_property
    def workspaces(self) -> Workspaces:
        return Workspaces(parent=self, log=self.log)

    def workspace_path(self, owner: str) -> str:
        return self.workspaces.container_path if owner and self.workspaces.enabled else ""

    @property
    def hub(self) -> HubClient:
        """The launcher's own Hub client, made on first use (the token is set by then)."""
        if self._hub is None:
            extra = self.pool.fill_concurrency if self.pool is not None else 0
            self._hub = HubClient(
                self.hub_url,
                self.api_token,
                stream_slots=self.max_concurrent_launches + extra + 2,
                call_slots=self.api_connections,
                retries=self.retries,
                call_timeout=self.call_timeout,
                log=self.log,
            )
        return self._hub

    def use_secrets(self, secret: Callable[[str], str]) -> None:
        """The launch signing key and the Hub service token, unless set: both are shared with the
        Hub that ``panbinder serve`` runs."""
        self.signing_key = self.signing_key or secret("launch-signing-key")
        self.api_token = self.api_token or secret("hub-service-token")

    def use_run_engine(self, docker: Docker) -> None:
        """The reaper sweeps the server containers of that engine."""
        self.reaper.docker = docker

    async def ping(self) -> bool:
        try:
            await self.hub.call("GET", "/", timeout=self.ping_timeout)
        except Exception:
            return False
        return True

    async def start(self, scope: ServerScope | None = None) -> None:
        self.scope = scope
        self.reaper.start(scope)

    def _container(self, user: str) -> str | None:
        """The run engine's container of ``user``'s server (None: no engine or no prefix known)."""
        if self.scope is None or not self.scope.container_prefix or self.reaper.docker is None:
            return None
        return f"{self.scope.container_prefix}-{escape_name(user)}"

    async def pause_server(self, user: str, paused: bool = True) -> bool:
        name, docker = self._container(user), self.reaper.docker
        return bool(name and docker) and await docker.call(docker.pause, name, paused)

    async def server_state(self, user: str) -> str:
        name, docker = self._container(user), self.reaper.docker
        return await docker.call(docker.container_state, name) if name and docker else "unknown"

    async def server_memory(self, user: str) -> int | None:
        name, docker = self._container(user), self.reaper.docker
        return await docker.call(docker.memory_usage, name) if name and docker else None

    async def stop(self) -> None:
        await self.reaper.stop()
        if self.pool is not None:
            await self.pool.drain()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=self.cleanup_timeout)
        if self._hub is not None:
            self._hub.close()
            self._hub = None

    def owned_users(self) -> set[str]:
        """Temporary users this process is using: live launches, starting and pooled servers."""
        pooled = {e.user for v in self.pool.entries.values() for e in v} if self.pool else set()
        return self.live | self.spawning | pooled

    def abandoned_users(self) -> set[str]:
        return set(self.leftover)

    async def create_token(self, user: str, note: str, expires_in: int | None = None) -> str:
        """A token for ``user``'s server, valid ``expires_in`` seconds (``token_expires_in``)."""
        body = {"expires_in": self.token_expires_in if expires_in is None else expires_in, "note": note}
        return (await self.hub.call("POST", f"/users/{quote(user)}/tokens", body))["token"]

    async def spawn(self, user: str, request: LaunchRequest) -> AsyncIterator[str]:
        """Create ``user`` and start its server with the image; yields the Hub's progress
        messages and returns when the server is ready. Raises SpawnFailed."""
        self.spawning.add(user)
        try:
            await self.hub.call("POST", f"/users/{quote(user)}")
            options = {"user_options": self.user_options(request, user)}
            code, body = await self.hub.start_server(user, options, timeout=self.launch_timeout)
            if code == 201:
                return
            if code != 202:
                raise SpawnFailed(
                    f"the Hub refused to start the server ({code})", body[:300], status_code=503
                )
            deadline = time.monotonic() + self.launch_timeout
            try:
                async for ev in self.hub.progress(user, deadline):
                    if ev.get("failed"):
                        raise SpawnFailed(ev.get("message", "the server failed to start"))
                    if ev.get("ready"):
                        return
                    if ev.get("message"):
                        yield ev["message"].rstrip("\n") + "\n"
            except TimeoutError:
                raise SpawnFailed(f"the server did not start within {self.launch_timeout:.0f} s") from None
        finally:
            self.spawning.discard(user)

    def user_options(self, request: LaunchRequest, user: str) -> dict:
        """What the spawner gets: the image, and mounts, environment and profile (if any) signed for
        ``user`` until ``signature_lifetime`` seconds from now."""
        workspace = request.workspace if self.workspaces.enabled else ""
        if not (request.mounts or request.environment or request.profile or workspace):
            return {"image": request.image.full}
        fields = signing.SignedFields(
            image=request.image.full,
            mounts=tuple(request.mounts),
            environment=dict(request.environment),
            user=user,
            expires=int(time.time()) + self.signature_lifetime,
            profile=request.profile,
            workspace=workspace,
        )
        return signing.signed_options(self.signing_key, fields)

    def _has_workspace(self, request: LaunchRequest) -> bool:
        """Whether the launch's server mounts a workspace (then it is never taken from the pool)."""
        return bool(request.workspace) and self.workspaces.enabled

    def server_url(self, user: str) -> str:
        return f"{(self.public_url or self.hub_url).rstrip('/')}/user/{quote(user)}/"

    async def launch(self, request: LaunchRequest) -> AsyncIterator[Event]:
        extra = {"launch_id": request.launch_id, "image": request.image.full}
        began = time.monotonic()
        entry = (
            await self.pool.take_entry(request)
            if self.pool is not None and not self._has_workspace(request)
            else None
        )
        if entry is not None:
            pooled, taken = entry.user, time.monotonic()
            try:
                token = entry.token or await self._token(pooled, request)
            except BaseException as e:  # failed, or the launch was abandoned: the server goes
                self.log.warning("pooled server %s unusable: %r", pooled, e, extra=extra)
                self._discard(pooled)
                if not isinstance(e, Exception):
                    raise
            else:
                done = time.monotonic()
                self.log.info(
                    "launched %s from the pool as %s in %.3f s (thawed and checked in %.3f s, token %.3f s)",
                    request.image.full,
                    pooled,
                    done - began,
                    taken - began,
                    done - taken,
                    extra=extra,
                )
                yield self._ready(request, pooled, token, prestarted=True)
                return
        ticket = self.slots.enter()
        try:
            async for position, total in self.slots.wait(ticket):
                yield Event(
                    "waiting",
                    f"Waiting for a launch slot: position {position} of {total}\n",
                    {"position": position, "queue_length": total},
                )
            async for event in self._launch_new(request, extra):
                yield event
        finally:
            self.slots.leave(ticket)

    async def _launch_new(self, request: LaunchRequest, extra: dict) -> AsyncIterator[Event]:
        """Start a new temporary user's server; unless it is handed out, it is removed."""
        user = f"{self.user_prefix}{secrets.token_hex(6)}"
        self.live.add(user)
        handed_out = False
        token_task: asyncio.Future | None = None
        self.log.info("launching %s as %s", request.image.full, user, extra=extra)
        try:
            yield Event("launching", "Launching server...\n")
            try:
                async for message in self.spawn(user, request):
                    if token_task is None:  # the server is starting: the Hub has time for this now
                        token_task = asyncio.ensure_future(self._token(user, request))
                    yield Event("launching", message)
                token = await (token_task or self._token(user, request))
            except Exception as e:
                self.log.warning("launch failed: %s", getattr(e, "log_message", e), extra=extra)
                detail = {"detail": e.user_detail} if isinstance(e, SpawnFailed) else {}
                status = e.status_code if isinstance(e, SpawnFailed) else 500
                yield Event("failed", FAILED_MESSAGE, {**detail, "status_code": status})
                return
            handed_out = True
            if self._has_workspace(request):
                yield Event("launching", await workspace_note(self.workspaces, request.workspace))
            yield self._ready(request, user, token, prestarted=False)
        finally:
            if token_task is not None and not token_task.done():
                token_task.cancel()
            if handed_out:
                self.live.discard(user)
            else:  # failed, or the reader left: the server and user go, in the background
                self._discard(user)

    async def _token(self, user: str, request: LaunchRequest) -> str:
        return await self.create_token(user, f"panbinder launch {request.launch_id}")

    def _ready(self, request: LaunchRequest, user: str, token: str, *, prestarted: bool) -> Event:
        """The ready event; the pool replaces what this launch used (or learns the image)."""
        if self.pool is not None and not self._has_workspace(request):  # a workspace is never pre-started
            self.pool.refill_soon(request)
        url = self.server_url(user)
        extra = {"url": url, "token": token, "image": request.image.full, "prestarted": prestarted}
        return Event("ready", f"server running at {url}\n", extra)

    def _discard(self, user: str) -> None:
        """Remove ``user`` in a task of its own: a closed or cancelled launch cannot stop it."""
        self.live.add(user)

        async def run() -> None:
            try:
                await self.remove_user(user)
            finally:
                self.live.discard(user)

        task = asyncio.get_running_loop().create_task(run(), name=f"remove-{user}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        task.add_done_callback(lambda t: log_task_exception(t, self.log))

    async def remove_user(self, user: str) -> bool:
        """Stop the server, wait, delete the user (bounded); a failure is left to the reaper."""
        try:
            ok = await self.hub.remove(user, self.cleanup_timeout)
        except Exception as e:
            self.log.warning("could not remove user %s: %s", user, e)
            ok = False
        if ok:
            self.leftover.discard(user)
            self.log.info("removed temporary user %s and its server", user)
        else:
            self.leftover.add(user)
            self.log.warning(
                "user %s not removed within %.0f s; the reaper will retry", user, self.cleanup_timeout
            )
        return ok

    async def delete_user(self, user: str) -> bool:
        """Remove a user and its server (a pooled or unusable one, a check's, a review link's)."""
        return await self.remove_user(user)


class SpawnFailed(Exception):
    def __init__(self, user_detail: str, log_detail: object = "", *, status_code: int = 500) -> None:
        super().__init__(user_detail)
        self.user_detail = user_detail[:500]
        self.log_message = f"{user_detail} {log_detail!r}" if log_detail else user_detail
        self.status_code = status_code
