"""The reaper: removes temporary users and server containers that nothing owns any more.

A launch removes its own user and server when it fails or is abandoned; this catches what that
could not (the Hub down at the time, a portal killed mid-launch, a Hub that lost its record of
a container). Every ``interval`` seconds it removes, once older than ``grace_period``:

- a temporary user (the launcher's ``user_prefix``) that no live launch or pool entry owns and
  that has no ready server: a ready server may be a reader's, and the idle culler ends it;
- a server container (``{container_prefix}-`` and the escaped user prefix) given this Hub's API
  URL whose user has no server in the Hub; containers of another Hub are left alone. A swarm
  task's container counts as its service (named as the container would be), which is removed.

The first sweep runs as soon as the portal has started, and what was made before that start
needs no grace period: no launch of this run can own it (a portal killed mid-launch left it).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from traitlets import Any as AnyTrait
from traitlets import Float, Instance
from traitlets.config import LoggingConfigurable

from panbinder.docker_engine import Docker
from panbinder.executor import cancel_task, run_blocking, run_every

from .base import ServerScope


@dataclass(frozen=True)
class Candidate:
    """A user or container the reaper looked at: what it is, how old, whether it is in use."""

    name: str
    age: float
    busy: bool = False
    earlier_run: bool = False  # made before this portal started: no launch of this run owns it


SWARM_SERVICE = "com.docker.swarm.service.name"  # label of a swarm task's container
_ISO = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$")


def select_orphans(candidates: Iterable[Candidate], owned: set[str], grace: float) -> list[str]:
    """Names nobody owns, not in use and older than ``grace`` seconds."""
    return [
        c.name for c in candidates if c.name not in owned and not c.busy and (c.age >= grace or c.earlier_run)
    ]


def age_of(timestamp: str | None, now: float) -> float:
    """Seconds since an ISO 8601 time from the Hub or docker (unknown: 0, so never reaped)."""
    m = _ISO.match(timestamp or "")
    if not m:
        return 0.0
    zone = m[3] if m[3] and m[3] != "Z" else "+00:00"
    moment = datetime.fromisoformat(m[1] + (m[2] or "")[:7] + zone)
    return now - moment.timestamp()


def escape_name(text: str) -> str:
    """A user name as DockerSpawner puts it in container names (escapism, '-' as escape)."""
    from escapism import escape

    return escape(text, "abcdefghijklmnopqrstuvwxyz0123456789", escape_char="-").lower()


class Reaper(LoggingConfigurable):
    interval = Float(300.0, help="Seconds between sweeps for orphaned temporary users and containers.").tag(
        config=True
    )
    grace_period = Float(
        900.0,
        help="Seconds a temporary user or server container must exist before the reaper may remove "
        "it (keep above the server start timeout).",
    ).tag(config=True)
    launcher = AnyTrait(help="The HubLauncher whose temporary users are swept.")
    docker = Instance(
        Docker,
        allow_none=True,
        help="The run engine, whose server containers are swept (given by the composition root, "
        "through Launcher.use_run_engine; None: containers are not swept).",
    )

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.scope: ServerScope | None = None
        self.task: asyncio.Task | None = None
        self.removed_users = 0
        self.removed_containers = 0
        self.started_at: float | None = None  # set by start(): what is older came from an earlier run

    def start(self, scope: ServerScope | None) -> None:
        self.scope = scope
        self.started_at = time.time()
        if scope is not None and scope.container_prefix and self.docker is None:
            self.log.warning(
                "reaper: no run engine given (Launcher.use_run_engine); containers are not swept"
            )
        if self.interval > 0 and (self.task is None or self.task.done()):
            # the Hub or docker down: logged, and the next sweep tries again
            self.task = run_every("reaper", self.interval, self.sweep, self.log, "reaper sweep failed")

    async def stop(self) -> None:
        await cancel_task(self.task)

    def _earlier_run(self, age: float, now: float) -> bool:
        return self.started_at is not None and age > 0 and now - age < self.started_at - 1.0

    async def sweep(self) -> tuple[list[str], list[str]]:
        """One pass; returns the users and containers removed."""
        hub = self.launcher.hub
        owned = self.launcher.owned_users()
        now = time.time()
        users = await hub.users(self.launcher.user_prefix)
        candidates = [self._user_candidate(u, now) for u in users]
        doomed = select_orphans(candidates, owned, self.grace_period)
        doomed += [n for n in self.launcher.abandoned_users() if n not in doomed and n not in owned]
        removed = [u for u in doomed if await self._remove_user(u)]
        with_server = {u["name"] for u in users if (u.get("servers") or {}).get("")}
        gone = await self._sweep_containers(owned | (with_server - set(removed)), now)
        return removed, gone

    def _user_candidate(self, user: dict, now: float) -> Candidate:
        age = age_of(user.get("created"), now)
        busy = bool((user.get("servers") or {}).get("", {}).get("ready"))
        return Candidate(user["name"], age, busy=busy, earlier_run=self._earlier_run(age, now))

    async def _remove_user(self, user: str) -> bool:
        ok = await self.launcher.remove_user(user)
        if ok:
            self.removed_users += 1
            self.log.info("reaper removed orphaned temporary user %s", user)
        return ok

    async def _sweep_containers(self, owners: set[str], now: float) -> list[str]:
        scope = self.scope
        if scope is None or not scope.container_prefix or self.docker is None:
            return []
        head = f"{scope.container_prefix}-{escape_name(self.launcher.user_prefix)}"
        by_user = {f"{scope.container_prefix}-{escape_name(u)}" for u in owners}
        gone = await run_blocking(self._remove_containers, head, by_user, scope.hub_api_url, now)
        for name in gone:
            self.removed_containers += 1
            self.log.info("reaper removed orphaned server container %s", name)
        return gone

    def _remove_containers(self, head: str, owned: set[str], api_url: str, now: float) -> list[str]:
        gone = []
        for c in self.docker.containers(head):
            env = c.attrs.get("Config", {}).get("Env") or []
            ours = not api_url or f"JUPYTERHUB_API_URL={api_url}" in env
            age = age_of(c.attrs.get("Created"), now)
            # a swarm task's container is named after its service, which is what goes
            service = (c.attrs.get("Config", {}).get("Labels") or {}).get(SWARM_SERVICE, "")
            found = Candidate(service or c.name, age, busy=not ours, earlier_run=self._earlier_run(age, now))
            if not select_orphans([found], owned, self.grace_period):
                continue
            # one removed meanwhile, or being removed, counts as done (not as removed here)
            if self.docker.remove_service(service) if service else self.docker.remove_container(c):
                gone.append(found.name)
        return gone
