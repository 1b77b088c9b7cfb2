"""Launch benchmark: cached launch through panbinder vs a bare `docker run` floor, in one run.

Prints the cold build and code-only rebuild times of a small repository, then N alternating
measurements of
  floor:  `docker run -d` of the built image (same limits) until its server's /api/status is 200
  launch: GET /build/git/<repo>/<ref> until `ready`, then until the server's /api/status is 200
and the ratio of the medians (target <= 1.5); then the warm publications figures of
``benchmarks/warm_launch.py`` (first click after a start, 20 concurrent clicks, paused memory).

    python -m benchmarks.launch [--runs 5] [--keep-build-cache] [--backend slurm]

With the pool off, a third measurement alternates with those two:
  stock:  `docker run -d` of a stock single-user image (``jupyterhub-singleuser`` as pip installs
          it, built from the same base image: ``benchmarks/stock_singleuser.py``) until its
          /api/status is 200
with the targets launch/floor <= 1.2 and launch/stock <= 0.6 (issue 17, cold start).

With ``--backend slurm`` the same comparison runs on a one-node Slurm cluster: see
``benchmarks/slurm_launch.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from tornado.httpclient import AsyncHTTPClient

from benchmarks import stock_singleuser
from tests.support import (
    free_port,
    machine_build_engine,
    notebook,
    read_stream,
    running_git,
    running_portal,
    timed_launch,
    wait_status,
)

PREFIX = "panbinder-bench"
DOCKER = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"  # the run engine
BUILD_ENGINE = machine_build_engine()  # where builds and their cache are
FILES = {
    "requirements.txt": "tabulate==0.9.0\n",
    "figure.ipynb": notebook("import tabulate\nprint(tabulate.__version__)"),
    "data.txt": "1 2 3\n",
}


def floor_command(image: str, name: str, port: int) -> list[str]:
    """`docker run` of ``image`` as a bare server with a launched server's limits."""
    return [
        DOCKER,
        "run",
        "-d",
        "--rm",
        "--name",
        name,
        "-p",
        f"127.0.0.1:{port}:8888",
        "--security-opt",
        "no-new-privileges",
        "--cap-drop",
        "ALL",
        "--pids-limit",
        "256",
        "--memory",
        "2g",
        "--cpus",
        "1",
        image,
        "jupyter",
        "server",
        "--ip=0.0.0.0",
        "--port=8888",
        "--ServerApp.token=",
        "--ServerApp.password=",
    ]


async def floor_once(image: str) -> float:
    port = free_port()
    name = f"{PREFIX}-floor-{port}"
    start = time.monotonic()
    subprocess.run(floor_command(image, name, port), check=True, capture_output=True)
    await wait_status(f"http://127.0.0.1:{port}/api/status")
    elapsed = time.monotonic() - start
    subprocess.run([DOCKER, "rm", "-f", name], capture_output=True)
    return elapsed


async def build_time(url: str) -> float:
    s = await read_stream(url + "?build_only=true")
    if s.last.get("phase") != "ready":
        raise RuntimeError(s.log())
    return s.seconds


def portal_config(pool_size: int) -> str:
    # the replacement of a server handed out starts 0.5 s later, not after the 20 s a reader's page
    # load is given: the runs here are 3 s apart and measure the hand-out, not the refill
    return (
        f"c.HubProcess.mem_limit = '2G'\nc.HubProcess.cpu_limit = 1.0\nc.ServerPool.size = {pool_size}\n"
        "c.ServerPool.refill_delay = 0.5\n"
    )


async def compare(url: str, image: str, runs: int, settle: float) -> tuple[list[float], list[float]]:
    """Alternate floor and launch runs; ``settle`` lets background refills finish first."""
    floors, launches = [], []
    await timed_launch(url)  # warm-up: image local, Hub and pool have seen it
    for _ in range(runs):
        await asyncio.sleep(settle)
        floors.append(await floor_once(image))
        await asyncio.sleep(settle)
        launches.append(await timed_launch(url))
    return floors, launches


