"""Faceted search of datasets and publications, and their view and launch counters.

Text goes through the database's full-text index (``fts.py``); facets are counted by the
database with every other facet's filter applied but not their own (AND across facets, OR
within one), so a facet shows what choosing another of its values would add. The technique
facet follows PaNET: a term counts every dataset with that term or a narrower one, each dataset
once however many of its terms sit below it (datasets are grouped by their set of terms, and
each set adds its count to the union of its terms' ancestors). The analysis template facet
counts, per template, the datasets it fits (``analysis_templates.fits_clause``).

The counts are made in memory from the facet index (``facet_index.py``) whenever the catalogue
has one at its current write version, and in SQL otherwise (``_sql_counts``); both give the same
values. A text search's page is ranked from the rows the index says the search keeps: by its
terms' ranks, which the database computes once per catalogue version and which are kept beside
the index (``text_scores.py``), else the database scores only those rows (FTS5 would score
every match before the filters; PostgreSQL every match it joins).
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import (
    Integer,
    String,
    and_,
    any_,
    bindparam,
    case,
    cast,
    func,
    literal,
    literal_column,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.sql.elements import ColumnElement

from . import facet_index, fts, panet, text_scores
from .access import Identity
from .analysis_templates import fits_clause
from .models import Dataset, Publication, Technique
from .models import publication_datasets as links
from .search_cache import FacetCache, Stamp, stamp
from .search_filters import (
    filter_clause,
    fts5_ranks,
    open_clause,
    pg_rank,
    text_condition,
    text_match,
    where_clauses,
    year_of,
)
from .search_query import FACETS, SIZE_BUCKETS, SearchQuery
from .template_models import AnalysisTemplate

FACET_LIMIT = 12  # values shown per facet (selected values always are)
TECHNIQUE_LIMIT = 25  # a technique brings its broader terms along
TEMPLATE_LIMIT = 100  # analysis templates counted in the template facet
ROOT_TERMS = 100  # PaNET00001..00099 are the ontology's axes, not techniques
RANK_KEPT = 20_000  # kept rows named to the database for scoring; more: FTS5 scores all and they
# are picked, PostgreSQL ranks the search in SQL


@dataclass(frozen=True)
class FacetValue:
    value: str
    label: str
    count: int
    selected: bool


@dataclass
class SearchResult:
    total: int
    items: list[Any]
    facets: dict[str, list[FacetValue]] = field(default_factory=dict)


@functools.cache
def ancestors(panet_id: str) -> frozenset[str]:
    """The term and every broader term."""
    out, todo = {panet_id}, [panet_id]
    terms = panet.terms()
    while todo:
        term = terms.get(todo.pop())
        for parent in term.parents if term else ():
            if parent not in out:
                out.add(parent)
                todo.append(parent)
    return frozenset(out)


def technique_counts(signatures: list[tuple[tuple[str, ...], int]]) -> Counter:
    """Datasets per PaNET term, narrower terms included, from (set of terms, datasets) pairs."""
    counts: Counter = Counter()
    for terms, n in signatures:
        covered = set().union(*(ancestors(t) for t in terms)) if terms else set()
        for term in covered:
            counts[term] += n
    return counts


# facets ------------------------------------------------------------------------------------
#
# One statement counts every facet: a materialised CTE ``base`` holds the rows that pass the
# text (and "mine") with their facet columns and one 0/1 flag per selected facet; each facet is
# a GROUP BY over ``base`` with the other facets' flags, glued with UNION ALL, plus the total.
# The text match and the technique filter run once instead of once per facet.


def _size_bucket(now: datetime) -> ColumnElement:
    """The size bucket of an open dataset; NULL (not counted) for an embargoed one."""
    bucket = case(
        *((Dataset.size < high, name) for name, _l, _low, high in SIZE_BUCKETS if high is not None),
        else_=SIZE_BUCKETS[-1][0],
    )
    return case((open_clause(now), bucket), else_=None)


def _counted(flags: dict[str, ColumnElement]) -> list[ColumnElement]:
    """The rows any count needs: with n facets chosen, a row failing two of them counts nowhere
    (each facet's values are counted with the other facets' filters). Two facets: A OR B, which
    the database can answer from their indexes; more: at least n - 1 of them. On 100,000
    datasets with a facility and a year chosen and no words, this keeps 2 rows in 10."""
    if len(flags) < 2:
        return []
    clauses = list(flags.values())
    if len(clauses) == 2:
        return [or_(*clauses)]
    held = sum((case((c, 1), else_=0) for c in clauses[1:]), case((clauses[0], 1), else_=0))
    return [held >= len(clauses) - 1]


def _count_statement(
    session: Session, query: SearchQuery, who: Identity, now: datetime, matched, templates=()
):
    flags = {facet: filter_clause(facet, values, now) for facet, values in query.filters if values}
    columns = {
        "data_type": Dataset.data_type,
        "field": Dataset.scientific_field,
        "facility": Dataset.facility,
        "instrument": Dataset.instrument,
        "year": year_of(Dataset.creation_date, session.get_bind().dialect.name),
        "size": _size_bucket(now),
        "access": case((open_clause(now), "open"), else_="embargoed"),
    }
    base_columns = [Dataset.id.label("id"), Dataset.technique_key.label("technique_key")]
    base_columns += [c.label(f"v_{n}") for n, c in columns.items()]
    base_columns += [case((clause, 1), else_=0).label(f"m_{f}") for f, clause in flags.items()]
    base = select(*base_columns).where(
        *where_clauses(session, SearchQuery(mine=query.mine), who, now, "", matched), *_counted(flags)
    )
    base = base.cte("base").prefix_with("MATERIALIZED")

    def passing(skip: str) -> list[ColumnElement]:
        return [base.c[f"m_{f}"] == 1 for f in flags if f != skip]

    total = select(literal("", String).label("facet"), literal("", String), func.count()).select_from(base)
    branches = [total.where(*passing(""))]
    for name in columns:
        value = cast(base.c[f"v_{name}"], String)
        branches.append(
            select(literal(name, String), value, func.count()).where(*passing(name)).group_by(value)
        )
    key = base.c.technique_key  # the set of terms, kept by the database (revision 0005)
    branches.append(
        select(literal("technique", String), key, func.count()).where(*passing("technique")).group_by(key)
    )
    for template_id, name in templates:  # each template counts the open datasets it fits
        fits = and_(base.c.v_access == "open", fits_clause(base.c.id, template_id))
        branches.append(
            select(literal("template", String), literal(name, String), func.count()).where(
                *passing("template"), fits
            )
        )
    return union_all(*branches)


def _ordered(facet: str, found: dict[str, int]) -> list[tuple[str, str, int]]:
    if facet == "year":
        return sorted(((y, y, n) for y, n in found.items()), reverse=True)
    if facet == "size":
        return [(name, label, found[name]) for name, label, _l, _h in SIZE_BUCKETS if name in found]
    if facet == "access":
        return [(v, v, found[v]) for v in ("open", "embargoed") if v in found]
    if facet == "technique":
        items = [(t, panet.label(t) or t, n) for t, n in found.items() if int(t[5:]) >= ROOT_TERMS]
    else:
        items = [(v, v, n) for v, n in found.items()]
    return sorted(items, key=lambda v: (-v[2], v[1].lower()))


@dataclass
class Indexed:
    """A search's rows in the facet index: the index, and the rows its text and "mine" keep."""

    index: facet_index.FacetIndex
    base: Any  # numpy mask, or None for every row


