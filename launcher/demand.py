"""Expected demand for pre-started servers: which launches to keep servers ready for, and how many.

A kind of launch (an image with its mounts, environment and profile: ``pool_key``) is scored by
the clicks it is expected to get soon:

    score = sum over its launches of the last week of exp(-age / decay)
            + registration_weight * exp(-time since its publication was registered / decay)

so a launch a minute ago counts about 1, one a day ago (with the default decay of three days)
0.72, and a launch each day this week (2.2) beats one a minute ago; a publication registered today
ranks like one launched today even before anyone clicked it (a paper just out is read at once),
and every registered publication keeps a little demand however old. How many
servers a kind wants is the most launches it had within any ``burst_window`` seconds of the
week (a class, a talk, a tweet: readers click together), at least one.

``allocate`` shares the pool's capacity (``memory_budget`` ÷ memory of one paused server, at
most ``max_servers``): first one server per kind in order of score, then the rest of each kind's
wanted servers, still in order of score. ``select_evictions`` names the servers held beyond that
plan, lowest score first. Pure functions: ``tests/test_demand.py`` checks them without a Hub.

The record of launches lives in a small JSON file in the state folder (``DemandLog``), so a
restarted service knows what was clicked this week from its first second.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

WEEK = 7 * 24 * 3600.0


@dataclass
class Demand:
    """What is known of one kind of launch: when it was launched this week, when registered."""

    launches: list[float] = field(default_factory=list)  # epoch seconds, oldest first
    registered: float | None = None  # epoch seconds; None: not a registered publication
    image: str = ""  # the full image name when the kind has no mounts or environment
    profile: str = ""  # and the name of its resource profile (empty: none or the default)


def score(demand: Demand, now: float, *, decay: float, registration_weight: float) -> float:
    """Expected clicks (see the module docstring); 0 for a kind nobody launched or registered."""
    total = sum(math.exp(-max(0.0, now - t) / decay) for t in demand.launches if now - t <= WEEK)
    if demand.registered is not None:
        total += registration_weight * math.exp(-max(0.0, now - demand.registered) / decay)
    return total


def peak(demand: Demand, now: float, window: float) -> int:
    """The most launches within any ``window`` seconds during the last week (at least 1)."""
    times = sorted(t for t in demand.launches if now - t <= WEEK)
    best, start = 1, 0
    for end, t in enumerate(times):
        while t - times[start] > window:
            start += 1
        best = max(best, end - start + 1)
    return best


def allocate(scores: dict[str, float], wanted: dict[str, int], capacity: int) -> dict[str, int]:
    """Servers per kind: one each by descending score, then the rest wanted, within ``capacity``.
    Kinds with a score of 0 get none."""
    order = sorted((k for k, s in scores.items() if s > 0), key=lambda k: (-scores[k], k))
    plan = {k: 0 for k in order}
    left = max(0, capacity)
    for k in order:
        if left and wanted.get(k, 1) > 0:
            plan[k], left = 1, left - 1
    for k in order:
        extra = min(left, max(0, wanted.get(k, 1) - plan[k]))
        plan[k] += extra
        left -= extra
    return {k: n for k, n in plan.items() if n}


def select_evictions(held: dict[str, int], plan: dict[str, int], scores: dict[str, float]) -> list[str]:
    """One kind per server to remove (a kind named twice loses two): what is held beyond the
    plan, the lowest-scored kinds first."""
    out: list[str] = []
    for k in sorted(held, key=lambda k: (scores.get(k, 0.0), k)):
        out += [k] * max(0, held[k] - plan.get(k, 0))
    return out


def key_id(key: tuple) -> str:
    """A stable name for a pool key (image, mounts, environment, profile) in the demand log."""
    return hashlib.sha256(repr(key).encode()).hexdigest()[:24]


class DemandLog:
    """Launch times per kind, kept for a week in ``path`` (a JSON file; None: memory only)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.kinds: dict[str, Demand] = {}
        if path is not None and path.exists():
            self.kinds = self._read(path)

    @staticmethod
    def _read(path: Path) -> dict[str, Demand]:
        try:
            raw = json.loads(path.read_text())
            return {
                str(k): Demand(
                    launches=[float(t) for t in v.get("launches", [])],
                    image=str(v.get("image", "")),
                    profile=str(v.get("profile", "")),
                )
                for k, v in raw.items()
            }
        except (OSError, ValueError, AttributeError, TypeError):
            return {}  # a damaged record only costs this week's history

    def get(self, kind: str) -> Demand:
        return self.kinds.setdefault(kind, Demand())

    def record(self, kind: str, now: float, image: str = "", profile: str = "") -> None:
        demand = self.get(kind)
        demand.launches = [t for t in demand.launches if now - t <= WEEK] + [now]
        demand.image, demand.profile = image or demand.image, profile or demand.profile
        self.save(now)

    def registered(self, entries: Iterable[tuple[str, float]]) -> None:
        for kind, when in entries:
            self.get(kind).registered = when

    def save(self, now: float) -> None:
        if self.path is None:
            return
        data = {
            k: {
                "launches": [t for t in d.launches if now - t <= WEEK],
                "image": d.image,
                "profile": d.profile,
            }
            for k, d in self.kinds.items()
            if any(now - t <= WEEK for t in d.launches)
        }
        tmp = self.path.with_suffix(".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(data))
            os.replace(tmp, self.path)
        except OSError:
            pass  # the state folder full or read-only: demand is kept in memory only
