"""Progress events shared by the builder, the launcher and the event stream.

The wire format follows BinderHub's: one JSON object per Server-Sent Event with a ``phase``
and an optional ``message``; ``ready`` carries the server url and token.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

PHASES = (
    "waiting",
    "fetching",
    "building",
    "pushing",
    "built",
    "launching",
    "ready",
    "failed",
)
TERMINAL_PHASES = frozenset({"ready", "failed"})


@dataclass(frozen=True)
class Event:
    phase: str
    message: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise ValueError(f"unknown phase {self.phase!r}")

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"phase": self.phase}
        if self.message:
            data["message"] = self.message
        data.update(self.extra)
        return data

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL_PHASES


def sse_event(event: Event) -> str:
    """One Server-Sent Event; each ends with a blank line."""
    return f"data: {json.dumps(event.to_dict())}\n\n"


SSE_KEEPALIVE = ":keepalive\n\n"


def as_dict(obj: Any) -> dict[str, Any]:
    return asdict(obj)