def indexed(session: Session, query: SearchQuery, who: Identity, now: datetime, matched) -> Indexed | None:
    """The search's text and "mine" rows in the facet index (None: the database has none now):
    on SQLite the text's rows come from the FTS5 row ids, else they are asked in SQL."""
    index = facet_index.current(session)
    if index is None:
        return None
    text = facet_index.text_rows(session, index, query.q, now) if matched is not None else None
    conds = where_clauses(
        session, SearchQuery(mine=query.mine), who, now, "", None if text is not None else matched
    )
    base = facet_index.conditions_met(session, index, and_(*conds)) if conds else None
    if text is not None:
        base = text if base is None else text & base
    return Indexed(index, base)


def count_facets(
    session: Session, query: SearchQuery, who: Identity, now: datetime, matched, rows: Indexed | None = None
) -> tuple[int, dict[str, list[tuple[str, str, int]]]]:
    """The total and, per facet, (value, label, count) most frequent first: in memory from the
    catalogue's facet index (``facet_index.py``) when it has one, else in SQL."""
    titles = dict(session.execute(select(AnalysisTemplate.name, AnalysisTemplate.title)).all())
    templates = session.execute(
        select(AnalysisTemplate.id, AnalysisTemplate.name).limit(TEMPLATE_LIMIT)
    ).all()
    rows = rows or indexed(session, query, who, now, matched)
    if rows is not None:  # only the rows of the text and "mine" were asked of the database
        total, raw = facet_index.count(session, rows.index, query, now, rows.base, list(templates))
    else:
        total, raw = _sql_counts(session, query, who, now, matched, templates)
    counted = {f: _ordered(f, raw.get(f, {})) for f in FACETS}
    counted["template"] = [(v, titles.get(v) or v, n) for v, _label, n in counted["template"]]
    return total, counted


