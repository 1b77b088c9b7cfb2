"""Search benchmark: 100,000 generated datasets, text + facet queries, p50/p95, page weight.

Datasets are generated in the shapes real catalogue records have (PaNOSC/SciCat: a title and
description of a few words from an experiment's vocabulary, facility and instrument pairs,
one to three PaNET techniques, a proposal id, keywords, sizes spread over six orders of
magnitude, creation dates over ten years, about a third embargoed), written through the models
so the database's own full-text index is filled by its triggers (SQLite) or generated column
(PostgreSQL). Each timed query is what the /datasets page runs: one page of 20 cards, the total
and all eight facets' counts, with the facet index built beforehand as in a running portal (its
build, paid by the first search after each write, is printed on its own, and so is the scoring
of the frequent terms that follows it in the background, ``data_mounts/text_scores.py``).
Scenarios: text + 2 facets (the target: p95 < 50 ms on 2 cores), text only, 2 facets only, and
the empty landing page. Last, the weight of a rendered search
page (HTML + the two style sheets; no script, no external asset).

    python -m benchmarks.search [--datasets 100000] [--queries 200] [--postgres]

``--postgres`` also runs it on a throwaway PostgreSQL cluster (Debian's ``postgresql``
binaries, started in a temporary folder; needs the ``psycopg`` driver).
"""

from __future__ import annotations

import argparse
import functools
import itertools
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert, select, text

from panbinder.data_mounts import db, facet_index, panet, search
from panbinder.data_mounts.access import ANONYMOUS
from panbinder.data_mounts.models import Dataset, Technique, dataset_techniques
from panbinder.data_mounts.search_query import SearchQuery

FACILITIES = {
    "ESRF": ["ID02", "ID09", "ID10", "ID13", "ID23-1", "BM29", "ID31"],
    "ILL": ["D11", "D22", "D33", "IN5", "IN16B", "D19", "FIGARO"],
    "ESS": ["LoKI", "BIFROST", "ODIN", "DREAM", "ESTIA"],
    "PSI": ["SANS-I", "SANS-LLB", "cSAXS", "HRPT", "TOMCAT"],
    "Diamond Light Source": ["I03", "I04", "I22", "B21", "I15-1", "I13-2"],
    "SOLEIL": ["SIXS", "SWING", "PROXIMA-1", "ANATOMIX"],
    "ISIS": ["SANS2D", "LOQ", "ZOOM", "MARI", "POLREF"],
    "APS": ["9-ID-C", "12-ID-B", "2-BM"],
}
FIELDS = ["Chemistry", "Physics", "Biology", "Materials Science", "Earth Science", "Cultural Heritage"]
TYPES = ["raw", "raw", "raw", "processed", "simulated"]
SAMPLES = [
    "lysozyme", "thaumatin", "vesicles", "zeolite", "graphene", "steel", "perovskite", "micelles",
    "bone", "cellulose", "polymer blend", "nanoparticles", "protein crystal", "lipid bilayer",
    "battery cathode", "catalyst", "clay", "concrete", "magnetic film", "superconductor",
]  # fmt: skip
CONDITIONS = [
    "under pressure", "at 80 K", "in situ heating", "time resolved", "in solution", "aged 10 h",
    "operando cycling", "humidity scan", "magnetic field", "room temperature", "after annealing",
]  # fmt: skip
WORDS = [
    "structure", "kinetics", "phase", "transition", "growth", "dynamics", "texture", "strain",
    "diffusion", "ordering", "aggregation", "morphology", "porosity", "hydration", "defects",
]  # fmt: skip
TEXT_QUERIES = [
    *SAMPLES,
    *WORDS,
    "vesicles pressure",
    "lysozyme crystal",
    "graph*",
    '"in situ"',
    "steel -bone",
]


