"""Load benchmark: a class clicking one badge at once, in one bounded run on 127.0.0.1.

1. floor:  N bare `docker run`s of the built image started at once (same limits as a launched
           server), each timed until its server's /api/status answers;
   launch: N concurrent GET /build/git/<repo>/<ref> of the same cached image, pool off, each
           timed until `ready` and then until the server's /api/status answers;
   prints p50/p95 of both and the ratio of the p95s (target <= 1.5).
2. M concurrent requests for one new commit: how many builds ran (target 1), how many streams
   ended `ready` (target M).

    python -m benchmarks.load [--launches 20] [--requests 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from tornado.httpclient import AsyncHTTPClient

from benchmarks.launch import DOCKER, FILES, floor_command
from tests.support import free_port, read_stream, running_git, running_portal, timed_launch, wait_status

PREFIX = "panbinder-bench-load"
CONFIG = """
c.ServerPool.size = 0
c.HubProcess.mem_limit = '2G'
c.HubProcess.cpu_limit = 1.0
c.HubProcess.cull_timeout = 3600
c.HubLauncher.max_concurrent_launches = 32
"""
TIMEOUT = 600  # seconds any one request of this benchmark may take


async def floor_once(image: str) -> tuple[float, str]:
    port = free_port()
    name = f"{PREFIX}-floor-{port}"
    start = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *floor_command(image, name, port),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"docker run failed: {err.decode()[-500:]}")
    await wait_status(f"http://127.0.0.1:{port}/api/status", timeout=TIMEOUT)
    return time.monotonic() - start, name


async def floor_all(image: str, n: int) -> list[float]:
    """N bare servers started at once; removed once all answered."""
    results = await asyncio.gather(*(floor_once(image) for _ in range(n)), return_exceptions=True)
    names = [r[1] for r in results if isinstance(r, tuple)]
    if names:
        rm = await asyncio.create_subprocess_exec(
            DOCKER, "rm", "-f", *names, stdout=asyncio.subprocess.DEVNULL
        )
        await rm.wait()
    failed = [r for r in results if not isinstance(r, tuple)]
    if failed:
        raise RuntimeError(f"{len(failed)} bare servers did not answer: {failed[0]!r}")
    return [r[0] for r in results]


async def hub_call(portal, method: str, path: str) -> tuple[int, dict | list | None]:
    token = portal.service_token
    resp = await AsyncHTTPClient().fetch(
        f"http://127.0.0.1:{portal.hub_port}/hub/api{path}",
        method=method,
        headers={"Authorization": f"token {token}"},
        raise_error=False,
    )
    return resp.code, json.loads(resp.body) if resp.body else None


async def remove_servers(portal) -> None:
    """Delete every temporary user (as the idle culler would) and wait until they are gone."""
    for _ in range(120):
        _, users = await hub_call(portal, "GET", "/users?limit=200")
        names = [u["name"] for u in users or [] if u["name"].startswith("pb-")]
        if not names:
            return
        await asyncio.gather(*(hub_call(portal, "DELETE", f"/users/{n}") for n in names))
        await asyncio.sleep(1)
    raise RuntimeError("temporary users still there after 120 s")


async def builds_total(portal) -> float:
    body = (await AsyncHTTPClient().fetch(f"{portal.url}/metrics")).body.decode()
    return sum(float(ln.split()[-1]) for ln in body.splitlines() if ln.startswith("panbinder_builds_total{"))


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def line(label: str, values: list[float]) -> str:
    return f"{label}: p50 {pct(values, 50):6.2f} s  p95 {pct(values, 95):6.2f} s  max {max(values):6.2f} s"


async def concurrent_launches(portal, url: str, image: str, n: int) -> None:
    floors = await floor_all(image, n)
    results = await asyncio.gather(*(timed_launch(url) for _ in range(n)), return_exceptions=True)
    launches = [r for r in results if isinstance(r, float)]
    print(line(f"floor  {n} bare docker runs at once -> /api/status", floors))
    if launches:
        print(line(f"launch {n} concurrent /build -> ready -> /api/status", launches))
        print(f"ratio of p95s launch/floor: {pct(launches, 95) / pct(floors, 95):.2f}  (target <= 1.5)")
    print(f"launches ready: {len(launches)} of {n}")
    for failure in [r for r in results if not isinstance(r, float)][:3]:
        print(f"  failed: {str(failure)[-300:]}")
    await remove_servers(portal)


async def one_new_commit(portal, git, name: str, m: int) -> None:
    git.commit(name, {"analysis.py": f"print({time.time()!r})\n"}, "new commit")
    url = portal.build_url(git.url(name), "main")
    before = await builds_total(portal)
    start = time.monotonic()
    streams = await asyncio.gather(
        *(read_stream(url, timeout=TIMEOUT) for _ in range(m)), return_exceptions=True
    )
    seconds = time.monotonic() - start
    ready = sum(1 for s in streams if not isinstance(s, BaseException) and s.last.get("phase") == "ready")
    builds = await builds_total(portal) - before
    print(f"{m} concurrent requests for one new commit: builds {builds:.0f} (target 1), ready {ready} of {m}")
    print(f"  all answered in {seconds:.1f} s")
    await remove_servers(portal)


async def main(n: int, m: int) -> None:
    # the benchmark's own client must not be the bottleneck (tornado's default: 10 connections)
    AsyncHTTPClient.configure(None, max_clients=max(n, m) + 10)
    with tempfile.TemporaryDirectory(prefix="panbinder-bench-") as tmp, running_git(Path(tmp, "git")) as git:
        name = f"load-{int(time.time())}"
        git.commit(name, FILES, "initial")
        with running_portal(Path(tmp, "state"), prefix=PREFIX, config=CONFIG) as portal:
            url = portal.build_url(git.url(name), "main")
            built = await read_stream(url + "?build_only=true", timeout=1800)
            if built.last.get("phase") != "ready":
                raise RuntimeError(built.log()[-3000:])
            await timed_launch(url)  # warm-up: the Hub and the engine have seen the image
            await remove_servers(portal)
            await concurrent_launches(portal, url, built.last["imageName"], n)
            await one_new_commit(portal, git, name, m)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--launches", type=int, default=20)
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(main(min(args.launches, 40), min(args.requests, 100)))
