"""A workspace on the Hub's host: a sparse ext4 image per user, loop-mounted, with its record.

Layout under ``Workspaces.root``: ``<key>.img`` (the filesystem, its apparent size the quota),
``<key>.json`` (owner, quota, created, last use), ``<key>.lock`` and ``mnt/<key>`` (where it is
mounted, ``nosuid,nodev``; the docker volume binds this folder). A full filesystem refuses writes
with ENOSPC, whoever writes, so the quota holds inside every server. Measured on this service's
hosts (Debian 12, ext4 in a file on overlay2's backing disk): creating and mounting a 5 GiB
workspace takes about 0.15 s and 4.5 MiB of disk (mostly ext4's journal, which counts against
the quota: a 32 MiB workspace holds about 25 MiB); an idle workspace costs a loop device. A
larger quota applies at the next launch that finds no server using the workspace (an online
resize needs CAP_SYS_RESOURCE, which the Hub's root lacks in some containers, as here).

The filesystem is mounted on first use and stays mounted (a host restart unmounts it; the next
launch mounts it again). It is never mounted twice from two loop devices, which would corrupt
it: a device already attached to the image (``losetup -j``) is reused. Every step runs under
the workspace's file lock, so two launches of one user at once do not race. Blocking: callers
run these methods in an executor.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from panbinder.errors import PanbinderError

from .workspaces import WorkspaceRecord, Workspaces, now_text, usage_note, workspace_key

MKFS = ("mkfs.ext4", "-q", "-F", "-m", "0", "-L", "pbwork")


def _run(*argv: str, timeout: float = 60, ok: tuple[int, ...] = (0,)) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise _failed(f"{argv[0]}: {e}") from e
    if proc.returncode not in ok:
        raise _failed(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()[:300]}")
    return proc.stdout


def _failed(log_message: str) -> PanbinderError:
    return PanbinderError(
        "Your workspace could not be prepared; try again, or tell the operators if it keeps failing.",
        reason="workspace_failed",
        status_code=503,
        log_message=log_message,
    )


class WorkspaceDisk:
    def __init__(self, settings: Workspaces) -> None:
        self.settings = settings
        self.root = Path(settings.root)

    def image(self, key: str) -> Path:
        return self.root / f"{key}.img"

    def record_path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def mount_dir(self, key: str) -> Path:
        return self.root / "mnt" / key

    @contextlib.contextmanager
    def locked(self, key: str) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)  # records name users; images hold their files
        with open(self.root / f"{key}.lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def ensure(self, owner: str) -> WorkspaceRecord:
        """``owner``'s workspace made (first use), grown to a larger quota, mounted and marked
        used now; its record."""
        if os.geteuid() != 0:
            raise _failed(
                "workspaces need the Hub to run as root (it loop-mounts them); or set Workspaces.enabled = False"
            )
        key = workspace_key(owner)
        with self.locked(key):
            record = self.read(key)
            if not self.image(key).exists():
                record = self._create(key, owner)
            elif record is None:  # the record was lost, the files are not: keep them
                record = self._recover(key, owner)
            if self.settings.quota_bytes > record.quota_bytes and self._grow(key, self.settings.quota_bytes):
                record = WorkspaceRecord(
                    key, owner, self.settings.quota_bytes, record.created, record.last_used
                )
            self._mount(key)
            return self._write(WorkspaceRecord(key, owner, record.quota_bytes, record.created, now_text()))

    def touch(self, owner: str) -> None:
        """Mark ``owner``'s workspace used now (a server of it stopped)."""
        key = workspace_key(owner)
        with self.locked(key):
            record = self.read(key)
            if record is not None:
                self._write(
                    WorkspaceRecord(key, record.owner, record.quota_bytes, record.created, now_text())
                )

    def read(self, key: str) -> WorkspaceRecord | None:
        try:
            return WorkspaceRecord.from_json(self.record_path(key).read_text())
        except FileNotFoundError:
            return None

    def usage(self, owner: str) -> tuple[int, int] | None:
        """(used, size) in bytes of a mounted workspace's filesystem (None: not mounted here)."""
        mount = self.mount_dir(workspace_key(owner))
        if not os.path.ismount(mount):
            return None
        st = os.statvfs(mount)
        return (st.f_blocks - st.f_bfree) * st.f_frsize, st.f_blocks * st.f_frsize

    def disk_bytes(self, key: str) -> int:
        """Space the workspace takes on the host's disk (the sparse image's allocated blocks)."""
        try:
            return self.image(key).stat().st_blocks * 512
        except FileNotFoundError:
            return 0

    def remove(self, key: str, *, unused_before: datetime | None = None) -> bool:
        """Unmount and delete a workspace; False (nothing changes) when, checked under its lock,
        it was used at or after ``unused_before`` (a launch since the caller read the records)
        or a server still attaches its image."""
        with self.locked(key):
            record = self.read(key)
            if unused_before is not None and record is not None and record.last_used_at >= unused_before:
                return False
            mount = self.mount_dir(key)
            if os.path.ismount(mount):
                _run("umount", str(mount))
            if self.image(key).exists() and not self._released(key):
                self._mount(key)  # a server still uses it: mounted again as it was
                return False
            with contextlib.suppress(FileNotFoundError):
                mount.rmdir()
            for path in (self.image(key), self.record_path(key)):
                path.unlink(missing_ok=True)
        (self.root / f"{key}.lock").unlink(missing_ok=True)
        return True

    def _write(self, record: WorkspaceRecord) -> WorkspaceRecord:
        path = self.record_path(record.key)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(record.to_json())
        os.replace(tmp, path)
        return record

    def _create(self, key: str, owner: str) -> WorkspaceRecord:
        image, size = self.image(key), self.settings.quota_bytes
        image.unlink(missing_ok=True)
        with open(image, "wb") as f:
            f.truncate(size)  # sparse: blocks are allocated as files are written
        image.chmod(0o600)
        uid = self.settings.uid
        _run(*MKFS, "-E", f"root_owner={uid}:{uid}", str(image))
        now = now_text()
        record = self._write(WorkspaceRecord(key, owner, size, now, now))
        self._mount(key)
        return record

    def _recover(self, key: str, owner: str) -> WorkspaceRecord:
        """A record for an existing image whose record is gone: its size is the quota, its
        last change the creation and last use (the filesystem and its files stay)."""
        st = self.image(key).stat()
        changed = now_text(datetime.fromtimestamp(st.st_mtime, UTC))
        return self._write(WorkspaceRecord(key, owner, st.st_size, changed, changed))

    def loop_devices(self, key: str) -> list[str]:
        out = _run("losetup", "-j", str(self.image(key)))
        return [line.split(":", 1)[0] for line in out.splitlines() if line.strip()]

    def _mount(self, key: str) -> None:
        mount = self.mount_dir(key)
        if os.path.ismount(mount):
            return
        mount.mkdir(parents=True, exist_ok=True)
        devices = self.loop_devices(key)  # still attached: mounted by a running container
        if devices:
            _run("mount", "-o", "nosuid,nodev", devices[0], str(mount))
        else:
            _run("mount", "-o", "loop,nosuid,nodev", str(self.image(key)), str(mount))
        with contextlib.suppress(OSError):  # mkfs and e2fsck make it; e2fsck makes it again if needed
            (mount / "lost+found").rmdir()

    def _released(self, key: str) -> bool:
        """Whether no loop device holds the image (one is released shortly after its last
        mount goes; a server's mount keeps it)."""
        for _ in range(20):
            if not self.loop_devices(key):
                return True
            time.sleep(0.05)
        return False

    def _grow(self, key: str, size: int) -> bool:
        """Grow the filesystem to ``size`` bytes while no server mounts it (unmounted: an online
        resize needs CAP_SYS_RESOURCE, which the Hub's root may lack); False when in use."""
        mount = self.mount_dir(key)
        if os.path.ismount(mount):
            _run("umount", str(mount))
        if not self._released(key):
            return False  # a running server still mounts it: it grows at a later launch
        image = str(self.image(key))
        with open(image, "r+b") as f:
            f.truncate(size)
        _run("e2fsck", "-f", "-p", image, timeout=300, ok=(0, 1))  # 1: errors corrected
        _run("resize2fs", image, timeout=300)
        return True


async def workspace_note(settings: Workspaces, owner: str) -> str:
    """The launch's line about ``owner``'s workspace: its use and quota when mounted on this
    host (docker, swarm), else only where it is."""
    from panbinder.executor import run_blocking

    path = settings.container_path
    try:
        usage = await run_blocking(WorkspaceDisk(settings).usage, owner)
    except OSError:
        usage = None
    if usage is None:
        return f"Your workspace {path} keeps your files for your next servers.\n"
    return usage_note(*usage, path)