def vocabulary(rnd: random.Random, size: int = 6000) -> list[str]:
    """Pseudo-words for descriptions: real record text has a large vocabulary with a Zipf-like
    frequency (a few words everywhere, most words rare), which is what makes text selective."""
    syllables = [
        "ka",
        "lo",
        "mi",
        "ne",
        "ru",
        "ta",
        "si",
        "po",
        "de",
        "fa",
        "gu",
        "hi",
        "zo",
        "ve",
        "br",
        "st",
    ]
    words = {"".join(rnd.choice(syllables) for _ in range(rnd.randint(2, 4))) for _ in range(size * 2)}
    return sorted(words)[:size]


@functools.cache
def ranked_words() -> list[str]:
    """The vocabulary in rank order (most frequent first), the same in every run."""
    rnd = random.Random(11)
    words = vocabulary(rnd)
    rnd.shuffle(words)
    return words


def zipf_words(rnd: random.Random, words: list[str], k: int) -> list[str]:
    """``k`` words, the word of rank r drawn with weight 1/r."""
    cum = _cumulative(len(words))
    return rnd.choices(words, cum_weights=cum, k=k)


@functools.cache
def _cumulative(n: int) -> list[float]:
    return list(itertools.accumulate(1 / r for r in range(1, n + 1)))


def leaf_techniques() -> list[str]:
    """PaNET terms with no narrower term: what records name (their parents get counted)."""
    parents = {p for t in panet.terms().values() for p in t.parents}
    return sorted(t for t in panet.terms() if t not in parents)


def generate(n: int, seed: int = 1) -> tuple[list[dict], list[tuple[int, str]]]:
    rnd = random.Random(seed)
    techniques = leaf_techniques()[:120]
    words = ranked_words()
    start = datetime(2016, 1, 1, tzinfo=UTC)
    rows, links = [], []
    for i in range(1, n + 1):
        facility = rnd.choice(list(FACILITIES))
        sample, condition = rnd.choice(SAMPLES), rnd.choice(CONDITIONS)
        created = start + timedelta(days=rnd.random() * 3650)
        embargoed = rnd.random() < 0.35
        rows.append(
            {
                "id": i,
                "pid": f"10.5072/{facility[:4].lower()}-{i:07d}",
                "title": f"{sample.capitalize()} {condition}: {rnd.choice(WORDS)} {rnd.choice(WORDS)}",
                "description": " ".join([rnd.choice(WORDS), *zipf_words(rnd, words, 25)]),
                "facility": facility,
                "instrument": rnd.choice(FACILITIES[facility]),
                "scientific_field": rnd.choice(FIELDS),
                "data_type": rnd.choice(TYPES),
                "proposal_id": f"{rnd.randint(1, 99):02d}-{rnd.randint(1000, 9999)}",
                "owners": [f"user{rnd.randint(1, 500)}"],
                "groups": [f"proposal-{rnd.randint(1, 2000)}"],
                "keywords": rnd.sample(WORDS, 2),
                "sample": sample,
                "creation_date": created,
                "release_date": created + timedelta(days=1095) if embargoed else created,
                "is_public": not embargoed,
                "size": int(10 ** rnd.uniform(5, 12.5)),
                "file_count": rnd.randint(1, 5000),
            }
        )
        for t in rnd.sample(techniques, rnd.choice((1, 1, 2, 3))):
            links.append((i, t))
    return rows, links


def fill(url: str, n: int) -> float:
    db.upgrade(url)
    engine = db.make_engine(url)
    rows, links = generate(n)
    began = time.perf_counter()
    with engine.begin() as conn:
        terms = sorted({t for _, t in links})
        conn.execute(insert(Technique), [{"panet_id": t, "label": panet.label(t) or t} for t in terms])
        ids = dict(conn.execute(select(Technique.panet_id, Technique.id)).all())
        defaults = {"location": None, "preview": "", "probe": "", "views": 0, "launches": 0, "end_date": None}
        for chunk in range(0, len(rows), 5000):
            conn.execute(insert(Dataset), [{**defaults, **r} for r in rows[chunk : chunk + 5000]])
        conn.execute(
            insert(dataset_techniques), [{"dataset_id": d, "technique_id": ids[t]} for d, t in links]
        )
        if engine.dialect.name == "postgresql":  # ids were given: later rows take the next ones
            conn.execute(
                text("SELECT setval(pg_get_serial_sequence('datasets', 'id'), max(id)) FROM datasets")
            )
    if engine.dialect.name == "sqlite":
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    else:
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE")
    engine.dispose()
    return time.perf_counter() - began


