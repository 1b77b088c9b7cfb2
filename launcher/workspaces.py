"""Persistent workspaces: each signed-in user's ``~/work``, kept across servers, images and restarts.

A workspace belongs to the portal's user (the name JupyterHub's authenticator gives), not to
the temporary Hub user of a launch; the portal signs its owner into the launch options
(``signing.py``), so a server's owner cannot mount someone else's workspace through the Hub API.
Anonymous launches get none: their changes are temporary.

Each back-end maps a workspace with its own mechanism:

- docker and swarm: a docker volume ``<volume_prefix><key>`` (local driver, a bind of the
  workspace's filesystem, see ``workspace_disk.py``) mounted read-write at ``container_path``.
  The quota is the size of that filesystem: a sparse ext4 image per user, loop-mounted on the
  Hub's host, so a write past it fails with "No space left on device" inside the server. Docker
  volume options alone cannot do this here: ``tmpfs`` with ``size=`` is not persistent, the
  overlay2 ``size`` storage option and xfs project quotas need an xfs backing filesystem with
  ``pquota``, which this service's hosts do not have. On a multi-node swarm the image root must
  be on the node of the task (as for the Hub's own bridge networking, ``swarm.py``).
- Kubernetes: kubespawner's own storage (``kube.py``): a PersistentVolumeClaim
  ``<volume_prefix><key>`` of ``quota`` bytes (``storage_pvc_ensure``, ``storage_capacity``),
  never deleted with the temporary Hub user (``delete_pvc`` off); the quota holds as far as the
  storage class enforces a claim's size.
- Slurm: the user's folder under ``PanbinderSlurmSpawner.workspace_root`` on the cluster's shared
  filesystem (typically the home filesystem), bind-mounted read-write by podman; the quota is
  the cluster filesystem's own.

``panbinder workspaces`` lists them (size, quota, last use) and removes those unused for longer
than ``retention_days`` (dry run unless ``--apply``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from traitlets import Bool, Int, TraitError, Unicode, default, validate
from traitlets.config import LoggingConfigurable

from panbinder.errors import PanbinderError
from panbinder.launcher.profiles import memory_bytes
from panbinder.state import state_dir

KEY_HASH_CHARS = 12
LOOP_MOUNT_BACKENDS = ("docker", "swarm")  # back-ends whose Hub loop-mounts each workspace


def workspace_key(owner: str) -> str:
    """The stable name of ``owner``'s workspace: a readable part and a hash of the whole name
    (``Alice.Smith@ex.org`` -> ``alice-smith-ex-org-<12 hex>``). Pinned by a golden test:
    changing it would orphan every workspace."""
    if not owner:
        raise PanbinderError("a workspace needs its owner's name", reason="no_owner")
    slug = re.sub(r"[^a-z0-9]+", "-", owner.lower()).strip("-")[:24].strip("-") or "user"
    return f"{slug}-{hashlib.sha256(owner.encode()).hexdigest()[:KEY_HASH_CHARS]}"


@dataclass(frozen=True)
class WorkspaceRecord:
    """What ``<root>/<key>.json`` keeps about a workspace (times as UTC ISO strings)."""

    key: str
    owner: str
    quota_bytes: int
    created: str
    last_used: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> WorkspaceRecord:
        raw = json.loads(text)
        return cls(
            str(raw["key"]),
            str(raw["owner"]),
            int(raw["quota_bytes"]),
            str(raw["created"]),
            str(raw["last_used"]),
        )

    @property
    def last_used_at(self) -> datetime:
        return parse_time(self.last_used)


def now_text(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds")


def parse_time(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def select_unused(
    records: list[WorkspaceRecord], *, now: datetime, retention_days: int, in_use: set[str] = frozenset()
) -> list[WorkspaceRecord]:
    """Workspaces last used more than ``retention_days`` ago and not mounted by a running server
    (``in_use``: keys), oldest first. ``retention_days`` 0 keeps everything."""
    if retention_days <= 0:
        return []
    limit = now - timedelta(days=retention_days)
    old = [r for r in records if r.last_used_at < limit and r.key not in in_use]
    return sorted(old, key=lambda r: r.last_used_at)


def human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def usage_note(used: int, total: int, path: str) -> str:
    """The line a launch shows about the workspace; says what to do when it is (nearly) full."""
    line = f"Your workspace {path} keeps your files: {human_bytes(used)} of {human_bytes(total)} used"
    if total and used >= 0.95 * total:
        return (
            f"{line}. It is full: saving files there fails with 'No space left on device'; "
            f"delete files in {path} to make room.\n"
        )
    return f"{line}.\n"


class Workspaces(LoggingConfigurable):
    """Settings of the persistent workspaces of signed-in users (shared by portal and Hub)."""

    enabled = Bool(
        True, help="Give each signed-in user a persistent workspace at container_path in every server."
    ).tag(config=True)
    root = Unicode(
        help="Folder of the workspaces' filesystem images, records and mount points on the Hub's "
        "host (default: <state>/workspaces). It needs room for every workspace's used space."
    ).tag(config=True)
    quota = Unicode(
        "5G",
        help="Size of each new workspace ('512M', '5G'): writes beyond it fail with 'No space left "
        "on device'. An existing workspace grows to a larger quota at its next launch; it never shrinks.",
    ).tag(config=True)
    retention_days = Int(
        180,
        help="Days since its last use after which 'panbinder workspaces --apply' removes a "
        "workspace (0: never).",
    ).tag(config=True)
    container_path = Unicode(
        "/home/jovyan/work", help="Where the workspace appears in servers (the image user's ~/work)."
    ).tag(config=True)
    volume_prefix = Unicode(
        "panbinder-work-",
        help="Name prefix of workspace volumes (docker volumes, Kubernetes claims).",
    ).tag(config=True)
    changes_download = Bool(
        True,
        help="Servers without a workspace (anonymous launches) offer a zip of the files changed "
        "since they started at <server>/panbinder/changes.zip and say in their home folder that "
        "changes are temporary (docker and swarm back-ends).",
    ).tag(config=True)
    uid = Int(1000, help="Owner (uid and gid) of a new workspace's top folder: the image user.").tag(
        config=True
    )

    @default("root")
    def _root_default(self) -> str:
        return str(state_dir(self) / "workspaces")

    @validate("quota")
    def _check_quota(self, proposal: dict) -> str:
        value = proposal["value"]
        try:
            if memory_bytes(value) < 16 * 1024**2:
                raise PanbinderError("too small", reason="bad_quota")
        except PanbinderError as e:
            raise TraitError(
                f"Workspaces.quota {value!r}: give a size like '512M' or '5G' (at least 16M)"
            ) from e
        return value

    @validate("container_path")
    def _check_path(self, proposal: dict) -> str:
        value = proposal["value"]
        if not value.startswith("/") or value.rstrip("/").startswith("/data") or "/../" in f"{value}/":
            raise TraitError(f"Workspaces.container_path {value!r}: an absolute path outside /data")
        return value

    @property
    def quota_bytes(self) -> int:
        return memory_bytes(self.quota)

    def volume_name(self, owner: str) -> str:
        return f"{self.volume_prefix}{workspace_key(owner)}"

    def settings(self) -> dict:
        """The settings the Hub's configuration applies to its own ``Workspaces``."""
        return {
            name: getattr(self, name)
            for name in (
                "enabled",
                "changes_download",
                "root",
                "quota",
                "retention_days",
                "container_path",
                "volume_prefix",
                "uid",
            )
        }

    def records(self) -> list[WorkspaceRecord]:
        """Every workspace's record under ``root`` (a damaged record is logged and skipped)."""
        found = []
        for path in sorted(Path(self.root).glob("*.json")):
            try:
                found.append(WorkspaceRecord.from_json(path.read_text()))
            except (OSError, ValueError, KeyError, TypeError) as e:
                self.log.warning("workspace record %s unreadable, skipped: %s", path.name, e)
        return found


def off_without_root(settings: Workspaces, backend: str) -> bool:
    """Turn ``settings`` off, with one warning, when ``backend``'s Hub loop-mounts workspaces
    and this process (the Hub's parent) is not root: signed-in launches then start without a
    workspace instead of each failing with 503. True when turned off here."""
    if not settings.enabled or backend not in LOOP_MOUNT_BACKENDS or os.geteuid() == 0:
        return False
    settings.enabled = False
    settings.log.warning(
        "Workspaces turned off: on the %s back-end the Hub loop-mounts each workspace, which needs "
        "root; run panbinder serve as root, or set Workspaces.enabled = False",
        backend,
    )
    return True
