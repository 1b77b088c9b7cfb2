"""One build of an image across several portals that share a catalogue: a lease per image name.

Requests for one image on one portal already share one ``BuildJob`` (``manager.py``). Portals
behind one proxy each have their own manager, so before it builds, a portal's job takes the
image's lease in the shared database (``data_mounts/build_leases.py``): a row naming the holder
and an expiry. The holder builds and pushes, renewing the lease every
``BuildManager.lease_renew_interval`` seconds, and finally records ``built`` or ``failed``. A
portal that finds the lease held streams one "waiting for a build on another portal" event and
polls the row: a recorded ``built`` ends its job built (the image is in the registry), a recorded
``failed`` ends it with the holder's message (no second build in a loop), and a lease nobody
renews any more (its portal crashed) is taken over after ``lease_seconds``. A build stopped for a
restart gives its lease up at once, so a waiting portal takes it over without waiting out the
expiry.

A ``built`` row answers a job made before the build ended (its request found no image in the
registry just before the push); a job made later takes the lease and builds, as the registry
had no image for it (it may have been removed since).

The row is written with one conditional UPDATE (or an INSERT that fails on the primary key), so
the database decides who wins on SQLite (one writer at a time) and PostgreSQL alike.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import Protocol

from panbinder.events import Event
from panbinder.executor import log_task_exception, run_blocking

WAITING_MESSAGE = "Waiting for a build of this image on another portal\n"
BUILT_ELSEWHERE = Event("built", "The image was built on another portal\n", {"shared": True})


class LeaseState(Protocol):
    """One lease row as read: who holds it, its state and, once ended, the outcome's message."""

    holder: str
    state: str  # "building", "built" or "failed"
    expires: float  # Unix seconds
    message: str


class LeaseStore(Protocol):
    """The shared table of leases (``data_mounts.build_leases.BuildLeases``); blocking calls."""

    def take(self, image: str, holder: str, seconds: float, since: float) -> LeaseState: ...

    def renew(self, image: str, holder: str, seconds: float) -> bool: ...

    def release(self, image: str, holder: str, state: str, message: str = "") -> None: ...

    def read(self, image: str) -> LeaseState | None: ...


def portal_name() -> str:
    """This process among the portals: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class LeaseTimes:
    seconds: float  # lease length; it expires unless renewed
    renew: float  # seconds between renewals
    poll: float  # seconds between reads of a lease held elsewhere


class SharedBuild:
    """The lease of one image for one job: ``claim`` before building, ``release`` after."""

    def __init__(
        self,
        store: LeaseStore,
        image: str,
        build_id: str,
        times: LeaseTimes,
        log: logging.Logger,
        *,
        since: float,
    ) -> None:
        """``since``: when the job was made, right after its request found no image in the
        registry; a build that ended since then (on another portal) is this job's."""
        self.store, self.image, self.times, self.log = store, image, times, log
        self.since = since
        self.holder = f"{portal_name()}/{build_id}"
        self._renewer: asyncio.Task | None = None

    async def claim(self, publish) -> Event | None:
        """None once this job holds the lease (it builds); otherwise the final event of the build
        another portal ran: ``built``, or ``failed`` with that portal's message."""
        announced = False
        while True:
            state = await run_blocking(
                self.store.take, self.image, self.holder, self.times.seconds, self.since
            )
            if state.holder == self.holder and state.state == "building":
                self._renewer = asyncio.create_task(self._renew(), name=f"lease-{self.holder}")
                self._renewer.add_done_callback(lambda t: log_task_exception(t, self.log))
                return None
            if state.state == "built":  # it ended after this request looked the image up
                return BUILT_ELSEWHERE
            if not announced:
                publish(Event("waiting", WAITING_MESSAGE, {"holder": state.holder.split("/", 1)[0]}))
                announced = True
            final = await self._wait_elsewhere()
            if final is not None:
                return final

    async def _wait_elsewhere(self) -> Event | None:
        """Poll the lease: the outcome once recorded, None when it can be taken (over)."""
        while True:
            await asyncio.sleep(self.times.poll)
            state = await run_blocking(self.store.read, self.image)
            if state is None or (state.state == "building" and state.expires < time.time()):
                if state is not None:
                    self.log.warning(
                        "the build lease of %s held by %s expired; taking it over",
                        self.image,
                        state.holder,
                        extra={"image": self.image, "phase": "waiting"},
                    )
                return None
            if state.state == "built":
                return BUILT_ELSEWHERE
            if state.state == "failed":
                message = state.message or "The build failed on another portal; try again."
                return Event("failed", message, {"reason": "build_failed", "shared": True})

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self.times.renew)
            if not await run_blocking(self.store.renew, self.image, self.holder, self.times.seconds):
                self.log.warning(
                    "lost the build lease of %s (not renewed in time); another portal may build it too",
                    self.image,
                    extra={"image": self.image, "phase": "building"},
                )
                return

    async def release(self, result: Event | None) -> None:
        """Record how the build ended (``built``/``failed``); with no result (stopped for a
        restart or abandoned) give the lease up so a waiting portal builds at once."""
        if self._renewer is None:
            return
        self._renewer.cancel()
        self._renewer = None
        if result is None:
            state, message = "building", ""  # expired at once (see BuildLeases.release)
        elif result.phase == "built":
            state, message = "built", ""
        else:
            state, message = "failed", result.message
        try:
            await run_blocking(self.store.release, self.image, self.holder, state, message)
        except Exception:
            self.log.exception("could not release the build lease of %s", self.image)
