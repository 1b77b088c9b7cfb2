"""Warm publications benchmark (part of ``python -m benchmarks.launch``; alone:
``python -m benchmarks.warm_launch [--runs 5] [--burst 20]``).

With a publication (a small repository and one dataset) registered and its image built:
  first click:  ``panbinder serve`` is started; as soon as it listens, GET /build/doi/<doi> until
                ``ready``, then until the server's /api/status is 200 (``runs`` restarts; p50)
  hot burst:    ``burst`` readers click the same publication at once, twice: the first burst
                teaches the pool (most of it starts servers), the second is measured once the
                pool holds what it planned (p50, p95). Each stage prints as it ends; a launch
                not ready within 600 s counts as failed (``--runs 0``: the bursts only)
  memory:       what one paused pre-started server uses (the pool's measurement, /health)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient

from tests.support import read_stream, running_git, running_portal, timed_launch

PREFIX = "panbinder-bench-warm"
DOI = "10.5555/panbinder.bench-warm"
FILES = {"requirements.txt": "tabulate==0.9.0\n", "README.md": "warm benchmark\n"}


def portal_config(facility: Path) -> str:
    return (
        "c.HubProcess.mem_limit = '2G'\nc.HubProcess.cpu_limit = 1.0\n"
        f"c.Catalogue.storage_roots = [{str(facility)!r}]\nc.GitProvider.allow_local = True\n"
        "c.ServerPool.refill_delay = 0.5\nc.ServerPool.sweep_interval = 5\nc.ServerPool.warm_timeout = 120\n"
        "c.HubLauncher.launch_timeout = 300.0\nc.HubProcess.start_timeout = 300\n"
    )


def register(portal, facility: Path, repo: str) -> None:
    """A public dataset under ``facility`` and a publication using it, in the portal's catalogue."""
    from panbinder.data_mounts.catalogue import Catalogue
    from tests.integration.conftest import write_scan

    write_scan(facility / "bench-scan", 2)
    portal.write_config()
    for args in (
        ("datasets", "scan", str(facility)),
        ("publications", "add", f"--doi={DOI}", f"--repo={repo}", "--ref=main", "--dataset=local:bench-scan"),
    ):
        proc = portal.command(*args)
        if proc.returncode:
            raise RuntimeError(proc.stdout + proc.stderr)
        if args[0] == "datasets":
            cat = Catalogue(
                db_url=f"sqlite:///{portal.state / 'catalogue.sqlite'}", storage_roots=[str(facility)]
            )
            cat.start()
            with cat.session() as s:
                cat.get_dataset(s, "local:bench-scan").is_public = True
            cat.close()


def doi_url(portal) -> str:
    return f"{portal.url}/build/doi/{quote(DOI, safe='')}"


async def health(portal) -> dict:
    resp = await AsyncHTTPClient().fetch(
        f"{portal.url}/health", headers={"Authorization": f"token {portal.service_token}"}, raise_error=False
    )
    return json.loads(resp.body)


async def burst(url: str, n: int, label: str, timeout: float = 600) -> list[float]:
    """Seconds of each of ``n`` concurrent launches that reached a server within ``timeout``
    (failures and launches still running then are printed, never waited for longer)."""
    start = time.monotonic()
    print(f"{label}: {n} concurrent launches...", flush=True)
    results = await asyncio.gather(
        *(asyncio.wait_for(timed_launch(url), timeout) for _ in range(n)), return_exceptions=True
    )
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        print(f"{len(failed)} of {n} concurrent launches failed: {failed[0]!r}"[-400:], flush=True)
    done = [r for r in results if not isinstance(r, BaseException)] or [float("nan")]
    print(
        f"{label}: {len(done)} of {n} ready in {time.monotonic() - start:.1f} s, "
        f"p50 {statistics.median(done):.2f} s, p95 {p95(done):.2f} s",
        flush=True,
    )
    return done


async def wait_pool(portal, servers: int, timeout: float = 300) -> float:
    """Seconds until the pool holds ``servers`` paused servers (or the timeout; printed)."""
    start, pool = time.monotonic(), {}
    while time.monotonic() - start < timeout:
        pool = (await health(portal)).get("pool", {})
        if pool.get("paused", 0) >= servers:
            break
        await asyncio.sleep(1)
    print(
        f"pool after {time.monotonic() - start:.0f} s: {pool.get('paused', 0)} paused of "
        f"{pool.get('servers', 0)} servers (waited for {servers})",
        flush=True,
    )
    return time.monotonic() - start


def p95(values: list[float]) -> float:
    return sorted(values)[max(0, round(0.95 * len(values)) - 1)]


async def measure(tmp: Path, repo: str, runs: int, size: int) -> dict:
    AsyncHTTPClient.configure(None, max_clients=4 * size)
    facility, state = tmp / "facility", tmp / "state-warm"
    firsts, starts = [], []
    with running_portal(state, prefix=PREFIX, config=portal_config(facility), start=False) as portal:
        register(portal, facility, repo)
        portal.start(timeout=900)
        built = await read_stream(doi_url(portal) + "?build_only=true")  # the first start had no image yet
        if built.last.get("phase") != "ready":
            raise RuntimeError(built.log())
    for _ in range(runs):
        with running_portal(state, prefix=PREFIX, config=portal_config(facility), start=False) as portal:
            t0 = time.monotonic()
            portal.start(timeout=600)
            starts.append(time.monotonic() - t0)
            firsts.append(await timed_launch(doi_url(portal)))
            print(f"first click after serve started: {firsts[-1]:.3f} s", flush=True)
    with running_portal(state, prefix=PREFIX, config=portal_config(facility), start=False) as portal:
        portal.start(timeout=600)
        teach = await burst(doi_url(portal), size, "teaching burst")
        waited = await wait_pool(portal, size)
        hot = await burst(doi_url(portal), size, "hot burst")
        pool = (await health(portal))["pool"]
    return {"first": firsts, "starts": starts, "teach": teach, "waited": waited, "hot": hot, "pool": pool}


def report(r: dict) -> None:
    firsts, hot, pool = r["first"], r["hot"], r["pool"]
    if firsts:  # --runs 0: the burst only
        print(
            f"[warm publication] first click after serve starts, p50 of {len(firsts)}: "
            f"{statistics.median(firsts):.3f} s  {sorted(round(x, 3) for x in firsts)}  (target < 0.2 s; "
            f"serve start to listening p50 {statistics.median(r['starts']):.1f} s)"
        )
    print(
        f"[hot publication] {len(hot)} concurrent clicks, pool refilled ({r['waited']:.0f} s after the "
        f"teaching burst, p50 {statistics.median(r['teach']):.2f} s): p50 {statistics.median(hot):.3f} s, "
        f"p95 {p95(hot):.3f} s, max {max(hot):.3f} s  (target p95 < 1 s)"
    )
    print(
        f"[pool] memory per paused server: {pool['server_memory_bytes'] / 2**20:.0f} MiB "
        f"(budget {pool['memory_budget_bytes'] / 2**30:.1f} GiB: {pool['capacity']} servers); "
        f"hits {pool['hits']}, misses {pool['misses']}, evictions {pool['evictions']}"
    )


async def main(runs: int, size: int, git=None, repo: str = "") -> None:
    with tempfile.TemporaryDirectory(prefix="panbinder-bench-warm-") as tmp:
        if git is None:
            with running_git(Path(tmp, "git")) as own:
                own.commit("warm", FILES, "initial")
                report(await measure(Path(tmp), own.url("warm"), runs, size))
        else:
            report(await measure(Path(tmp), repo, runs, size))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--burst", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.burst))
