"""Dataset catalogue, path confinement and read-only mounts (walking skeleton: the seam only)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MountSpec:
    """One read-only bind mount of facility storage into a launched server."""

    host_path: str
    container_path: str
    read_only: bool = True


__all__ = ["MountSpec"]
