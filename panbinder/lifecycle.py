"""One ``serve`` run's hold on its state folder: nothing it starts outlives it or is adopted later.

Before starting anything, a run refuses a state folder another live ``serve`` uses, marks its
own environment (``processes.STATE_ENV``/``OWNER_ENV``, inherited by everything it starts), and
stops whatever an earlier run on the folder left behind. It then starts a watcher
(``lifeline watch``) that stops the run's processes if the run dies without stopping them.
"""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import sys
from pathlib import Path

from . import processes
from .errors import PanbinderError
from .lifeline import HUB_PROGRAM

WATCHER_WAIT = 10.0  # seconds a normal stop waits for the watcher's last sweep


class PortalRun:
    def __init__(self, state: Path, log: logging.Logger, *, hub_timeout: float = 45.0) -> None:
        self.state = state.resolve()
        self.log = log
        self.hub_timeout = hub_timeout
        self.owner = f"{os.getpid()}-{secrets.token_hex(6)}"
        self.watcher: subprocess.Popen | None = None

    @property
    def pid_file(self) -> Path:
        return self.state / "run" / "portal.pid"

    def claim(self) -> None:
        """Refuse a state folder that another running ``panbinder serve`` uses."""
        pid = processes.read_pid_file(self.pid_file)
        other = processes.read_proc(pid) if pid and pid != os.getpid() else None
        if other is not None and other.runs("panbinder") and "serve" in other.args:
            raise PanbinderError(
                f"Another panbinder serve (pid {pid}) uses the state folder {self.state}; stop it "
                "first or give this one another --state-dir.",
                reason="state_in_use",
                status_code=500,
            )
        (self.state / "run").mkdir(parents=True, exist_ok=True)
        self.pid_file.write_text(f"{os.getpid()}\n")

    def mark(self) -> None:
        """Mark this process's environment: every child inherits the state folder and owner."""
        os.environ[processes.STATE_ENV] = str(self.state)
        os.environ[processes.OWNER_ENV] = self.owner

    def stop_left_behind(self) -> list[processes.Proc]:
        """Stop every process an earlier run on this state folder left (logged), the Hub first."""
        procs = processes.left_behind(str(self.state), self.owner)
        for p in procs:
            self.log.warning("stopping pid %d left by an earlier run: %s", p.pid, p.command)
        hubs = [p.pid for p in procs if p.runs(HUB_PROGRAM)]
        processes.stop_pids(hubs, timeout=self.hub_timeout)
        processes.stop_pids([p.pid for p in procs if p.pid not in hubs], timeout=5)
        return procs

    def start_watcher(self) -> None:
        """The watcher holds the read end of a pipe only this process writes to."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PANBINDER_SERVE_")}
        (self.state / "logs").mkdir(parents=True, exist_ok=True)
        log = open(self.state / "logs" / "lifeline.log", "ab")
        self.watcher = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "panbinder.lifeline",
                "watch",
                f"--owner={self.owner}",
                f"--hub-timeout={self.hub_timeout}",
            ],
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # a signal to the portal's process group does not reach it
        )
        log.close()

    def release(self) -> None:
        """After a normal stop: the watcher's last sweep stops anything left; the folder is free."""
        if self.watcher is not None:
            self.watcher.stdin.close()
            try:
                self.watcher.wait(timeout=WATCHER_WAIT + self.hub_timeout)
            except subprocess.TimeoutExpired:
                self.log.error("the process watcher did not finish; leaving it")
        if processes.read_pid_file(self.pid_file) == os.getpid():
            self.pid_file.unlink(missing_ok=True)
