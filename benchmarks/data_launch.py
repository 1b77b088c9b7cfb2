"""Data launch benchmark: does launch time depend on the datasets mounted?

In one run, with the pre-started pool off (so each launch starts and mounts for real), the
median cached launch time of three publications with the same repository commit and:
  small: a 1 MB HDF5 file
  huge:  an HDF5 file with a terabyte-shaped chunked dataset (only a few chunks written)
  many:  10,000 small files
and the ratios huge/small and many/small (target <= 1.05). Then the HDF5 preview (tree and
thumbnail) of the terabyte-shaped dataset: time and peak memory (targets < 1 s, < 200 MB).

    python -m benchmarks.data_launch [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

import h5py
import numpy as np

from panbinder.data_mounts.catalogue import Catalogue
from tests.support import Portal, running_git, running_portal, timed_launch

PREFIX = "panbinder-bench-data"


def make_datasets(root: Path) -> None:
    small = root / "small"
    small.mkdir(parents=True)
    with h5py.File(small / "small.h5", "w") as f:
        f["entry/data"] = np.random.default_rng(1).random(128 * 1024)  # 1 MiB of float64
    huge = root / "huge"
    huge.mkdir()
    with h5py.File(huge / "huge.h5", "w") as f:
        ds = f.create_dataset("entry/data", shape=(1_000_000, 1_000_000), dtype="float32", chunks=(256, 256))
        for i in range(4):
            ds[i * 256 : (i + 1) * 256, 0:256] = i + 1
    many = root / "many"
    many.mkdir()
    template = root / "template.h5"
    with h5py.File(template, "w") as f:
        f["entry/value"] = 1
    payload = template.read_bytes()
    template.unlink()
    for i in range(10_000):  # copies of one small HDF5 file: the scan registers HDF5 files
        sub = many / f"d{i // 1000:02d}"
        sub.mkdir(exist_ok=True)
        (sub / f"f{i:05d}.h5").write_bytes(payload)


def cli(portal: Portal, *args: str) -> None:
    proc = portal.command(*args, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"panbinder {args[0]} failed: {proc.stderr[-2000:]}")


def preview_figures(path: Path) -> tuple[float, float, float]:
    from panbinder.data_mounts.preview import thumbnail, tree

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tracemalloc.start()
    start = time.monotonic()
    tree(path)
    png = thumbnail(path, "/entry/data", size=256)
    seconds = time.monotonic() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert png.startswith(b"\x89PNG")
    return seconds, peak / 2**20, rss_after - rss_before


async def main(runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="panbinder-bench-") as tmp:
        storage = Path(tmp, "storage")
        make_datasets(storage)
        config = f"c.Catalogue.storage_roots = [{str(storage)!r}]\nc.ServerPool.size = 0\n"
        with (
            running_git(Path(tmp, "git")) as git,
            running_portal(Path(tmp, "state"), prefix=PREFIX, config=config) as portal,
        ):
            git.commit("paper", {"requirements.txt": "h5py==3.16.0\n"}, "paper")
            cli(portal, "datasets", "scan", str(storage))
            catalogue = Catalogue(
                db_url=f"sqlite:///{portal.state / 'catalogue.sqlite'}", storage_roots=[str(storage)]
            )
            with catalogue.session() as session:
                for name in ("small", "huge", "many"):
                    catalogue.get_dataset(
                        session, f"local:{name}"
                    ).is_public = True  # scans register closed data
            urls = {}
            for name in ("small", "huge", "many"):
                doi = f"10.5555/bench.{name}"
                cli(
                    portal,
                    "publications",
                    "add",
                    f"--doi={doi}",
                    f"--repo={git.url('paper')}",
                    "--ref=main",
                    f"--dataset=local:{name}",
                )
                urls[name] = f"{portal.url}/build/doi/{doi}"
            await timed_launch(urls["small"])  # builds the image once; the rest are cached launches
            times: dict[str, list[float]] = {k: [] for k in urls}
            for _ in range(runs):
                for name, url in urls.items():
                    times[name].append(await timed_launch(url))
            med = {k: statistics.median(v) for k, v in times.items()}
            for name in urls:
                print(
                    f"launch with {name:5s} dataset, median of {runs}: {med[name]:.3f} s  {sorted(round(x, 3) for x in times[name])}"
                )
            print(
                f"ratio huge/small: {med['huge'] / med['small']:.3f}  many/small: {med['many'] / med['small']:.3f}  (target <= 1.05)"
            )
            seconds, peak, rss = preview_figures(storage / "huge" / "huge.h5")
            print(
                f"preview of the terabyte-shaped dataset: {seconds:.3f} s, tracemalloc peak {peak:.1f} MB, "
                f"max RSS growth {rss:.1f} MB  (targets < 1 s, < 200 MB)"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    asyncio.run(main(parser.parse_args().runs))
