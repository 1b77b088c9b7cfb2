"""A one-node Slurm cluster in a folder: its configuration, and its daemons started and stopped.

For the Slurm back-end's tests and for trying the back-end on one machine; a facility's own
cluster is configured by its administrators, and panbinder needs only its ``slurm.conf``
(``SlurmLaunch.slurm_conf``). Settings verified on Debian 12 (``slurm-wlm`` 22.05, cgroup v1):

- ``DefMemPerCPU``: without it a job takes the whole node's memory and the next one waits.
- ``batch_sched_delay=0,sched_min_interval=0``: sbatch to running 0.45-0.7 s instead of 1.7-3 s.
- ``proctrack/cgroup`` and ``task/cgroup`` with ``ConstrainRAMSpace``: ``--mem`` OOM-kills the
  job's processes past the limit, rootless podman's containers included (they stay in the job's
  cgroup), ``-c1`` pins one CPU, and ``scancel`` kills every process of the job.

munged is machine-wide (its socket is ``/run/munge``): it is started when it is not running and
stopped afterwards only by the one who started it.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from panbinder import processes
from panbinder.errors import PanbinderError

MUNGE_PID = Path("/run/munge/munged.pid")


@dataclass(frozen=True)
class ClusterSpec:
    folder: Path
    node: str  # the node's short host name (slurmd -N)
    cpus: int
    memory_mb: int  # RealMemory of the node
    ctld_port: int = 6817
    slurmd_port: int = 6818
    user: str = "root"  # SlurmUser
    # job ids count from here: a new cluster counting from 1 again met the cgroups (cpuset busy)
    # that the last cluster's jobs of the same ids left, and drained its node
    first_job_id: int = 1

    @property
    def conf(self) -> Path:
        return self.folder / "slurm.conf"


def node_spec(folder: Path, *, memory_mb: int = 20000, **ports: int) -> ClusterSpec:
    """This machine as one node: its host name and CPUs (as ``slurmd -C`` reports them)."""
    out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout
    cpus = int(re.search(r"CPUs=(\d+)", out).group(1))
    first = int(time.time() * 10) % 50_000_000 + 1
    return ClusterSpec(
        folder, socket.gethostname().split(".")[0], cpus, memory_mb, first_job_id=first, **ports
    )


def slurm_conf(spec: ClusterSpec) -> str:
    d = spec.folder
    return f"""ClusterName=panbinder
SlurmctldHost={spec.node}
SlurmUser={spec.user}
SlurmctldPort={spec.ctld_port}
SlurmdPort={spec.slurmd_port}
AuthType=auth/munge
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
ProctrackType=proctrack/cgroup
TaskPlugin=task/cgroup,task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=2048
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
ReturnToService=2
FirstJobId={spec.first_job_id}
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName={spec.node} CPUs={spec.cpus} RealMemory={spec.memory_mb} State=UNKNOWN
PartitionName=main Nodes={spec.node} Default=YES MaxTime=INFINITE State=UP
"""


CGROUP_CONF = "CgroupPlugin=autodetect\nConstrainCores=yes\nConstrainRAMSpace=yes\n"


def write_config(spec: ClusterSpec) -> Path:
    """Write ``slurm.conf`` and ``cgroup.conf`` (read next to it) into the folder."""
    for sub in ("state", "spool"):
        (spec.folder / sub).mkdir(parents=True, exist_ok=True)
    spec.conf.write_text(slurm_conf(spec))
    (spec.folder / "cgroup.conf").write_text(CGROUP_CONF)
    return spec.conf


def start_munge() -> bool:
    """Start munged unless it runs; True when this call started it."""
    if _munge_answers():
        return False
    subprocess.run(["install", "-d", "-o", "munge", "-g", "munge", "/run/munge"], check=True)
    subprocess.run(["runuser", "-u", "munge", "--", "munged"], check=True, capture_output=True)
    return True


def _munge_answers() -> bool:
    probe = subprocess.run(["munge", "-n"], capture_output=True)
    return probe.returncode == 0


class Cluster:
    """slurmctld and slurmd of ``spec``, started in the background; ``stop`` ends them."""

    def __init__(self, spec: ClusterSpec) -> None:
        self.spec = spec
        self.procs: list[subprocess.Popen] = []
        self.started_munge = False

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.spec.conf)}

    def start(self, timeout: float = 30.0) -> None:
        write_config(self.spec)
        self.started_munge = start_munge()
        conf = str(self.spec.conf)
        for cmd in (["slurmctld", "-D", "-i", "-f", conf], ["slurmd", "-D", "-f", conf]):
            log = open(self.spec.folder / f"{cmd[0]}.out", "ab")
            self.procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env))
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            probe = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, env=self.env)
            if probe.returncode == 0 and probe.stdout.strip() in ("idle", "mixed", "allocated"):
                return
            time.sleep(0.3)
        self.stop()
        raise PanbinderError(
            f"The Slurm node did not become idle in {timeout:.0f} s; see {self.spec.folder}/slurmd.log",
            reason="slurm_not_ready",
        )

    def _jobs(self) -> bool:
        probe = subprocess.run(
            ["squeue", "-h", "-o", "%i"], capture_output=True, text=True, env=self.env, timeout=30
        )
        return probe.returncode == 0 and bool(probe.stdout.strip())

    def cancel_jobs(self, timeout: float = 15.0) -> None:
        """Cancel every job and wait until they are gone: a job started while the last one's
        cgroup is still being removed failed (cpuset busy) and drained the node."""
        subprocess.run(["scancel", "--partition=main"], capture_output=True, env=self.env, timeout=30)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._jobs():
            time.sleep(0.3)
        time.sleep(1.0)

    def stop(self) -> None:
        """Cancel every job (a job left behind outlives slurmd), then stop the daemons."""
        if self.procs:
            self.cancel_jobs()
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()
        if self.started_munge and MUNGE_PID.exists():
            pid = int(MUNGE_PID.read_text().split()[0])
            processes.stop_pids([pid], timeout=5)
            self.started_munge = False
