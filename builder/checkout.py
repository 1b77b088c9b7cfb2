"""The repository size cap: measured on the checkout, after the clone, before any build step."""

from __future__ import annotations

import os

from panbinder.errors import PanbinderError


def tree_size(path: str, stop_after: int = 0) -> int:
    """Bytes of the files under ``path`` (symbolic links not followed); stops counting past ``stop_after``."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
        if stop_after and total > stop_after:
            break
    return total


def human(size: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"  # pragma: no cover


def check_checkout_size(path: str, limit: int) -> None:
    """Raise PanbinderError when the checkout at ``path`` is larger than ``limit`` bytes (0: no cap)."""
    if limit <= 0:
        return
    size = tree_size(path, stop_after=limit)
    if size > limit:
        raise PanbinderError(
            f"The repository is larger than this service's limit of {human(limit)} (more than "
            f"{human(size)} after checkout, history included). Move large data files out of the "
            "repository, for example to a dataset linked to the publication, or ask the operators.",
            reason="repo_too_large",
            log_message=f"checkout {path} exceeds {limit} bytes",
            status_code=413,
        )
