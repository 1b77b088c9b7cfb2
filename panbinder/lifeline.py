"""Tie processes to the life of ``panbinder serve``: a parent-death wrapper and a watcher.

``python -m panbinder.lifeline exec --parent PID [--signal TERM] [--pid-file F] -- CMD...`` asks
the kernel (``prctl(PR_SET_PDEATHSIG)``) to send the signal to CMD when its parent dies, resets
SIGINT and SIGTERM to their defaults (a portal started in the background of a shell ignores
SIGINT, and a Hub service inheriting that ignored its stop request for 30 s), writes its pid and
execs CMD (same pid). The Hub runs under it (SIGTERM: its own clean-up stops the servers and the
proxy), and so do the proxy and the culler under the Hub.

``python -m panbinder.lifeline watch --owner OWNER`` reads its stdin, a pipe only the portal
holds, and when that closes (the portal exited, even by SIGKILL) it stops every process carrying
the portal's owner id (see ``processes.py``): the Hub first, given ``--hub-timeout`` seconds for
its clean-up, and at once whatever a build started (``docker build``, ``git``). Killing the
``docker build`` client cancels its BuildKit build (checked on dockerd 20.10: after a SIGKILL to
the client, the running ``RUN`` step's processes are gone within 3 s).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import sys
import time

from .processes import Proc, marked_by, stop_pids

PR_SET_PDEATHSIG = 1
HUB_PROGRAM = "panbinder.launcher.hub_app"


def exec_prefix(parent: int) -> list[str]:
    """The start of an ``exec`` command line for a child of ``parent``; options and ``--`` follow."""
    return [sys.executable, "-m", "panbinder.lifeline", "exec", f"--parent={parent}"]


def parent_death_signal(sig: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


def run_exec(parent: int, sig: int, pid_file: str, command: list[str]) -> None:
    parent_death_signal(sig)
    if os.getppid() != parent:  # the parent died before prctl: nobody would send the signal
        sys.exit(f"lifeline: parent {parent} is gone; not starting {command[0]}")
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.SIG_DFL)
    if pid_file:
        with open(pid_file, "w") as f:
            f.write(f"{os.getpid()}\n")
    os.execvp(command[0], command)


def _say(message: str) -> None:
    print(f"[lifeline {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def sweep(owner: str, hub_timeout: float) -> list[Proc]:
    """Stop every process of the run ``owner``: the Hub (given time to clean up) and the rest."""
    procs = marked_by(owner)
    hubs = [p for p in procs if p.runs(HUB_PROGRAM)]
    others = [p for p in procs if p not in hubs]
    for p in procs:
        _say(f"stopping pid {p.pid}: {p.command}")
    stop_pids([p.pid for p in others if not p.runs("configurable-http-proxy")], timeout=5)
    stop_pids([p.pid for p in hubs], timeout=hub_timeout)
    stop_pids([p.pid for p in marked_by(owner)], timeout=5)  # what the Hub's clean-up left
    return procs


def run_watch(owner: str, hub_timeout: float) -> None:
    while sys.stdin.buffer.read(4096):
        pass
    found = sweep(owner, hub_timeout)
    _say(f"portal gone; stopped {len(found)} of its processes")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m panbinder.lifeline")
    sub = parser.add_subparsers(dest="mode", required=True)
    ex = sub.add_parser("exec", help="run a command that dies with its parent")
    ex.add_argument("--parent", type=int, required=True)
    ex.add_argument("--signal", default="TERM", choices=["TERM", "KILL", "INT"])
    ex.add_argument("--pid-file", default="")
    ex.add_argument("command", nargs=argparse.REMAINDER)
    watch = sub.add_parser("watch", help="stop a portal's processes when it exits")
    watch.add_argument("--owner", required=True)
    watch.add_argument("--hub-timeout", type=float, default=30.0)
    args = parser.parse_args(argv)
    if args.mode == "exec":
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        if not command:
            parser.error("exec needs a command after --")
        run_exec(args.parent, getattr(signal, f"SIG{args.signal}"), args.pid_file, command)
    else:
        run_watch(args.owner, args.hub_timeout)


if __name__ == "__main__":
    main()
