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


# Sent with the last event: an auto-reconnecting EventSource that sees the stream close waits
# this long (milliseconds) before asking again, instead of about 3 s, so a client that does not
# close it on 'ready' or 'failed' does not launch (or fail) a second time.
TERMINAL_RETRY_MS = 24 * 3600 * 1000

# HTTP status a failed event carries when nothing more specific applies (BinderHub's field).
DEFAULT_FAILED_STATUS = 500


def sse_event(event: Event) -> str:
    """One Server-Sent Event; each ends with a blank line. The terminal event also sets the
    client's reconnection delay (``retry:``)."""
    retry = f"retry: {TERMINAL_RETRY_MS}\n" if event.terminal else ""
    return f"{retry}data: {json.dumps(event.to_dict())}\n\n"


SSE_KEEPALIVE = ":keepalive\n\n"


def as_dict(obj: Any) -> dict[str, Any]:
    return asdict(obj)
