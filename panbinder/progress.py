"""Progress of long commands (datasets scan, restore --verify-only): a tqdm bar on a terminal only.

Library code takes a ``progress`` callable and calls it on the items it works through; the
default passes them through untouched, so the portal, logs and tests print nothing. Commands
pass ``terminal_progress``, which draws on stderr when stderr is a terminal.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Protocol, TypeVar

T = TypeVar("T")


class Progress(Protocol):
    def __call__(self, items: Iterable[T], *, total: int | None = None, desc: str = "") -> Iterable[T]: ...


def no_progress(items: Iterable[T], *, total: int | None = None, desc: str = "") -> Iterable[T]:
    return items


def terminal_progress(items: Iterable[T], *, total: int | None = None, desc: str = "") -> Iterable[T]:
    """``items`` with a progress bar on stderr when it is a terminal, else ``items`` as they are."""
    if not sys.stderr.isatty():
        return items
    from tqdm import tqdm

    return tqdm(items, total=total, desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True)


__all__ = ["Progress", "no_progress", "terminal_progress"]