def _sql_counts(
    session: Session, query: SearchQuery, who: Identity, now: datetime, matched, templates
) -> tuple[int, dict[str, dict[str, int]]]:
    raw: dict[str, dict[str, int]] = {f: {} for f in FACETS}
    total, signatures = 0, []
    for facet, value, n in session.execute(_count_statement(session, query, who, now, matched, templates)):
        if facet == "":
            total = n
        elif facet == "technique":
            signatures.append((value, n))
        elif value not in (None, "") and n:
            raw[facet][value] = raw[facet].get(value, 0) + n
    names = dict(session.execute(select(Technique.id, Technique.panet_id)).all())
    parsed = [
        (tuple(names[int(i)] for i in str(sig).split(",") if int(i) in names), n)
        for sig, n in signatures
        if sig
    ]
    raw["technique"] = dict(technique_counts(parsed))
    return total, raw


def facets(
    counted: dict[str, list[tuple[str, str, int]]], query: SearchQuery, limit: int = FACET_LIMIT
) -> dict[str, list[FacetValue]]:
    """The values to show per facet: the most frequent, and the chosen ones always."""
    out = {}
    for facet in FACETS:
        chosen = query.selected(facet)
        values = counted[facet]
        top = max(limit, TECHNIQUE_LIMIT) if facet == "technique" else limit
        shown = values[:top] + [v for v in values[top:] if v[0] in chosen]
        listed = {v[0] for v in shown}
        shown += [
            (c, panet.label(c) or c if facet == "technique" else c, 0) for c in chosen if c not in listed
        ]
        out[facet] = [FacetValue(v, label, n, v in chosen) for v, label, n in shown]
    return out


# searches ----------------------------------------------------------------------------------

DATASET_ORDER = {
    "newest": (Dataset.creation_date.desc(), Dataset.id.desc()),
    "oldest": (Dataset.creation_date.asc(), Dataset.id.asc()),
    "title": (func.lower(Dataset.title), Dataset.id),
    "views": (Dataset.views.desc(), Dataset.id),
    "launches": (Dataset.launches.desc(), Dataset.id),
}


def dataset_order(name: str, now: datetime) -> tuple:
    """ORDER BY for a sort name; "largest" puts embargoed datasets, whose size is not shown,
    after every open one (in PID order), so their place tells nothing about their size."""
    if name == "largest":
        shown = case((open_clause(now), Dataset.size), else_=-1)
        return (shown.desc(), Dataset.pid, Dataset.id)
    return DATASET_ORDER.get(name, DATASET_ORDER["newest"])


