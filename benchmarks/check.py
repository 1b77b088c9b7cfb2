"""Check benchmark: ``panbinder check`` of a publication vs a bare floor, in one run; then
``check --all`` of 20 publications.

A repository with one small notebook (one cell, a stored output) is built once and registered
as 20 publications of that commit (20 DOIs, one image: a check's cost is launching, running and
comparing, the same for each; building 20 images would measure builds). Then N alternating
measurements of
  floor:  `docker run -d` of the image (a launched server's limits) until its /api/status is 200,
          the same notebook executed with nbclient inside it (`docker exec`, the check's own
          in-container script), and the container removed
  check:  `panbinder check DOI --json` (frozen rebuild off: it is a full build), the whole command
          (launch through the Hub, run, compare, record, server stopped)
and the ratio of the medians (target <= 1.5). Last, `panbinder check --all` of the 20
publications, one at a time, timed once.

    python -m benchmarks.check [--runs 5] [--publications 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from panbinder.checks.in_container import EXEC, RUNNER
from tests.support import free_port, running_git, running_portal, wait_status

from .launch import DOCKER, PREFIX, floor_command

NOTEBOOK = "analysis.ipynb"
CONFIG = """
c.GitProvider.allow_local = True
c.HubProcess.mem_limit = '2G'
c.HubProcess.cpu_limit = 1.0
c.ServerPool.size = 0
"""


def notebook() -> str:
    """One cell printing 6 * 7 with its stored output."""
    source = "print(6 * 7)"
    cell = {
        "cell_type": "code",
        "execution_count": 1,
        "id": "answer",
        "metadata": {},
        "outputs": [{"output_type": "stream", "name": "stdout", "text": "42\n"}],
        "source": source,
    }
    kernel = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return json.dumps(
        {"cells": [cell], "metadata": {"kernelspec": kernel}, "nbformat": 4, "nbformat_minor": 5}
    )


def command(portal, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    proc = portal.command(*args, timeout=timeout)
    if proc.returncode not in (0,) and args[0] != "check":
        raise RuntimeError(f"panbinder {' '.join(args)}: {proc.stdout}{proc.stderr[-3000:]}")
    return proc


def publish(portal, git, count: int) -> list[str]:
    """``count`` publications of one commit, built once; their DOIs."""
    name = f"check-bench-{int(time.time())}"
    files = {"requirements.txt": "tabulate==0.9.0\n", NOTEBOOK: notebook()}
    sha = git.commit(name, files, "publication")
    command(portal, "build", git.url(name), sha)
    dois = [f"10.5555/panbinder.bench.check{number}" for number in range(count)]
    for doi in dois:
        command(portal, "publications", "add", f"--doi={doi}", f"--repo={git.url(name)}", f"--ref={sha}")
    return dois


def check(portal, *targets: str) -> tuple[float, object]:
    """Seconds of one ``panbinder check`` command and its JSON result."""
    start = time.monotonic()
    proc = command(portal, "check", *targets, "--json", "--CheckRunner.frozen_rebuild=False")
    elapsed = time.monotonic() - start
    result = json.loads(proc.stdout)
    for one in result if isinstance(result, list) else [result]:
        if one.get("verdict") != "reproducible":
            raise RuntimeError(f"check of {one.get('doi')}: {one}\n{proc.stderr[-3000:]}")
    return elapsed, result


async def floor_once(image: str, stored: str) -> float:
    """Bare server started, the notebook executed in it with nbclient, the container removed."""
    port = free_port()
    name = f"{PREFIX}-check-floor-{port}"
    start = time.monotonic()
    subprocess.run(floor_command(image, name, port), check=True, capture_output=True)
    try:
        await wait_status(f"http://127.0.0.1:{port}/api/status")
        run = [DOCKER, "exec", "-i", name, "sh", "-c", EXEC, "sh", NOTEBOOK, RUNNER, "600"]
        proc = subprocess.run(run, input=stored, capture_output=True, text=True, timeout=660)
        outputs = json.loads(proc.stdout)["notebook"]["cells"][0]["outputs"]
        if outputs[0]["text"] != "42\n":
            raise RuntimeError(f"the floor's notebook printed {outputs}")
    finally:
        subprocess.run([DOCKER, "rm", "-f", name], capture_output=True)
    return time.monotonic() - start


def steps_seconds(result: dict) -> str:
    return ", ".join(f"{s['step']} {s['seconds']:.1f} s" for s in result["steps"] if s["status"] != "skipped")


async def main(runs: int, count: int) -> None:
    with tempfile.TemporaryDirectory(prefix="panbinder-bench-") as tmp, running_git(Path(tmp, "git")) as git:
        with running_portal(Path(tmp, "state"), prefix=PREFIX, config=CONFIG) as portal:
            began = time.monotonic()
            dois = publish(portal, git, count)
            print(
                f"built once, {count} publications registered: {time.monotonic() - began:.0f} s", flush=True
            )
            _, warm = check(portal, dois[0])  # warm-up: the run engine has the image
            image, stored = warm["image"], notebook()
            floors, checks, results = [], [], []
            for _ in range(runs):
                floors.append(await floor_once(image, stored))
                seconds, result = check(portal, dois[0])
                checks.append(seconds)
                results.append(result)
            all_seconds, all_results = check(portal, "--all")
    floor, whole = statistics.median(floors), statistics.median(checks)
    print(
        f"floor  docker run -> /api/status 200 -> nbclient in it -> rm, median of {runs}: "
        f"{floor:.2f} s  {sorted(round(x, 2) for x in floors)}"
    )
    print(
        f"check  panbinder check DOI (frozen rebuild off), median of {runs}: "
        f"{whole:.2f} s  {sorted(round(x, 2) for x in checks)}"
    )
    median_result = results[min(range(runs), key=lambda i: abs(checks[i] - whole))]
    print(f"       steps of the median check: {steps_seconds(median_result)}")
    print(f"ratio check/floor: {whole / floor:.2f}  (target <= 1.5)")
    assert isinstance(all_results, list)
    print(
        f"check --all of {len(all_results)} publications, one at a time: {all_seconds:.0f} s "
        f"({all_seconds / len(all_results):.1f} s each)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--publications", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.publications))
