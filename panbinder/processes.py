"""Find and stop the processes a ``panbinder serve`` started, even after it died (Linux ``/proc``).

``serve`` puts two variables into its own environment before it starts anything: the state folder
(``PANBINDER_SERVE_STATE``) and an owner id unique to this run (``PANBINDER_SERVE_OWNER``). Every
process it starts inherits them (the Hub, the proxy, the culler, a build's ``docker build`` and
``git``, the preview worker), so a later ``serve`` on the same state folder recognises what an
earlier run left behind by reading ``/proc/PID/environ``, whatever the process's parent is now,
and never touches the processes of a portal with another state folder. A pid from a pid file is
only stopped when its command line names the expected program and it carries this state folder:
pids are reused.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

STATE_ENV = "PANBINDER_SERVE_STATE"
OWNER_ENV = "PANBINDER_SERVE_OWNER"
PROC = Path("/proc")
# daemons that outlive a portal by design even when one was started from it: never stopped here
DAEMONS = frozenset(
    {"dockerd", "containerd", "containerd-shim", "containerd-shim-runc-v2", "docker-proxy", "docker-registry"}
)


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    args: tuple[str, ...]
    state: str = ""  # PANBINDER_SERVE_STATE of the process ("" when unmarked)
    owner: str = ""  # PANBINDER_SERVE_OWNER of the process

    @property
    def command(self) -> str:
        text = " ".join(self.args)
        return text if len(text) <= 160 else text[:157] + "..."

    @property
    def daemon(self) -> bool:
        return bool(self.args) and os.path.basename(self.args[0]) in DAEMONS

    def runs(self, program: str) -> bool:
        """Whether ``program`` is the executable or a script or module it runs."""
        return any(program in arg for arg in self.args[:4])


def _environ_markers(pid: int) -> tuple[str, str]:
    try:
        raw = (PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return "", ""
    state = owner = ""
    for item in raw.split(b"\0"):
        if item.startswith(STATE_ENV.encode() + b"="):
            state = item.split(b"=", 1)[1].decode("utf-8", "replace")
        elif item.startswith(OWNER_ENV.encode() + b"="):
            owner = item.split(b"=", 1)[1].decode("utf-8", "replace")
    return state, owner


def read_proc(pid: int) -> Proc | None:
    """The process ``pid``, or None when it is gone or a zombie."""
    base = PROC / str(pid)
    try:
        stat = (base / "stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] in ("Z", "X"):
            return None
        args = tuple(a.decode("utf-8", "replace") for a in (base / "cmdline").read_bytes().split(b"\0") if a)
    except (OSError, IndexError):
        return None
    state, owner = _environ_markers(pid)
    return Proc(pid=pid, ppid=int(fields[1]), args=args, state=state, owner=owner)


def all_procs() -> list[Proc]:
    found = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            proc = read_proc(int(entry.name))
            if proc is not None:
                found.append(proc)
    return found


def alive(pid: int) -> bool:
    """Running (a zombie counts as gone: nobody may reap an orphan here)."""
    return read_proc(pid) is not None


def left_behind(state: str, owner: str) -> list[Proc]:
    """Processes marked with state folder ``state`` by a run other than ``owner``."""
    me = os.getpid()
    return [p for p in all_procs() if p.state == state and p.owner != owner and p.pid != me and not p.daemon]


def marked_by(owner: str) -> list[Proc]:
    """Processes started (directly or not) by the run ``owner``."""
    me = os.getpid()
    return [p for p in all_procs() if owner and p.owner == owner and p.pid != me and not p.daemon]


def stop_pids(pids: Iterable[int], *, timeout: float, first: signal.Signals = signal.SIGTERM) -> list[int]:
    """Send ``first``, wait up to ``timeout`` seconds, then SIGKILL the rest.

    Returns the pids that needed SIGKILL.
    """
    pending = set(pids)
    for pid in list(pending):
        try:
            os.kill(pid, first)
        except ProcessLookupError:
            pending.discard(pid)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        pending = {pid for pid in pending if alive(pid)}
        if pending:
            time.sleep(0.05)
    for pid in pending:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in pending) and time.monotonic() < deadline:
        time.sleep(0.05)
    return sorted(pending)


def read_pid_file(path: Path) -> int | None:
    try:
        text = path.read_text().split()
        return int(text[0]) if text else None
    except (OSError, ValueError):
        return None


def stale_from_pid_file(path: Path, program: str, state: str) -> Proc | None:
    """The process in pid file ``path`` if it runs ``program`` for state folder ``state``."""
    pid = read_pid_file(path)
    proc = read_proc(pid) if pid else None
    if proc is None or proc.pid == os.getpid() or not proc.runs(program) or proc.state != state:
        return None
    return proc


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) > 9 and parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(parts[9])
    return inodes


def port_holders(port: int) -> list[Proc]:
    """The processes with a socket listening on TCP ``port`` (those this user may inspect)."""
    inodes = {f"socket:[{i}]" for i in _listening_inodes(port)}
    holders = []
    if not inodes:
        return holders
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) in inodes:
                    proc = read_proc(int(entry.name))
                    if proc is not None:
                        holders.append(proc)
                    break
            except OSError:
                continue
    return holders


def port_free(ip: str, port: int) -> bool:
    """Whether a server could listen on ``ip:port`` now (as the Hub, proxy and portal do)."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((ip, port))
        except OSError:
            return False
    return True
