"""The Slurm back-end for real: a one-node cluster (munged, slurmctld, slurmd) made by
``launcher/slurm_cluster.py``, a portal whose Hub submits each server as a job, and podman
running the image in the job as the job user."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from panbinder.launcher.slurm_cluster import Cluster, node_spec
from tests.support import read_stream, run_code

from .conftest import catalogue_of, cli, write_scan

pytestmark = [pytest.mark.slurm, pytest.mark.docker, pytest.mark.hub, pytest.mark.slow]

DOI = "10.5555/panbinder.slurm"
JOB_USER = "panbinder-job"

READ_DATA = """
import os
files = [os.path.join(d, f) for d, _, fs in os.walk('/data') for f in fs if f.endswith('.nxs')]
print(len(files), open(files[0], 'rb').read(4) == bytes([0x89]) + b'HDF', os.getuid() != 0)
try:
    open(files[0], 'ab')
except OSError as e:
    print('read-only', e.errno)
"""
# the job's --mem is 400M (the Hub's mem_limit): 100 MB fits beside the server, 900 MB does not
ALLOCATE = """
import subprocess, sys
for mb in (100, 900):
    r = subprocess.run([sys.executable, '-c', f"b = b'1' * ({mb} * 2**20); print(len(b))"], capture_output=True)
    print(mb, r.returncode)
"""


def open_dir(prefix: str) -> Path:
    """A folder the job user can read (pytest's own are root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    folder.chmod(0o755)
    return folder


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[Cluster]:
    folder = open_dir("panbinder-slurm-")
    cluster = Cluster(node_spec(folder))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def slurm_portal(portal_factory, slurm_cluster, git_server):
    base = open_dir("panbinder-slurm-it-")
    storage, state = base / "storage", base / "state"
    write_scan(storage / "slurm-scan", 4)
    state.mkdir(mode=0o711)  # the job user reads the launch's MANIFEST.json under it
    config = f"""
        c.Catalogue.storage_roots = [{str(storage)!r}]
        c.ServerPool.size = 0
        c.HubProcess.mem_limit = "400M"
        c.HubProcess.start_timeout = 600
        c.HubLauncher.launch_timeout = 600.0
        c.HubProcess.backend = "slurm"
        c.HubProcess.extra_config = {{
            "PanbinderSlurmSpawner": {{"slurm_conf": {str(slurm_cluster.spec.conf)!r}, "startup_poll_interval": 0.2}},
        }}
        """
    with portal_factory("slurm", config, state=state) as portal:
        git_server.commit("slurm-paper", {"README.md": "paper code\n"}, "paper")
        cli(portal, "datasets", "scan", str(storage))
        cat = catalogue_of(portal, storage)
        with cat.session() as s:
            cat.get_dataset(s, "local:slurm-scan").is_public = True
        cat.close()
        repo = git_server.url("slurm-paper")
        cli(
            portal,
            "publications",
            "add",
            f"--doi={DOI}",
            f"--repo={repo}",
            "--ref=main",
            "--dataset=local:slurm-scan",
        )
        yield portal
    shutil.rmtree(base, ignore_errors=True)


def jobs(cluster: Cluster) -> list[str]:
    out = subprocess.run(
        ["squeue", "-h", "-u", JOB_USER, "-o", "%j %T"],
        capture_output=True,
        text=True,
        env=cluster.env,
        check=True,
    )
    return out.stdout.split("\n")[:-1]


async def test_launch_runs_as_a_job_reads_data_and_keeps_its_memory_limit(slurm_portal, slurm_cluster):
    stream = await read_stream(f"{slurm_portal.url}/build/doi/{DOI}", timeout=900)
    ready = stream.last
    assert ready["phase"] == "ready", stream.log()
    assert jobs(slurm_cluster) == ["panbinder-server RUNNING"]
    out = await run_code(ready["url"], ready["token"], READ_DATA, timeout=120)
    assert out.split("\n")[0] == "1 True True", out
    assert "read-only 30" in out  # EROFS: the dataset is mounted read-only
    out = await run_code(ready["url"], ready["token"], ALLOCATE, timeout=120)
    assert out.split("\n")[:2] == ["100 0", "900 -9"], out  # the job's cgroup OOM-kills past --mem
    slurm_cluster.cancel_jobs()
    assert container_processes() == []  # a cancelled job leaves no server behind


def container_processes() -> list[int]:
    """Processes of the job user's containers (uids in its subordinate range, set-up's 400000+)."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            uid = int(next(ln for ln in status.read_text().splitlines() if ln.startswith("Uid:")).split()[1])
        except (OSError, StopIteration):
            continue
        if 400000 <= uid < 465536:
            found.append(int(status.parent.name))
    return found