def search_datasets(
    session: Session,
    query: SearchQuery,
    who: Identity,
    *,
    now: datetime | None = None,
    with_facets: bool = True,
    facet_limit: int = FACET_LIMIT,
    cache: FacetCache | None = None,
) -> SearchResult:
    """One page of datasets matching ``query``, the total and the facet counts (counts and a
    text's ranked matches from ``cache`` while the catalogue has not changed)."""
    now = now or datetime.now(UTC)
    matched = text_condition(session, "datasets", query.q, now)
    conds = where_clauses(session, query, who, now, "", matched)
    current = stamp(session, now) if cache is not None else None
    dialect = session.get_bind().dialect.name
    sqlite = dialect == "sqlite"
    relevance = query.order == "relevance" and matched is not None
    rows = functools.cache(lambda: indexed(session, query, who, now, matched))
    if with_facets:
        key = FacetCache.key(query, who)
        cached = cache.get(key, current, now) if cache is not None else None
        total, counted = cached or count_facets(session, query, who, now, matched, rows())
        if cache is not None and cached is None:
            cache.put(key, (total, counted), current)
    else:
        total = session.scalar(select(func.count()).select_from(Dataset).where(*conds)) or 0
    items: list[Dataset] | None = None
    if relevance and dialect in RANKED_KEPT and rows() is not None:
        # the facet index knows the rows the search keeps: ranked from its terms' kept ranks,
        # else the database ranks those rows only
        kept, is_open = facet_index.kept(session, rows().index, query, now, rows().base)
        items = _ranked_page(session, query, rows().index, kept, is_open, now)
    if items is None and relevance:
        # a kept ranking saves scoring every match again
        if sqlite and cache is not None and current is not None and current.version is not None:
            ids = _ranked_ids(session, query, now, cache, current)
            items = _page_of(session, ids, where_clauses(session, query, who, now), query, total)
        else:  # the ranked match replaces the plain one
            ranked = text_match(session, "datasets", query.q, now=now)
            stmt = select(Dataset).join(ranked, ranked.c.id == Dataset.id)
            stmt = stmt.where(*where_clauses(session, query, who, now))
            stmt = stmt.order_by(ranked.c.rank, Dataset.id)
            items = _load(session, stmt.limit(query.per_page).offset((query.page - 1) * query.per_page))
    elif items is None:
        stmt = select(Dataset).where(*conds).order_by(*dataset_order(query.order, now))
        items = _load(session, stmt.limit(query.per_page).offset((query.page - 1) * query.per_page))
    result = SearchResult(total, items)
    if with_facets:
        result.facets = facets(counted, query, facet_limit)
    return result


def _ranked_page(
    session: Session,
    query: SearchQuery,
    index: facet_index.FacetIndex,
    kept: np.ndarray,
    is_open: np.ndarray,
    now: datetime,
) -> list[Dataset] | None:
    """The page of the ``kept`` rows in rank order (then id): from the terms' kept ranks
    (``text_scores.py``) when every term has them, else ranked by the database (``RANKED_KEPT``);
    None when there are too many rows to name (ranked in SQL then)."""
    scored = text_scores.lookup(session, index.words, query.q)
    if scored is None:
        found = (index.ids[kept & is_open], index.ids[kept & ~is_open])
        return RANKED_KEPT[session.get_bind().dialect.name](session, query, found, now)
    start = (query.page - 1) * query.per_page
    return _cards(session, text_scores.ranked(scored, index.ids, kept, is_open, start, query.per_page))


def _cards(session: Session, wanted: list[int]) -> list[Dataset]:
    """The datasets ``wanted``, in that order."""
    rows = {d.id: d for d in _load(session, select(Dataset).where(Dataset.id.in_(wanted)))} if wanted else {}
    return [rows[i] for i in wanted if i in rows]


