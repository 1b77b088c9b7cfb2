"""Running builds recorded in the state folder, so the next portal finds those a dead one left.

A build runs inside the portal (a worker thread driving ``docker build``, ``docker push`` and
``git``). When the portal is killed, its watcher stops those processes (``panbinder.lifeline``);
if the watcher died too, nothing stops them, and an orphaned build would run to its end unused
while the next request builds the same image again beside it. So each running build is a small
JSON file here, removed when the build ends. At start the portal reads the files other runs left:
each names its image, whose ``docker build`` and ``docker push`` are found by command line among
the processes marked with this state folder, stopped and logged. Killing the ``docker build``
client cancels its BuildKit build (see ``lifeline.py``), so the next request builds cleanly.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from panbinder import processes


@dataclass(frozen=True)
class InflightBuild:
    build_id: str
    image: str
    repo_url: str
    owner: str  # the serve run that started it (processes.OWNER_ENV)
    started: float


class InflightRecords:
    def __init__(self, folder: str, log: logging.Logger) -> None:
        self.folder = Path(folder) if folder else None
        self.log = log

    def add(self, build_id: str, image: str, repo_url: str) -> None:
        if self.folder is None:
            return
        record = InflightBuild(
            build_id, image, repo_url, os.environ.get(processes.OWNER_ENV, ""), time.time()
        )
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = self.folder / f".{build_id}.tmp"
            tmp.write_text(json.dumps(asdict(record)))
            tmp.replace(self.folder / f"{build_id}.json")  # never half-written
        except OSError as e:
            self.log.warning("could not record the running build %s: %s", build_id, e)

    def remove(self, build_id: str) -> None:
        if self.folder is not None:
            (self.folder / f"{build_id}.json").unlink(missing_ok=True)

    def left_by_others(self) -> list[InflightBuild]:
        """Records of builds started by another run (a portal that died before they ended)."""
        if self.folder is None or not self.folder.is_dir():
            return []
        owner = os.environ.get(processes.OWNER_ENV, "")
        found = []
        for path in sorted(self.folder.glob("*.json")):
            try:
                record = InflightBuild(**json.loads(path.read_text()))
            except (OSError, ValueError, TypeError):
                path.unlink(missing_ok=True)
                continue
            if record.owner != owner:
                found.append(record)
        return found

    def stop_left(self) -> list[InflightBuild]:
        """Stop the processes of builds other runs left, log each, forget their records."""
        state = os.environ.get(processes.STATE_ENV, "")
        records = self.left_by_others()
        procs = processes.all_procs() if records and state else []
        for record in records:
            mine = [p for p in procs if p.state == state and any(record.image == a for a in p.args)]
            killed = processes.stop_pids([p.pid for p in mine], timeout=5)
            self.log.warning(
                "build %s of %s was interrupted when an earlier run of the portal stopped; stopped "
                "%d of its processes (%d needed SIGKILL): %s; the next request builds it anew",
                record.build_id,
                record.image,
                len(mine),
                len(killed),
                "; ".join(p.command for p in mine) or "none left",
                extra={"build_id": record.build_id, "image": record.image, "phase": "failed"},
            )
            self.remove(record.build_id)
        return records
