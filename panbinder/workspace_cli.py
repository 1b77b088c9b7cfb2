"""``panbinder workspaces``: list the persistent workspaces, remove those unused too long.

Each line: owner, space on disk, quota, last use, and what ``--apply`` does with it (``remove``
for a workspace unused for more than ``Workspaces.retention_days``, ``in use`` while a server
mounts it, else ``keep``). Without ``--apply`` nothing changes (a dry run). A workspace that
cannot be removed is reported and the others are still handled; the exit status is then 1.
Each removal checks again under the workspace's lock: one used since the listing (a launch) or
still attached by a server is kept and reported as kept.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from functools import cached_property

from traitlets import Bool

from .command import PanbinderBase
from .docker_engine import Docker
from .errors import PanbinderError
from .launcher.workspace_disk import WorkspaceDisk
from .launcher.workspaces import WorkspaceRecord, Workspaces, human_bytes, select_unused

IN_USE = 409  # the engine's answer to removing a volume a container mounts


class WorkspacesApp(PanbinderBase):
    name = "panbinder-workspaces"
    description = "List persistent workspaces (size, quota, last use); remove unused ones with --apply."
    usage = "panbinder workspaces [--apply] [--retention-days N]"
    classes = [PanbinderBase, Workspaces, Docker]
    apply = Bool(False, help="Remove the workspaces listed as 'remove' (default: only list them).").tag(
        config=True
    )
    flags = {
        **PanbinderBase.flags,
        "apply": ({"WorkspacesApp": {"apply": True}}, "Really remove unused workspaces."),
    }
    aliases = {**PanbinderBase.aliases, "retention-days": "Workspaces.retention_days"}

    @cached_property
    def settings(self) -> Workspaces:
        return Workspaces(parent=self, log=self.log)

    @cached_property
    def docker(self) -> Docker:
        return Docker(parent=self, log=self.log)

    def volumes_in_use(self) -> set[str]:
        """Names of workspace volumes a container (running or not) mounts on the run engine."""
        used = set()
        try:
            for container in self.docker.client.containers.list(all=True):
                for mount in container.attrs.get("Mounts") or []:
                    if mount.get("Type") == "volume" and str(mount.get("Name", "")).startswith(
                        self.settings.volume_prefix
                    ):
                        used.add(mount["Name"])
        except Exception as e:  # without the engine, nothing can be shown to be unused
            raise PanbinderError(
                "The docker engine does not answer, so workspaces in use cannot be told apart; "
                "start it (or set Docker.host) and try again.",
                reason="docker_down",
                log_message=str(e),
            ) from e
        return used

    def start(self) -> None:
        disk = WorkspaceDisk(self.settings)
        records = self.settings.records()
        try:
            used_volumes = self.volumes_in_use()
        except PanbinderError as e:
            print(f"error: {e.message}", file=sys.stderr)
            self.exit(2)
        in_use = {r.key for r in records if f"{self.settings.volume_prefix}{r.key}" in used_volumes}
        now = datetime.now(UTC)
        removals = select_unused(records, now=now, retention_days=self.settings.retention_days, in_use=in_use)
        cutoff = now - timedelta(days=self.settings.retention_days)
        remove = {r.key for r in removals}
        print(f"{'owner':<32} {'on disk':>10} {'quota':>10}  {'last used':<25} action")
        for r in records:
            action = "in use" if r.key in in_use else "remove" if r.key in remove else "keep"
            size, quota = human_bytes(disk.disk_bytes(r.key)), human_bytes(r.quota_bytes)
            print(f"{r.owner:<32} {size:>10} {quota:>10}  {r.last_used:<25} {action}")
        if not self.apply:
            print(
                f"{len(removals)} of {len(records)} workspaces would be removed (dry run; --apply removes them)"
            )
            return
        outcomes = [self.remove(disk, r, cutoff) for r in removals]
        print(f"removed {outcomes.count('removed')} of {len(records)} workspaces")
        if "failed" in outcomes:
            self.exit(1)

    def remove(self, disk: WorkspaceDisk, record: WorkspaceRecord, cutoff: datetime) -> str:
        """Remove the filesystem and record (kept when, checked under the workspace's lock, it
        was used after ``cutoff`` or a server mounts it), then its docker volume: 'removed',
        'kept' or 'failed'."""
        from docker.errors import APIError, NotFound

        try:
            removed = disk.remove(record.key, unused_before=cutoff)
        except PanbinderError as e:
            print(f"not removed: workspace of {record.owner} ({e.log_message})", file=sys.stderr)
            return "failed"
        if not removed:
            print(f"kept: workspace of {record.owner} (used since it was listed)")
            return "kept"
        volume = f"{self.settings.volume_prefix}{record.key}"
        try:
            self.docker.client.api.remove_volume(volume)
        except NotFound:
            pass
        except APIError as e:
            why = "a server uses it" if e.status_code == IN_USE else str(e)
            print(f"volume {volume} of {record.owner} not removed ({why})", file=sys.stderr)
            return "failed"
        print(f"removed the workspace of {record.owner}")
        return "removed"