def text_queries(rnd: random.Random, count: int) -> list[str]:
    """Half domain words and phrases (in 2-15 % of records), half description words of rank
    20 to 2000 (0.05-5 %), as people search for a sample, a material or a method."""
    rare = ranked_words()
    return [rnd.choice(TEXT_QUERIES) if i % 2 else rare[rnd.randint(20, 2000)] for i in range(count)]


def scenarios(rnd: random.Random, count: int) -> dict[str, list[SearchQuery]]:
    def two_facets() -> tuple:
        facility = rnd.choice(list(FACILITIES))
        picks = [
            ("facility", (facility,)),
            rnd.choice(
                [
                    ("technique", (rnd.choice(["PaNET01124", "PaNET01216", "PaNET01245", "PaNET01129"]),)),
                    ("data_type", ("raw",)),
                    ("year", (str(rnd.randint(2016, 2025)),)),
                    ("access", ("open",)),
                ]
            ),
        ]
        return tuple(sorted(picks))

    return {
        "text + 2 facets": [SearchQuery(t, two_facets()) for t in text_queries(rnd, count)],
        "text only": [SearchQuery(t) for t in text_queries(rnd, count)],
        "2 facets, no text": [SearchQuery("", two_facets()) for _ in range(count)],
        "landing page (no filter)": [SearchQuery() for _ in range(max(5, count // 10))],
    }


def _p50_p95(values: list[float]) -> tuple[float, float]:
    values = sorted(values)
    return statistics.median(values), values[min(len(values) - 1, int(len(values) * 0.95))]


def measure(
    url: str, queries: dict[str, list[SearchQuery]], cache: search.FacetCache | None = None
) -> dict[str, tuple[float, float, float, float, int]]:
    """Per scenario: wall-clock p50 and p95, CPU p50 and p95 (ms: the searching thread's, which
    with SQLite includes the database's work, and, with PostgreSQL on this machine, its server
    process's, so the figure shows the cost without the machine's other load; a missed word
    scored in the background for later searches is not counted) and the mean total. Each query
    in a fresh session."""
    engine = db.make_engine(url)
    sessions = db.session_factory(engine)
    out = {}
    try:
        with sessions() as session:  # as in a running portal: the facet index is built, and
            index = facet_index.current(session)  # its frequent words scored
            if index is not None:
                index.words.wait()
        for name, batch in queries.items():
            wall, cpu, total = [], [], 0
            for q in batch:
                with sessions() as session:
                    server = _server_cpu(session)
                    began, began_cpu, began_server = time.perf_counter(), time.thread_time(), server()
                    result = search.search_datasets(session, q, ANONYMOUS, cache=cache)
                    wall.append((time.perf_counter() - began) * 1000)
                    cpu.append((time.thread_time() - began_cpu + server() - began_server) * 1000)
                total += result.total
            out[name] = (*_p50_p95(wall), *_p50_p95(cpu), total // len(batch))
    finally:
        facet_index.forget(engine)
        engine.dispose()
    return out


def index_build(url: str) -> tuple[float, float, float, int, int]:
    """CPU ms to read the facet columns into the facet index (``data_mounts/facet_index.py``),
    then the seconds and this process's CPU ms to score its frequent terms in the background
    (``data_mounts/text_scores.py``; PostgreSQL's part runs in its server), the terms scored and
    the bytes they take."""
    engine = db.make_engine(url)
    try:
        with db.session_factory(engine)() as session:
            began = time.process_time()
            facet_index.build(session, 0)
            built = (time.process_time() - began) * 1000
            index = facet_index.current(session)
            words = index.words if index is not None else None
            if words is None or not words.wait():
                return built, 0.0, 0.0, 0, 0
            return built, words.elapsed, words.spent * 1000, len(words) // 2, words.nbytes
    finally:
        facet_index.forget(engine)
        engine.dispose()


def _server_cpu(session) -> Callable[[], float]:
    """Seconds of CPU the session's PostgreSQL backend has used (``/proc/PID/schedstat``, in
    nanoseconds: the server runs on this machine); 0 for SQLite, which works in this process."""
    if session.get_bind().dialect.name != "postgresql":
        return lambda: 0.0
    stat = Path(f"/proc/{session.scalar(text('SELECT pg_backend_pid()'))}/schedstat")
    return lambda: int(stat.read_text().split()[0]) / 1e9


def page_weight(url: str) -> int:
    """Bytes of a rendered /datasets page (20 cards, facets) plus its two style sheets."""
    from tornado import template

    from panbinder.web.formatting import human_size
    from panbinder.web.handlers.search import Links, pages
    from panbinder.web.urls import path_segment

    web = Path(__file__).resolve().parents[1] / "web"
    engine = db.make_engine(url)
    try:
        with db.session_factory(engine)() as session:
            query = SearchQuery("vesicles")
            from panbinder.web.api.search import dataset_card, facets_json

            result = search.search_datasets(session, query, ANONYMOUS)
            found = {
                "total": result.total,
                "items": [dataset_card(d, ANONYMOUS, "/", "https://portal.example/") for d in result.items],
                "facets": facets_json(result),
            }
    finally:
        facet_index.forget(engine)
        engine.dispose()
    loader = template.Loader(str(web / "templates"))
    html = loader.load("datasets.html").generate(
        query=query,
        found=found,
        links=Links("/datasets", query, "/api/search/datasets"),
        pages=pages(found["total"], query),
        sorts=search_sorts(),
        per_pages=(10, 20, 50, 100),
        facet_labels={},
        who=ANONYMOUS,
        base_url="/",
        path_segment=path_segment,
        human_size=human_size,
        static_url=lambda name: f"/static/{name}",
    )
    css = sum((web / "static" / name).stat().st_size for name in ("style.css", "search.css"))
    return len(html) + css


def search_sorts() -> tuple[str, ...]:
    from panbinder.data_mounts.search_query import DATASET_SORTS

    return DATASET_SORTS


def report(label: str, url: str, n: int, count: int) -> None:
    seconds = fill(url, n)
    print(f"{label}: {n} datasets written in {seconds:.1f} s (index kept by the database)")
    runs = scenarios(random.Random(7), count)
    # the same queries again through the portal's cache (``Catalogue.search_cache_seconds``, 30 s),
    # one per scenario, starting empty: a text's ranked matches are kept (its first search pays
    # the ranking), counts of a repeated query too; any write a search reads drops them
    runs |= {f"{name}, portal cache": batch for name, batch in list(runs.items())[:3]}
    runs["landing page, counts cached"] = [SearchQuery()] * 20
    built, seconds, scored, words, size = index_build(url)
    print(f"  facet index built in {built:.0f} ms of CPU (the first search after a write)")
    if words:
        print(
            f"  then {words} frequent terms scored in the background in {seconds:.1f} s "
            f"({scored:.0f} ms of CPU in this process, {size / 2**20:.0f} MiB)"
        )
    print(f"  {'':36s} {'wall p50':>9s} {'p95':>8s} {'cpu p50':>9s} {'p95':>8s}  mean total")
    for name, batch in runs.items():
        cached = search.FacetCache(30.0) if "cache" in name else None
        p50, p95, c50, c95, hits = measure(url, {name: batch}, cached)[name]
        print(f"  {name:36s} {p50:7.1f} ms {p95:5.1f} ms {c50:7.1f} ms {c95:5.1f} ms  {hits}", flush=True)
    print(f"  page weight (HTML + CSS): {page_weight(url) / 1000:.1f} kB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        report("SQLite", db.default_url(tmp), args.datasets, args.queries)
        if args.postgres:
            from tests.postgres import temporary_cluster

            with temporary_cluster() as url:
                report("PostgreSQL", url, args.datasets, args.queries)


if __name__ == "__main__":
    main()
