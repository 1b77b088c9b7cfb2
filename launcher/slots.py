"""Launch slots: at most ``size`` launches talk to the Hub at once; the others wait in arrival
order and are told their place in the line, as builds waiting for a build slot are.

Without a bound, every click opens another long-lived progress stream and another spawn in the
Hub; past the HTTP client's connection limit the short Hub calls of all launches queued behind
the streams and timed out (20 concurrent launches: 8 failed). A launch that waits here holds
nothing: no Hub user, no connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator


class Ticket:
    """One launch's place: waiting until ``granted``; ``changed`` wakes it on every move."""

    def __init__(self) -> None:
        self.granted = False
        self.changed = asyncio.Event()


class LaunchSlots:
    """A FIFO of tickets waiting for one of ``size`` slots (``position`` is 1-based)."""

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self.holders: set[Ticket] = set()
        self.waiting: list[Ticket] = []
        self.freed = asyncio.Event()  # set whenever a slot is handed back

    def enter(self) -> Ticket:
        ticket = Ticket()
        self.waiting.append(ticket)
        self._grant()
        return ticket

    def leave(self, ticket: Ticket) -> None:
        """Free the slot (or the place in the line) and hand it on; safe to call twice."""
        self.holders.discard(ticket)
        if ticket in self.waiting:
            self.waiting.remove(ticket)
            self._notify()
        self._grant()
        self.freed.set()

    async def until_free(self) -> None:
        """Return once a slot is free and no launch waits for one (the pool's pre-starts wait
        here: a server a reader clicked for comes first)."""
        while self.waiting or len(self.holders) >= self.size:
            self.freed.clear()
            await self.freed.wait()

    def position(self, ticket: Ticket) -> int | None:
        try:
            return self.waiting.index(ticket) + 1
        except ValueError:
            return None

    async def wait(self, ticket: Ticket) -> AsyncIterator[tuple[int, int]]:
        """Yield (position, queue length) each time it changes, until the ticket holds a slot."""
        last: tuple[int, int] | None = None
        while True:
            ticket.changed.clear()
            if ticket.granted:
                return
            place = (self.position(ticket) or 0, len(self.waiting))
            if place != last:
                last = place
                yield place
            await ticket.changed.wait()

    @property
    def running(self) -> int:
        return len(self.holders)

    def _grant(self) -> None:
        moved = False
        while self.waiting and len(self.holders) < self.size:
            ticket = self.waiting.pop(0)
            ticket.granted = True
            self.holders.add(ticket)
            ticket.changed.set()
            moved = True
        if moved:
            self._notify()

    def _notify(self) -> None:
        for ticket in self.waiting:
            ticket.changed.set()
