"""PaNOSC search API benchmark: the search portal's queries on generated datasets, p50/p95.

The catalogue is filled as ``benchmarks/search.py`` fills it (generated datasets in real record
shapes, written in bulk); each timed request is what ``/api/Datasets``, ``/api/Documents`` or
``/api/Datasets/count`` runs for one filter (parse, SQL, render), without HTTP.

    python -m benchmarks.panosc [--datasets 100000] [--queries 50]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from panbinder.data_mounts.catalogue import Catalogue
from panbinder.data_mounts.panosc import filters, search

from .search import fill

TECHNIQUE = {"relation": "techniques", "scope": {"where": {"name": "x-ray diffraction"}}}
QUERIES = {
    "technique include (PaNET subtree), 50": ("Dataset", {"include": [TECHNIQUE], "limit": 50}, ""),
    "query words ranked, 50": (
        "Dataset",
        {"include": ["techniques", "instrument"], "limit": 50},
        "steel strain",
    ),
    "where and/like/between, 50": (
        "Dataset",
        {
            "where": {
                "and": [
                    {"title": {"like": "%steel%"}},
                    {"creationDate": {"between": ["2018-01-01", "2020-01-01"]}},
                ]
            },
            "include": ["files"],
            "limit": 50,
        },
        "",
    ),
    "portal document search, 50": (
        "Document",
        {"include": [{"relation": "datasets", "scope": {"include": [TECHNIQUE]}}], "limit": 50},
        "",
    ),
    "instruments": ("Instrument", {}, ""),
}


def timed(cat: Catalogue, model: str, raw: dict, query: str) -> float:
    began = time.perf_counter()
    flt = filters.parse_filter(model, raw, query=query)
    with cat.session() as session:
        search.find(session, flt, now=datetime.now(UTC), cap=100)
    return (time.perf_counter() - began) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'c.sqlite'}"
        seconds = fill(url, args.datasets)
        print(f"{args.datasets} datasets written in {seconds:.1f} s (SQLite)")
        cat = Catalogue(db_url=url)
        cat.start()
        for name, (model, raw, query) in QUERIES.items():
            times = sorted(timed(cat, model, raw, query) for _ in range(args.queries))
            p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
            print(f"{name:40s} p50 {statistics.median(times):7.1f} ms  p95 {p95:7.1f} ms")
        began = time.perf_counter()
        with cat.session() as session:
            where = filters.parse_where("Dataset", {"title": {"like": "%steel%"}})
            total = search.count(session, "Dataset", where, now=datetime.now(UTC))
        print(f"count ({total} matching)                    {(time.perf_counter() - began) * 1000:7.1f} ms")
        cat.close()


if __name__ == "__main__":
    main()