async def compare_cold(url: str, image: str, stock: str, runs: int) -> tuple[list[float], ...]:
    """Pool off: alternate floor, stock single-user server and launch runs (floors, launches, stocks)."""
    floors, launches, stocks = [], [], []
    await timed_launch(url)  # warm-up: image local, the Hub has seen it
    with stock_singleuser.stub_hub() as (api_url, token):
        await stock_singleuser.stock_once(DOCKER, stock, PREFIX, api_url, token)  # warm-up
        for _ in range(runs):
            await asyncio.sleep(0.5)
            floors.append(await floor_once(image))
            await asyncio.sleep(0.5)
            stocks.append(await stock_singleuser.stock_once(DOCKER, stock, PREFIX, api_url, token))
            await asyncio.sleep(0.5)
            launches.append(await timed_launch(url))
    return floors, launches, stocks


def report_stock(stocks: list[float], launches: list[float]) -> None:
    stock, launch = statistics.median(stocks), statistics.median(launches)
    print(
        f"[new server, pool off] stock  bare docker run of stock jupyterhub-singleuser -> /api/status 200, "
        f"median of {len(stocks)}: {stock:.3f} s  {sorted(round(x, 3) for x in stocks)}"
    )
    print(f"[new server, pool off] ratio launch/stock: {launch / stock:.2f}  (target <= 0.6)")


def report(label: str, floors: list[float], launches: list[float], target: float = 1.5) -> None:
    floor, launch = statistics.median(floors), statistics.median(launches)
    n = len(floors)
    print(
        f"[{label}] floor  bare docker run -> /api/status 200, median of {n}: {floor:.3f} s  {sorted(round(x, 3) for x in floors)}"
    )
    print(
        f"[{label}] launch /build -> ready -> /api/status 200, median of {n}: {launch:.3f} s  {sorted(round(x, 3) for x in launches)}"
    )
    print(f"[{label}] ratio launch/floor: {launch / floor:.2f}  (target <= {target})")


async def main(runs: int, keep_cache: bool) -> None:
    # tornado keeps one client per event loop: size it for the 20 concurrent event streams of the
    # warm-publication burst now, before the first request makes it (a later configure is ignored)
    AsyncHTTPClient.configure(None, max_clients=100)
    with tempfile.TemporaryDirectory(prefix="panbinder-bench-") as tmp, running_git(Path(tmp, "git")) as git:
        name = f"bench-{int(time.time())}"
        git.commit(name, FILES, "initial")
        with running_portal(Path(tmp, "state-pool"), prefix=PREFIX, config=portal_config(1)) as portal:
            url = portal.build_url(git.url(name), "main")
            if not keep_cache:
                subprocess.run(
                    BUILD_ENGINE.command("builder", "prune", "-af"), check=True, capture_output=True
                )
            cold = await build_time(url)
            git.commit(name, {"analysis.py": "print('changed code')\n"}, "code only")
            code_only = await build_time(url)
            image = (await read_stream(url + "?build_only=true")).last["imageName"]
            pooled = await compare(url, image, runs, settle=3.0)
        stock = stock_singleuser.build_stock_image(DOCKER)
        with running_portal(Path(tmp, "state-nopool"), prefix=PREFIX, config=portal_config(0)) as portal:
            floors, launches, stocks = await compare_cold(
                portal.build_url(git.url(name), "main"), image, stock, runs
            )
        print(f"cold build (new repo, {'warm' if keep_cache else 'empty'} build cache): {cold:6.2f} s")
        print(f"code-only rebuild:                                {code_only:6.2f} s")
        report("pre-started server", *pooled)
        report("new server, pool off", floors, launches, target=1.2)
        report_stock(stocks, launches)
        await warm_publications(runs)


async def warm_publications(runs: int) -> None:
    """First click on a registered publication after a start, a hot burst, paused-server memory."""
    from benchmarks import warm_launch

    await warm_launch.main(runs, 20)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--keep-build-cache", action="store_true", help="skip `docker builder prune` before the cold build"
    )
    parser.add_argument("--backend", choices=["docker", "slurm", "swarm"], default="docker")
    args = parser.parse_args()
    if args.backend == "swarm":
        from benchmarks import swarm_launch

        asyncio.run(swarm_launch.main(args.runs))
    elif args.backend == "slurm":
        from benchmarks import slurm_launch

        asyncio.run(slurm_launch.main(args.runs))
    else:
        asyncio.run(main(args.runs, args.keep_build_cache))
