"""Build slots: at most ``size`` builds run at once; the others wait in arrival order."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable


class SlotQueue:
    """A FIFO of keys waiting for one of ``size`` slots.

    ``enter`` returns a future that is done when the key holds a slot; ``leave`` frees the
    slot (or the place in the line) and hands it on. ``position`` is 1-based.
    """

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self.running: set[Hashable] = set()
        self.waiting: list[Hashable] = []
        self._futures: dict[Hashable, asyncio.Future] = {}

    def enter(self, key: Hashable) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self._futures[key] = future
        self.waiting.append(key)
        self._grant()
        return future

    def leave(self, key: Hashable) -> None:
        self.running.discard(key)
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
