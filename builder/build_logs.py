"""Kept build logs: one file per image (its latest build), bounded in size and in number."""

from __future__ import annotations

import re
from pathlib import Path

from panbinder.errors import PanbinderError
from panbinder.events import Event
from panbinder.paths import safe_join

from .base import BuildRequest

LOG_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,250}\.log$")


def log_file_name(request: BuildRequest) -> str:
    """One file per image: <image name with / as _>@<tag>.log (the latest build of it)."""
    return f"{request.image.name.replace('/', '_')}@{request.image.tag}.log"


def render(events: list[Event], max_bytes: int) -> bytes:
    """The log as text; beyond ``max_bytes`` its first quarter and its end are kept."""
    text = "".join(
        f"[{e.phase}] {e.message.rstrip()}\n" if e.message else f"[{e.phase}]\n" for e in events
    ).encode("utf-8", "replace")
    if max_bytes <= 0 or len(text) <= max_bytes:
        return text
    head = max_bytes // 4
    tail = max_bytes - head
    cut = len(text) - head - tail
    marker = f"\n[... {cut} bytes of this log were left out ...]\n".encode()
    return text[:head] + marker + text[-tail:]


def write_log(log_dir: Path, name: str, events: list[Event], *, max_bytes: int, keep: int) -> None:
    """Write one log, then remove the oldest logs beyond ``keep`` (0: keep all)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    (log_dir / name).write_bytes(render(events, max_bytes))
    if keep > 0:
        logs = sorted(log_dir.glob("*.log"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in logs[keep:]:
            old.unlink(missing_ok=True)


def log_path(log_dir: str | Path, name: str) -> Path:
    """The kept log called ``name``; anything that is not a plain log file name in the folder is refused."""
    if not LOG_NAME_RE.match(name) or ".." in name:
        raise PanbinderError(
            "No such build log; use the link from the failed build.",
            reason="bad_log_name",
            log_message=f"refused build log name {name!r}",
            status_code=404,
        )
    try:
        path = safe_join(log_dir, name)
    except PanbinderError as e:
        raise PanbinderError(
            "No such build log; use the link from the failed build.",
            reason="bad_log_name",
            log_message=e.log_message,
            status_code=404,
        ) from None
    if not path.is_file():
        raise PanbinderError(
            "This build log is no longer kept; start the build again to see its log.",
            reason="log_not_found",
            status_code=404,
        )
    return path
