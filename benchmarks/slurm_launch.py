"""Launch benchmark on the Slurm back-end (``python -m benchmarks.launch --backend slurm``).

A one-node cluster (``launcher/slurm_cluster.py``) and a portal whose Hub submits each server as
a job; after one warm-up launch (build, and the image pulled into the job user's podman
storage), N alternating measurements of
  floor:  sbatch of a bare job running `podman run` of the image (same user, same --mem and
          CPUs) until its server's /api/status is 200
  launch: GET /build/git/<repo>/<ref> until `ready`, then until the server's /api/status is 200
and the ratio of the medians.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from panbinder.launcher.slurm_cluster import Cluster, node_spec
from panbinder.launcher.slurm_job import podman_recovery
from tests.support import free_port, running_git, running_portal, timed_launch, wait_status

PREFIX = "panbinder-bench-slurm"
JOB_USER = "panbinder-job"
FILES = {"README.md": "slurm launch benchmark\n", "data.txt": "1 2 3\n"}


def floor_script(image: str, port: int) -> str:
    return f"""#!/bin/bash
#SBATCH --output=/dev/null
#SBATCH --mem=2048M
#SBATCH --cpus-per-task=1
export XDG_RUNTIME_DIR="$(mktemp -d /tmp/panbinder-podman-XXXXXX)"
{podman_recovery()}
podman run --rm --network host {image} jupyter server --ip=127.0.0.1 --port={port} \\
  --ServerApp.token= --ServerApp.password=
"""


def sbatch(cluster: Cluster, script: str) -> str:
    out = subprocess.run(
        ["runuser", "-u", JOB_USER, "--", "sbatch", "--parsable", "--chdir=/tmp"],
        input=script,
        capture_output=True,
        text=True,
        env=cluster.env,
        check=True,
    )
    return out.stdout.strip().split(";")[0]


async def floor_once(cluster: Cluster, image: str) -> float:
    port = free_port()
    start = time.monotonic()
    sbatch(cluster, floor_script(image, port))
    try:
        await wait_status(f"http://127.0.0.1:{port}/api/status", timeout=300)
        return time.monotonic() - start
    finally:
        cluster.cancel_jobs()


def config(conf: Path) -> str:
    return f"""
c.ServerPool.size = 0
c.HubProcess.mem_limit = "2G"
c.HubProcess.cpu_limit = 1.0
c.HubProcess.start_timeout = 900
c.HubLauncher.launch_timeout = 900.0
c.HubProcess.backend = "slurm"
c.HubProcess.extra_config = {{
    "PanbinderSlurmSpawner": {{"slurm_conf": {str(conf)!r}, "startup_poll_interval": 0.1}},
}}
"""


async def main(runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="panbinder-bench-slurm-") as tmp:
        Path(tmp).chmod(0o755)  # the job user reads slurm.conf
        cluster = Cluster(node_spec(Path(tmp, "cluster")))
        cluster.start()
        try:
            with running_git(Path(tmp, "git")) as git:
                name = f"bench-slurm-{int(time.time())}"
                git.commit(name, FILES, "initial")
                with running_portal(
                    Path(tmp, "state"), prefix=PREFIX, config=config(cluster.spec.conf)
                ) as portal:
                    url = portal.build_url(git.url(name), "main")
                    first = await timed_launch(url)  # build, push, pull into podman storage, start
                    cluster.cancel_jobs()
                    image = await image_of(portal, url)
                    floors, launches = [], []
                    for _ in range(runs):
                        await asyncio.sleep(1.0)
                        floors.append(await floor_once(cluster, image))
                        await asyncio.sleep(1.0)
                        launches.append(await timed_launch(url))
                        # two CPUs: a server left running would keep the next job pending
                        cluster.cancel_jobs()
        finally:
            cluster.stop()
    floor, launch = statistics.median(floors), statistics.median(launches)
    print(f"[slurm] first launch (build, push, podman pull, start): {first:.2f} s")
    print(f"[slurm] floor  sbatch + podman run -> /api/status 200, median of {runs}: {floor:.3f} s  {sorted(round(x, 3) for x in floors)}")  # fmt: skip
    print(f"[slurm] launch /build -> ready -> /api/status 200, median of {runs}: {launch:.3f} s  {sorted(round(x, 3) for x in launches)}")  # fmt: skip
    print(f"[slurm] ratio launch/floor: {launch / floor:.2f}")


async def image_of(portal, url: str) -> str:
    from tests.support import read_stream

    return (await read_stream(url + "?build_only=true")).last["imageName"]