def _ranked_kept(session: Session, query: SearchQuery, found: tuple, now: datetime) -> list[Dataset]:
    """The page of the kept rows (open, embargoed ids) in rank order, as ``text_match`` ranks
    them: an open dataset by all its columns, an embargoed one by the columns it shows. Up to
    ``RANK_KEPT`` ids are named to the index; more, and every match is scored and the kept ones
    taken, which saves joining each match to its dataset row."""
    match = fts.fts5_query(fts.parse_terms(query.q))
    ids, ranks = [], []
    for kept, terms in zip(found, (match, fts.fts5_visible(match, "datasets")), strict=True):
        if not len(kept):
            continue
        named = kept.tolist() if len(kept) <= RANK_KEPT else None
        pairs = np.array(fts5_ranks(session, "datasets", terms, named), dtype=np.float64).reshape(-1, 2)
        chosen = _among(pairs[:, 0].astype(np.int64), kept) if named is None else slice(None)
        ids.append(pairs[chosen, 0].astype(np.int64))
        ranks.append(pairs[chosen, 1])
    if not ids:
        return []
    all_ids, all_ranks = np.concatenate(ids), np.concatenate(ranks)
    order = np.lexsort((all_ids, all_ranks))  # rank, then id
    start = (query.page - 1) * query.per_page
    return _cards(session, [int(i) for i in all_ids[order[start : start + query.per_page]]])


def _ranked_kept_postgres(
    session: Session, query: SearchQuery, found: tuple, now: datetime
) -> list[Dataset] | None:
    """The page of the kept rows (open, embargoed ids) in rank order, as ``text_match`` ranks
    them, the server scoring only those rows; None for more than ``RANK_KEPT`` of them."""
    ids = np.concatenate(found)
    if len(ids) > RANK_KEPT:
        return None
    if not len(ids):
        return []
    terms = fts.parse_terms(query.q)
    vector = case(
        (open_clause(now), literal_column("datasets.search_vector")),
        else_=literal_column(f"datasets.{fts.SHOWN}"),
    )
    rank = pg_rank(vector, terms)
    wanted = bindparam("kept", ids.tolist(), type_=postgresql.ARRAY(Integer))
    stmt = select(Dataset.id).where(Dataset.id == any_(wanted)).order_by(rank, Dataset.id)
    stmt = stmt.limit(query.per_page).offset((query.page - 1) * query.per_page)
    return _cards(session, list(session.scalars(stmt)))


RANKED_KEPT = {"sqlite": _ranked_kept, "postgresql": _ranked_kept_postgres}


