"""Launch benchmark on the swarm back-end (``python -m benchmarks.launch --backend swarm``).

A one-node swarm on the run engine (``tests/swarm.py``: made for the run and left after it,
unless the engine was in one already) and a portal whose Hub starts each server as a swarm
service (pool off); after one warm-up launch, N alternating measurements of
  floor:  a bare `docker service create` of the image (same limits, same network) until its
          server's /api/status is 200
  launch: GET /build/git/<repo>/<ref> until `ready`, then until the server's /api/status is 200
and the ratio of the medians; a bare `docker run` of the image (as in the docker benchmark) is
measured in the same rounds, for the cost of a service over a container.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.launch import DOCKER, FILES, floor_command, portal_config
from benchmarks.launch import floor_once as run_floor_once
from tests.support import free_port, read_stream, running_git, running_portal, timed_launch, wait_status
from tests.swarm import one_node_swarm, task_address

PREFIX = "panbinder-bench-swarm"
NETWORK = f"{PREFIX}-net"


def service_floor_command(image: str, name: str) -> list[str]:
    """`docker service create` of ``image`` as a bare server with a launched service's limits."""
    server = floor_command(image, name, 0)
    limits = ["--cap-drop", "ALL", "--limit-pids", "256", "--limit-memory", "2g", "--limit-cpu", "1"]
    return [
        DOCKER,
        "service",
        "create",
        "-d",
        "--name",
        name,
        "--network",
        NETWORK,
        "--restart-condition",
        "none",
        *limits,
        *server[server.index(image) :],
    ]


async def floor_once(image: str) -> float:
    name = f"{PREFIX}-floor-{free_port()}"
    start = time.monotonic()
    subprocess.run(service_floor_command(image, name), check=True, capture_output=True)
    address = ""
    for _ in range(3000):  # at most a minute
        if address := task_address(name, NETWORK):
            break
        await asyncio.sleep(0.02)
    await wait_status(f"http://{address}:8888/api/status")
    elapsed = time.monotonic() - start
    subprocess.run([DOCKER, "service", "rm", name], capture_output=True)
    return elapsed


async def main(runs: int) -> None:
    config = portal_config(0) + (
        f"c.HubProcess.backend = 'swarm'\nc.HubProcess.swarm_network = {NETWORK!r}\n"
        # a loaded machine starts servers slowly: measure them rather than fail
        "c.HubProcess.start_timeout = 300\nc.HubLauncher.launch_timeout = 300.0\n"
    )
    with (
        tempfile.TemporaryDirectory(prefix="panbinder-bench-") as tmp,
        running_git(Path(tmp, "git")) as git,
        one_node_swarm(prefix=PREFIX),
        running_portal(Path(tmp, "state"), prefix=PREFIX, config=config) as portal,
    ):
        name = f"bench-{int(time.time())}"
        git.commit(name, FILES, "initial")
        url = portal.build_url(git.url(name), "main")
        built = await read_stream(url + "?build_only=true")
        if built.last.get("phase") != "ready":
            raise RuntimeError(built.log())
        image = built.last["imageName"]
        await timed_launch(url)  # warm-up: the network made, the image local
        floors, launches, runs_floor = [], [], []
        for _ in range(runs):
            await asyncio.sleep(0.5)
            floors.append(await floor_once(image))
            await asyncio.sleep(0.5)
            launches.append(await timed_launch(url))
            await asyncio.sleep(0.5)
            runs_floor.append(await run_floor_once(image))
    floor, launch = statistics.median(floors), statistics.median(launches)
    n = len(floors)
    print(
        f"[swarm] floor  docker service create -> /api/status 200, median of {n}: {floor:.3f} s  {sorted(round(x, 3) for x in floors)}"
    )
    print(
        f"[swarm] launch /build -> ready -> /api/status 200, median of {n}: {launch:.3f} s  {sorted(round(x, 3) for x in launches)}"
    )
    print(f"[swarm] ratio launch/floor: {launch / floor:.2f}")
    bare = statistics.median(runs_floor)
    print(
        f"[swarm] bare docker run -> /api/status 200, median of {n}: {bare:.3f} s  {sorted(round(x, 3) for x in runs_floor)}"
    )
    print(
        f"[swarm] ratio launch/docker run: {launch / bare:.2f}; service create/docker run: {floor / bare:.2f}"
    )
