"""Build benchmark for one medium repository (numpy, h5py, matplotlib), all in one run:
cold build (empty BuildKit cache), code-only commit rebuild (target <= 2 s), requirements change
rebuild, and archive and restore times (after a registry wipe) with the cached launch they are
compared against (target: restore + launch <= 2x cached launch).

    python -m benchmarks.build [--keep-build-cache]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support import (
    Portal,
    forget_image,
    machine_build_engine,
    read_stream,
    running_git,
    running_portal,
    timed_launch,
)

PREFIX = "panbinder-bench-build"
DOCKER = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"  # the run engine
BUILD_ENGINE = machine_build_engine()  # where builds and their cache are
REQUIREMENTS = "numpy==2.4.6\nh5py==3.16.0\nmatplotlib==3.11.2\n"


async def build_seconds(url: str) -> tuple[float, str]:
    s = await read_stream(url + "?build_only=true")
    if s.last.get("phase") != "ready":
        raise RuntimeError(s.log()[-3000:])
    return s.seconds, s.last["imageName"]


def cli_seconds(portal: Portal, *args: str) -> float:
    start = time.monotonic()
    proc = portal.command(*args, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"panbinder {args[0]} failed: {proc.stderr[-2000:]}")
    return time.monotonic() - start


async def main(keep_cache: bool) -> None:
    with (
        tempfile.TemporaryDirectory(prefix="panbinder-bench-") as tmp,
        running_git(Path(tmp, "git")) as git,
        running_portal(Path(tmp, "state"), prefix=PREFIX, config="c.ServerPool.size = 0\n") as portal,
    ):
        name = f"medium-{int(time.time())}"
        git.commit(name, {"requirements.txt": REQUIREMENTS, "analysis.py": "print(1)\n"}, "initial")
        url = portal.build_url(git.url(name), "main")
        if not keep_cache:
            subprocess.run(BUILD_ENGINE.command("builder", "prune", "-af"), check=True, capture_output=True)
        cold, _ = await build_seconds(url)
        git.commit(name, {"analysis.py": "print(2)\n"}, "code only")
        code_only, image = await build_seconds(url)
        git.commit(name, {"requirements.txt": REQUIREMENTS + "tabulate==0.9.0\n"}, "one more requirement")
        req_change, _ = await build_seconds(url)
        print(f"cold build ({'warm' if keep_cache else 'empty'} build cache): {cold:7.2f} s")
        print(f"code-only commit rebuild:             {code_only:7.2f} s  (target <= 2 s)")
        print(f"requirements change rebuild:          {req_change:7.2f} s")
        cached = min([await timed_launch(url) for _ in range(3)])
        print(f"cached launch (best of 3):            {cached:7.2f} s")
        archive_root = Path(tmp, "archives")
        archive = cli_seconds(portal, "archive", image, f"--to={archive_root}")
        print(f"archive:                              {archive:7.2f} s")
        bundle = next(p for p in archive_root.iterdir() if p.is_dir() or p.suffix == ".tar")
        # gone from the engine; from the registry its tag only, then (a wipe) also every blob
        for blobs, what in ((False, "tag deleted"), (True, "registry wiped")):
            forget_image(image, blobs=blobs, docker=DOCKER)
            restore = cli_seconds(portal, "restore", str(bundle))
            launch = await timed_launch(url)
            ratio = (restore + launch) / cached
            print(f"restore ({what}):{' ' * (22 - len(what))}{restore:7.2f} s, then launch {launch:.2f} s")
            print(f"  (restore + launch) / cached launch: {ratio:7.2f}  (target <= 2)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keep-build-cache", action="store_true")
    asyncio.run(main(parser.parse_args().keep_build_cache))
