"""One preview child: confine this freshly forked process to a dataset folder, run one
preview, write one frame, exit. The list of steps and why is in preview_worker.py.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .frames import frame, write_all

CLONE_NEWNET = 0x40000000
CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_BIND, MS_REC, MS_PRIVATE, MS_REMOUNT = 0x1, 0x1000, 0x4000, 0x40000, 0x20
READ_ONLY = MS_RDONLY | 0x2 | 0x4 | 0x8  # and MS_NOSUID, MS_NODEV, MS_NOEXEC
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
OUT_OF_MEMORY_WORDS = ("memory allocation failed", "cannot allocate memory", "unable to allocate")


def _tree(path: str, within: str) -> bytes:
    from panbinder.data_mounts import preview

    return json.dumps(preview.tree(path, within=within)).encode()


def _thumbnail(path: str, within: str, *, dataset_path: str, size: int, max_read_elements: int) -> bytes:
    from panbinder.data_mounts import preview

    return preview.thumbnail(
        path, dataset_path, size=size, max_read_elements=max_read_elements, within=within
    )


# op -> function(path, within, **args): the file and the dataset's location, as the child sees them
OPERATIONS: dict[str, Callable[..., bytes]] = {"tree": _tree, "thumbnail": _thumbnail}


def _out_of_memory(error: BaseException | None) -> bool:
    """Whether `error`, or an error it was raised from, is an allocation that failed."""
    seen = 0
    while error is not None and seen < 10:
        text = f"{getattr(error, 'log_message', '')} {error}".lower()
        if isinstance(error, MemoryError) or any(word in text for word in OUT_OF_MEMORY_WORDS):
            return True
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False


def error_header(error: BaseException) -> dict:
    """The failed frame's header for an exception raised in a child."""
    from panbinder.errors import PanbinderError

    if _out_of_memory(error):
        log = getattr(error, "log_message", "") or f"{type(error).__name__}: {error}"
        return {"ok": False, "reason": "out-of-memory", "log_message": log}
    if isinstance(error, PanbinderError):
        return {
            "ok": False,
            "error": {
                "message": error.message,
                "reason": error.reason,
                "status_code": error.status_code,
                "log_message": error.log_message,
            },
        }
    tail = "".join(traceback.format_exception(error)[-3:]).strip()
    return {"ok": False, "reason": "exception", "log_message": tail[-2000:]}


# ---------------------------------------------------------------- confinement of one child


@dataclass
class Confinement:
    """What every child gets: the namespaces, the user to become and the limits."""

    enforce: bool  # chroot and change user (needs root)
    namespaces: int  # CLONE_NEWNET | CLONE_NEWNS, as far as this machine allows
    uid: int
    gid: int
    memory_limit: int  # bytes of address space on top of the worker's own
    cpu_seconds: int
    open_files: int
    stage: str = ""  # an empty folder: the root of one-file datasets (a tmpfs mounted per child)
    devnull: int = -1
    libc: Any = field(default=None, repr=False)

    def enter(self, request: dict, out_fd: int) -> tuple[str, str]:
        """Confine this (forked) process to the request's dataset: (file, dataset location) as
        it now sees them. The dataset is the folder `root`, or only `root/file` if `one_file`."""
        root, relative, one_file = request["root"], request["file"], request.get("one_file", False)
        self._only_fd(out_fd)
        own_size = self._address_space()
        if self.enforce:
            os.chroot(self._isolate(root, relative if one_file else None))
            os.chdir("/")
            os.setgroups([])
            os.setresgid(self.gid, self.gid, self.gid)
            os.setresuid(self.uid, self.uid, self.uid)
            root = "/"
        else:
            os.chdir(root)
        self.libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        self.libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
        os.environ.clear()
        for limit, value in (
            (resource.RLIMIT_CPU, self.cpu_seconds),
            (resource.RLIMIT_NOFILE, self.open_files),
            (resource.RLIMIT_NPROC, 0),
            (resource.RLIMIT_FSIZE, 0),
            (resource.RLIMIT_CORE, 0),
            (resource.RLIMIT_AS, own_size + self.memory_limit),
        ):
            resource.setrlimit(limit, (value, value))
        path = os.path.join(root, relative)
        return path, path if one_file else root

    def _isolate(self, root: str, only: str | None) -> str:
        """No network; the dataset read-only (in this process's own mount table): the folder
        `root`, or only its file `only` on an empty, read-only tmpfs. The folder to chroot to."""
        if self.namespaces:
            self._call(self.libc.unshare, self.namespaces)
        if not self.namespaces & CLONE_NEWNS:
            return root
        mount = self.libc.mount
        self._call(mount, b"none", b"/", None, MS_REC | MS_PRIVATE, None)
        if only is None:
            folder = os.fsencode(root)
            self._call(mount, folder, folder, None, MS_BIND, None)
            self._call(mount, None, folder, None, MS_REMOUNT | MS_BIND | READ_ONLY, None)
            return root
        stage, file = os.fsencode(self.stage), os.fsencode(os.path.join(self.stage, only))
        self._call(mount, b"tmpfs", stage, b"tmpfs", READ_ONLY & ~MS_RDONLY, b"size=16k,mode=0755")
        os.close(os.open(file, os.O_WRONLY | os.O_CREAT, 0o444))
        self._call(mount, os.fsencode(os.path.join(root, only)), file, None, MS_BIND, None)
        self._call(mount, None, file, None, MS_REMOUNT | MS_BIND | READ_ONLY, None)
        self._call(mount, None, stage, None, MS_REMOUNT | READ_ONLY, None)
        return self.stage

    @staticmethod
    def _call(function: Any, *args: Any) -> None:
        if function(*args) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"{function.__name__}: {os.strerror(errno)}")

    def _only_fd(self, out_fd: int) -> None:
        """stdin, stdout and stderr become /dev/null; the result pipe is fd 3; all else closes."""
        for target in (0, 1, 2):
            os.dup2(self.devnull, target)
        os.dup2(out_fd, 3)
        os.closerange(4, resource.getrlimit(resource.RLIMIT_NOFILE)[0])

    @staticmethod
    def _address_space() -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[0]) * resource.getpagesize()


def run_child(request: dict, out_fd: int, confinement: Confinement) -> None:
    """The forked child's whole life: confine, preview, write one frame, exit. Never returns."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        try:
            path, within = confinement.enter(request, out_fd)
            body = OPERATIONS[request["op"]](path, within, **request.get("args", {}))
            header = {"ok": True}
        except BaseException as error:  # everything becomes a frame the portal can map
            header, body = error_header(error), b""
        header["peak_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        data = frame(header, body)
        write_all(3, data)
    finally:
        os._exit(0)
