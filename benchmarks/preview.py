"""Preview benchmark: tree + thumbnail of a terabyte-shaped HDF5 dataset, time and peak memory.

Writes, in a temporary folder, a (1,000,000 x 1,000,000) float32 dataset chunked 256 x 256 and
gzip-compressed, of which only a few chunks are written (a ~4 TB apparent size in a file of about
a megabyte). Then, in a fresh process per run, it times `preview.tree` and `preview.thumbnail`
and measures peak memory twice: the process's peak RSS growth (resource.getrusage; this also
sees HDF5's own C allocations) and the tracemalloc peak (Python and numpy allocations). The
"dense" scenario reads as if every chunk were written (the sparse shortcut switched off), which
bounds the cost for a fully written dataset of the same shape. Targets: < 1 s and < 200 MB.
Last, the same tree and thumbnail through the preview sandbox (as the portal serves them: a
confined child per preview, data_mounts/sandbox.py) against in the benchmark's own process, to
show what the sandbox adds per preview.

    python -m benchmarks.preview [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import h5py
import numpy as np

from panbinder.data_mounts import preview
from panbinder.data_mounts.sandbox import PreviewSandbox

SHAPE = (1_000_000, 1_000_000)
CHUNKS = (256, 256)
WRITTEN = [(0, 0), (250_000, 500_000), (500_000, 500_000), (999_744, 999_744)]
TARGET_SECONDS = 1.0
TARGET_MB = 200.0


def write_file(path: Path) -> None:
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("entry/data/data", shape=SHAPE, dtype="f4", chunks=CHUNKS, compression="gzip")
        ds.attrs["signal"] = 1
        for row, col in WRITTEN:
            ds[row : row + CHUNKS[0], col : col + CHUNKS[1]] = rng.random(CHUNKS, dtype=np.float32)


def one_run(path: Path, dense: bool) -> dict:
    """Runs in a fresh process; prints the measurements as JSON."""
    if dense:
        preview.MAX_SPARSE_SCAN = 0
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    preview.tree(path)
    tree_seconds = time.perf_counter() - start
    png = preview.thumbnail(path, "/entry/data/data")
    total_seconds = time.perf_counter() - start
    rss_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    tracemalloc.start()
    preview.tree(path)
    preview.thumbnail(path, "/entry/data/data")
    traced_mb = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return {
        "tree_s": tree_seconds,
        "thumbnail_s": total_seconds - tree_seconds,
        "total_s": total_seconds,
        "rss_mb": rss_mb,
        "traced_mb": traced_mb,
        "png_bytes": len(png),
    }


def report(name: str, runs: list[dict]) -> bool:
    worst_s = max(run["total_s"] for run in runs)
    worst_mb = max(max(run["rss_mb"], run["traced_mb"]) for run in runs)
    ok = worst_s < TARGET_SECONDS and worst_mb < TARGET_MB
    print(f"\n{name} ({len(runs)} runs, fresh process each):")
    for key, label in [
        ("tree_s", "tree        s "),
        ("thumbnail_s", "thumbnail   s "),
        ("total_s", "tree+thumb  s "),
        ("rss_mb", "peak RSS +  MB"),
        ("traced_mb", "tracemalloc MB"),
    ]:
        values = [run[key] for run in runs]
        print(f"  {label}  median {statistics.median(values):8.3f}   max {max(values):8.3f}")
    print(
        f"  target: < {TARGET_SECONDS:.0f} s and < {TARGET_MB:.0f} MB -> {'met' if ok else 'MISSED'}"
        f" (worst {worst_s:.3f} s, {worst_mb:.1f} MB)"
    )
    return ok


async def sandbox_cost(path: Path, runs: int) -> None:
    """Median time of tree and thumbnail in this process and through the sandbox, warm."""
    sandbox = PreviewSandbox()
    await sandbox.start()
    folder, name = path.parent, path.name
    calls = {
        "tree": (lambda: preview.tree(path), lambda: sandbox.tree(folder, name)),
        "thumbnail": (
            lambda: preview.thumbnail(path, "/entry/data/data"),
            lambda: sandbox.thumbnail(folder, name, "/entry/data/data"),
        ),
    }
    enforced = "enforced" if sandbox.hello["enforced"] else f"NOT enforced ({sandbox.hello['why']})"
    print(f"\nsandbox ({enforced}), median of {runs} warm runs each:")
    try:
        for call, (direct, sandboxed) in calls.items():
            here, there = [], []
            for _ in range(runs):
                start = time.perf_counter()
                direct()
                here.append(time.perf_counter() - start)
                start = time.perf_counter()
                await sandboxed()
                there.append(time.perf_counter() - start)
            a, b = statistics.median(here) * 1e3, statistics.median(there) * 1e3
            print(f"  {call:<10} in process {a:7.1f} ms   sandboxed {b:7.1f} ms   added {b - a:6.1f} ms")
    finally:
        await sandbox.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--one", metavar="PATH", help=argparse.SUPPRESS)
    parser.add_argument("--dense", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_run(Path(args.one), args.dense)))
        return 0
    with tempfile.TemporaryDirectory(prefix="panbinder-bench-preview-") as folder:
        path = Path(folder) / "terabyte.h5"
        write_file(path)
        apparent_tb = np.prod(SHAPE) * 4 / 1e12
        print(f"{path.name}: shape {SHAPE} float32 ({apparent_tb:.1f} TB apparent), chunks {CHUNKS},")
        print(f"  {len(WRITTEN)} chunks written, {path.stat().st_size / 1e6:.2f} MB on disk")
        ok = True
        for name, extra in [
            ("sparse: only written chunks read", []),
            ("dense: as if every chunk were written", ["--dense"]),
        ]:
            runs = []
            for _ in range(args.runs):
                out = subprocess.run(
                    [sys.executable, __file__, "--one", str(path), *extra],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
                runs.append(json.loads(out))
            ok = report(name, runs) and ok
        Path(folder).chmod(0o755)  # the sandbox's user reads the file
        asyncio.run(sandbox_cost(path, max(args.runs, 20)))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
