"""Build slots: at most ``size`` builds run at once; the others wait in arrival order, except that
background builds (a nightly check's rebuilds) wait behind every other build, so they yield to
readers' builds."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable


class SlotQueue:
    """A FIFO of keys waiting for one of ``size`` slots.

    ``enter`` returns a future that is done when the key holds a slot; ``leave`` frees the
    slot (or the place in the line) and hands it on. ``position`` is 1-based. A key entered with
    ``background=True`` goes behind every other waiting key, and keys entered later without it
    go ahead of it too.
    """

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self.running: set[Hashable] = set()
        self.waiting: list[Hashable] = []
        self.background: set[Hashable] = set()
        self._futures: dict[Hashable, asyncio.Future] = {}

    def enter(self, key: Hashable, *, background: bool = False) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self._futures[key] = future
        if background:
            self.background.add(key)
            self.waiting.append(key)
        else:  # ahead of the background keys
            first = next((i for i, k in enumerate(self.waiting) if k in self.background), len(self.waiting))
            self.waiting.insert(first, key)
        self._grant()
        return future

    def foreground(self) -> int:
        """How many keys not entered as background run or wait."""
        return sum(1 for key in (*self.running, *self.waiting) if key not in self.background)

    def leave(self, key: Hashable) -> None:
        self.running.discard(key)
        self.background.discard(key)
        if key in self.waiting:
            self.waiting.remove(key)
        future = self._futures.pop(key, None)
        if future is not None and not future.done():
            future.cancel()
        self._grant()

    def position(self, key: Hashable) -> int | None:
        try:
            return self.waiting.index(key) + 1
        except ValueError:
            return None

    def resize(self, size: int) -> None:
        self.size = max(1, size)
        self._grant()

    def _grant(self) -> None:
        while self.waiting and len(self.running) < self.size:
            key = self.waiting.pop(0)
            self.running.add(key)
            future = self._futures.pop(key)
            if not future.done():
                future.set_result(None)
