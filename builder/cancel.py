"""Stop one build from another thread: its ``docker build`` client and its ``git`` processes.

A build runs in a worker thread (repo2docker is blocking). The thread binds a ``CancelToken``
with ``bound(token)``; ``engine.run_streaming`` registers every process it starts with the
token of its thread, and ``cancel()`` terminates them. Killing the ``docker build`` client
closes its BuildKit session, and dockerd's BuildKit then cancels the running step (checked
with a ``RUN sleep`` step: the step's processes are gone within a second). repo2docker starts
``git clone`` itself, so the token also terminates our child processes that work in the
build's checkout folder (found in ``/proc`` by command line or working directory).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_local = threading.local()


class BuildCancelled(Exception):
    """Raised in the build thread when its build was cancelled."""


class CancelToken:
    def __init__(self, workdir: str = "") -> None:
        self.workdir = workdir
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._procs: set[subprocess.Popen] = set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self.cancelled:
            raise BuildCancelled("the build was cancelled")

    def register(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._procs.add(proc)
        if self.cancelled:
            _terminate(proc)

    def unregister(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._procs.discard(proc)

    def cancel(self) -> None:
        """Stop the build's processes; safe to call from any thread, more than once."""
        self._event.set()
        with self._lock:
            procs = list(self._procs)
        for proc in procs:
            _terminate(proc)
        if self.workdir:
            for pid in children_working_in(self.workdir):
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass


def _terminate(proc: subprocess.Popen) -> None:
    """SIGTERM to the process and its children, then SIGKILL after 10 s if it is still there."""
    if proc.poll() is not None:
        return
    children = [pid for pid, _args, _cwd in _children(proc.pid)]
    proc.terminate()
    for pid in children:  # a shell's children would keep the output pipe open
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    def reap() -> None:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()

    threading.Thread(target=reap, daemon=True, name="panbinder-cancel").start()


def _children(parent: int) -> list[tuple[int, str, str]]:
    """(pid, command line, working directory) of the children of ``parent`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid != parent:
                continue
            args = (entry / "cmdline").read_bytes().decode("utf-8", "replace")
            cwd = os.readlink(entry / "cwd")
        except (OSError, IndexError, ValueError):
            continue
        found.append((int(entry.name), args, cwd))
    return found


def children_working_in(folder: str) -> list[int]:
    """Pids of this process's children that name ``folder`` or run inside it."""
    return [
        pid
        for pid, args, cwd in _children(os.getpid())
        if folder in args or cwd == folder or cwd.startswith(folder + os.sep)
    ]


def current() -> CancelToken | None:
    """The token bound to this thread, if any."""
    return getattr(_local, "token", None)


@contextmanager
def bound(token: CancelToken) -> Iterator[CancelToken]:
    previous = current()
    _local.token = token
    try:
        yield token
    finally:
        _local.token = previous