def _among(ids: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """Which of ``ids`` are in ``kept`` (ascending, as the facet index lists them)."""
    at = np.minimum(np.searchsorted(kept, ids), len(kept) - 1)
    return kept[at] == ids


def _load(session: Session, stmt) -> list[Dataset]:
    stmt = stmt.options(selectinload(Dataset.techniques), selectinload(Dataset.publications))
    return list(session.scalars(stmt))


def _ranked_ids(
    session: Session, query: SearchQuery, now: datetime, cache: FacetCache, current: Stamp
) -> tuple[int, ...]:
    """Every id matching the text, best first (as the ranked page orders them), kept per text."""
    key = ("datasets", tuple(fts.parse_terms(query.q)))
    ids = cache.ranked(key, current, now)
    if ids is None:
        ranked = text_match(session, "datasets", query.q, now=now)
        ids = tuple(session.scalars(select(ranked.c.id).order_by(ranked.c.rank, ranked.c.id)))
        cache.put_ranked(key, ids, current)
    return ids


def _page_of(session: Session, ids: tuple[int, ...], conds: list, query: SearchQuery, total: int) -> list:
    """The query's page from the ranked ``ids``: the ids passing ``conds`` are found a growing
    chunk at a time (a chosen facet keeps about one in ten), stopping at the page's end or
    when all ``total`` are found."""
    end, start = query.page * query.per_page, (query.page - 1) * query.per_page
    found: list[int] = []
    position, chunk = 0, max(500, 4 * end)
    while position < len(ids) and len(found) < min(end, total or len(ids)):
        part = ids[position : position + chunk]
        passing = set(session.scalars(select(Dataset.id).where(Dataset.id.in_(part), *conds)))
        found += [i for i in part if i in passing]
        position, chunk = position + len(part), min(chunk * 4, 20_000)
    wanted = found[start:end]
    if not wanted:
        return []
    rows = {d.id: d for d in _load(session, select(Dataset).where(Dataset.id.in_(wanted)))}
    return [rows[i] for i in wanted if i in rows]


PUBLICATION_ORDER = {
    "newest": (Publication.year.desc(), Publication.created.desc(), Publication.id.desc()),
    "oldest": (Publication.year.asc(), Publication.created.asc(), Publication.id),
    "title": (func.lower(Publication.title), Publication.id),
    "views": (Publication.views.desc(), Publication.id),
    "launches": (Publication.launches.desc(), Publication.id),
}


def search_publications(session: Session, query: SearchQuery) -> SearchResult:
    """One page of publications matching ``query`` (text and year) and the year facet."""
    ids = text_match(session, "publications", query.q)
    base = [Publication.id.in_(select(ids.c.id))] if ids is not None else []
    years = [int(y) for y in query.selected("year")]
    conds = [*base, Publication.year.in_(years)] if years else base
    total = session.scalar(select(func.count()).select_from(Publication).where(*conds)) or 0
    stmt = select(Publication).where(*conds).options(selectinload(Publication.datasets))
    if query.order == "relevance" and ids is not None:
        stmt = stmt.join(ids, ids.c.id == Publication.id).order_by(ids.c.rank, Publication.id)
    else:
        stmt = stmt.order_by(*PUBLICATION_ORDER.get(query.order, PUBLICATION_ORDER["newest"]))
    stmt = stmt.limit(query.per_page).offset((query.page - 1) * query.per_page)
    items = list(session.scalars(stmt))
    counted = session.execute(
        select(Publication.year, func.count())
        .where(*base, Publication.year.is_not(None))
        .group_by(Publication.year)
    ).all()
    chosen = query.selected("year")
    values = [FacetValue(str(y), str(y), n, str(y) in chosen) for y, n in sorted(counted, reverse=True)]
    return SearchResult(total, items, {"year": values})


# counters ----------------------------------------------------------------------------------


def count_dataset_view(session: Session, pid: str) -> None:
    """One more view of a dataset (its ``updated`` time and search index stay as they are)."""
    session.execute(
        update(Dataset).where(Dataset.pid == pid).values(views=Dataset.views + 1, updated=Dataset.updated)
    )


def count_publication_view(session: Session, doi: str) -> None:
    session.execute(update(Publication).where(Publication.doi == doi).values(views=Publication.views + 1))


def count_launch(session: Session, doi: str) -> None:
    """One more launch of a publication and of each of its datasets."""
    session.execute(
        update(Publication).where(Publication.doi == doi).values(launches=Publication.launches + 1)
    )
    pub_ids = select(Publication.id).where(Publication.doi == doi).scalar_subquery()
    datasets = select(links.c.dataset_id).where(links.c.publication_id == pub_ids)
    session.execute(
        update(Dataset)
        .where(Dataset.id.in_(datasets))
        .values(launches=Dataset.launches + 1, updated=Dataset.updated)
        .execution_options(synchronize_session=False)
    )


def count_dataset_launches(session: Session, pids: list[str]) -> None:
    """One more launch of each dataset (an analysis template's launch)."""
    session.execute(
        update(Dataset)
        .where(Dataset.pid.in_(pids))
        .values(launches=Dataset.launches + 1, updated=Dataset.updated)
        .execution_options(synchronize_session=False)
    )
