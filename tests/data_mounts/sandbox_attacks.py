"""A preview worker with extra operations that attack the sandbox from inside a child.

Each operation stands for what a crafted HDF5 file could make the HDF5 library do (read any
path, connect, allocate, spin, write, start a process): the tests run them where a preview
runs and check that the sandbox stops them.

    python -m tests.data_mounts.sandbox_attacks SETTINGS_JSON
"""

from __future__ import annotations

import ctypes
import encodings.idna  # noqa: F401  (socket's codec, loaded before the chroot)
import json
import os
import resource
import socket
import sys
import time

from panbinder.data_mounts import preview_child, preview_worker

PR_GET_NO_NEW_PRIVS = 39
PR_GET_DUMPABLE = 3


def read(path: str, within: str, *, target: str) -> bytes:
    with open(target, "rb") as f:
        return f.read(4096)


def h5_read(path: str, within: str, *, dataset: str, one_value: bool = False) -> bytes:
    """Read a dataset (or its first value) with h5py directly: no check of panbinder's stands
    in the way."""
    import h5py

    with h5py.File(path, "r") as f:
        ds = f[dataset]
        values = ds[(0,) * ds.ndim] if one_value else ds[()]
        return bytes(values.tobytes())


def whoami(path: str, within: str) -> bytes:
    libc = ctypes.CDLL(None)
    open_fds = []
    for fd in range(64):
        try:
            os.fstat(fd)
            open_fds.append(fd)
        except OSError:
            pass
    limits = {
        name: resource.getrlimit(getattr(resource, name))
        for name in ("RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_NOFILE", "RLIMIT_NPROC", "RLIMIT_FSIZE")
    }
    facts = {
        "ids": [os.getuid(), os.geteuid(), os.getgid(), os.getegid()],
        "groups": os.getgroups(),
        "environment": dict(os.environ),
        "root_listing": sorted(os.listdir("/")),
        "path": path,
        "within": within,
        "open_fds": open_fds,
        "limits": limits,
        "no_new_privs": libc.prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0),
        "dumpable": libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0),
    }
    return json.dumps(facts).encode()


def connect(path: str, within: str, *, port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        return b"connected"


def allocate(path: str, within: str, *, size: int) -> bytes:
    block = bytearray(size)
    block[:: 1 << 12] = b"x" * len(block[:: 1 << 12])  # touch every page
    return b"allocated"


def spin(path: str, within: str) -> bytes:
    while True:
        pass


def sleep(path: str, within: str) -> bytes:
    time.sleep(3600)
    return b"woke up"


def write(path: str, within: str) -> bytes:
    folder = os.path.dirname(path)
    with open(os.path.join(folder, "planted.txt"), "w") as f:
        f.write("planted")
    return b"written"


def spawn(path: str, within: str) -> bytes:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return b"forked"


def crash(path: str, within: str) -> bytes:
    ctypes.string_at(0)
    return b"survived"


preview_child.OPERATIONS.update(
    read=read,
    h5_read=h5_read,
    whoami=whoami,
    connect=connect,
    allocate=allocate,
    spin=spin,
    sleep=sleep,
    write=write,
    spawn=spawn,
    crash=crash,
)

if __name__ == "__main__":
    sys.exit(preview_worker.main())
