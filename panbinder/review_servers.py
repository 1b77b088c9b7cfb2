"""The servers of review links stop when their link ends (revoked, or expired).

A launch through a review link records its server's temporary Hub user in the catalogue once
the server is ready (``record``; a random name made for the launch, nothing of the reviewer).
Revoking the link in the portal (the owners' API and page) stops its servers at once
(``revoke``); ``panbinder publications unshare`` runs in another process and stops them itself
through the Hub API (``stop_ended``), like the portal would. Expiry, and a revocation whose
servers could not be stopped then (the Hub away, another portal's link), are caught by a sweep
the portal runs every ``interval`` seconds.

Stopping means removing the temporary Hub user with its server (``Launcher.delete_user``): its
token dies with it, so the server cannot be started again, whatever launch options its holder
kept (they are also signed for that user only, and expire after
``HubLauncher.signature_lifetime``). A removal that fails keeps the record: the next sweep tries
again.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from traitlets import Float
from traitlets.config import LoggingConfigurable

from .data_mounts.access import Identity
from .data_mounts.catalogue import Catalogue
from .data_mounts.review_links import ReviewLinks
from .executor import cancel_task, run_blocking, run_every
from .launcher import Launcher
from .launcher.base import server_user


class ReviewServers(LoggingConfigurable):
    """Records the servers started through review links and stops those whose link ended."""

    interval = Float(
        30.0,
        help="Seconds between the portal's sweeps that stop the servers of expired review links (and "
        "of links revoked from the command line when the Hub could not be reached then); 0: no sweep.",
    ).tag(config=True)

    def __init__(self, *, catalogue: Catalogue, launcher: Launcher, **kwargs) -> None:
        super().__init__(**kwargs)
        self.catalogue = catalogue
        self.launcher = launcher
        self.links = ReviewLinks(parent=self, log=self.log)  # no key needed: nothing is signed here
        self.task: asyncio.Task | None = None
        self.stopped = 0

    async def record(self, link_id: int, url: str) -> bool:
        """The server at ``url`` (a ready event's) was started through link ``link_id``; False
        when the link ended meanwhile (during the build or the start): then it is stopped now."""
        user = server_user(url)
        await run_blocking(self.links.record_server, self.catalogue, link_id, user)
        ended = await run_blocking(self.links.ended_servers, self.catalogue, link_id=link_id)
        if user not in ended:
            return True
        await self.stop_ended(link_id=link_id)
        return False

    async def revoke(self, link_id: int, *, who: Identity | None = None) -> tuple[dict, list[str], list[str]]:
        """Revoke link ``link_id`` (``who`` None: the operator) and stop its servers now: the
        link's description, the Hub users stopped and those left (the Hub away: the sweep retries)."""
        link = await run_blocking(self.links.revoke, self.catalogue, link_id, who=who)
        stopped, left = await self.stop_ended(link_id=link_id)
        return link, stopped, left

    async def stop_ended(
        self, *, link_id: int | None = None, now: datetime | None = None
    ) -> tuple[list[str], list[str]]:
        """Stop the servers whose link ended (of ``link_id`` only, when given); the Hub users
        stopped and those left for the next sweep."""
        users = await run_blocking(self.links.ended_servers, self.catalogue, link_id=link_id, now=now)
        stopped, left = [], []
        for user in users:
            (stopped if await self.launcher.delete_user(user) else left).append(user)
        await run_blocking(self.links.forget_servers, self.catalogue, stopped)
        for user in stopped:
            self.stopped += 1
            self.log.info("stopped the server of %s: its review link ended", user)
        return stopped, left

    def start(self) -> None:
        """Sweep every ``interval`` seconds, from now on (the first sweep at once)."""
        if self.interval > 0 and (self.task is None or self.task.done()):
            # the catalogue or the Hub away: logged, and the next sweep tries again
            self.task = run_every(
                "review-servers", self.interval, self.stop_ended, self.log, "review-link server sweep failed"
            )

    async def stop(self) -> None:
        await cancel_task(self.task)
