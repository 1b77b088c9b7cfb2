"""Search filters: the full-text match on each database, facet values as SQL conditions, and
"my datasets" (what a reader owns or reaches through a group or proposal, as ``access.may_access``).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

from sqlalchemy import (
    Float,
    Integer,
    String,
    and_,
    case,
    cast,
    extract,
    false,
    func,
    literal,
    literal_column,
    or_,
    select,
    text,
    true,
    union_all,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from . import fts, panet
from .access import Identity
from .analysis_templates import named_clause
from .models import Dataset, Publication, Technique, dataset_techniques
from .search_query import SIZE_BUCKETS, SearchQuery


def text_match(session: Session, table: str, q: str, ranked: bool = True, now: datetime | None = None):
    """(id, rank) rows matching ``q`` through the dialect's index; None when ``q`` has no terms.

    Lower rank is better on every dialect; ``ranked=False`` leaves the rank out (0), which
    saves scoring every match when only the set matters (filters, counts). A dataset embargoed
    at ``now`` matches only through the columns it shows (``fts.EMBARGOED_HIDDEN``): its
    sample name, read from its files, neither finds it nor, as an excluded word, hides it."""
    terms = fts.parse_terms(q)
    if not terms:
        return None
    now = now or datetime.now(UTC)
    dialect = session.get_bind().dialect.name
    hidden = fts.EMBARGOED_HIDDEN[table]
    if dialect == "sqlite":
        match = fts.fts5_query(terms)
        if not match:
            return None
        if not hidden:
            return _fts5_rows(table, match, ranked, "match").subquery("fts")
        full = _fts5_rows(table, match, ranked, "match_open").subquery("fts_open")
        shown = _fts5_rows(table, fts.fts5_visible(match, table), ranked, "match_shown").subquery("fts_shown")
        return union_all(
            select(full.c.id, full.c.rank).join(Dataset, Dataset.id == full.c.id).where(open_clause(now)),
            select(shown.c.id, shown.c.rank)
            .join(Dataset, Dataset.id == shown.c.id)
            .where(embargoed_clause(now)),
        ).subquery("fts")
    model = Dataset if table == "datasets" else Publication
    if dialect == "postgresql":
        tsq = _pg_tsquery(terms)
        vector = literal_column(f"{table}.search_vector")
        cond = vector.op("@@")(tsq)
        if fts.postgres_visible_vector(table):  # an embargoed row: its stored shown vector
            shown = literal_column(f"{table}.{fts.SHOWN}")
            cond = and_(
                or_(cond, shown.op("@@")(tsq)),  # both GIN indexes find the candidates
                or_(and_(open_clause(now), cond), and_(embargoed_clause(now), shown.op("@@")(tsq))),
            )
            vector = case((open_clause(now), vector), else_=shown)
        rank = (pg_rank(vector, terms) if ranked else literal_column("0.0")).label("rank")
        return select(model.id.label("id"), rank).where(cond).subquery("fts")
    columns = fts.SQLITE_TABLES[table][0]  # any other database: LIKE, unranked
    conds = []
    for t in terms:
        hit = or_(
            *(getattr(model, c).icontains(t.text, autoescape=True) for c in columns if c not in hidden),
            *(and_(open_clause(now), getattr(model, c).icontains(t.text, autoescape=True)) for c in hidden),
        )
        conds.append(~hit if t.exclude else hit)
    return select(model.id.label("id"), literal_column("0.0").label("rank")).where(*conds).subquery("fts")


def text_condition(session: Session, table: str, q: str, now: datetime) -> ColumnElement | None:
    """``q`` as a condition on the rows of ``table`` (unranked); None when ``q`` has no terms.

    For counts, totals and filters: on SQLite each candidate row is read once (the embargo
    check and the facets share the read), where joining ``text_match``'s ranked union read
    every match three times. An embargoed row matches through its shown columns only, as in
    ``text_match``; without excluded words those matches are a subset of the full ones."""
    terms = fts.parse_terms(q)
    dialect = session.get_bind().dialect.name
    if not terms or dialect != "sqlite":
        found = text_match(session, table, q, ranked=False, now=now)
        if found is None:
            return None
        model = Dataset if table == "datasets" else Publication
        return model.id.in_(select(found.c.id))
    match = fts.fts5_query(terms)
    if not match:
        return None
    model = Dataset if table == "datasets" else Publication
    full = select(_fts5_rows(table, match, False, "match_all").subquery("fts_all").c.id)
    if not fts.EMBARGOED_HIDDEN[table]:
        return model.id.in_(full)
    visible = fts.fts5_visible(match, table)
    shown = select(_fts5_rows(table, visible, False, "match_visible").subquery("fts_visible").c.id)
    if not any(t.exclude for t in terms):
        return and_(model.id.in_(full), or_(open_clause(now), model.id.in_(shown)))
    either = union_all(full, shown).subquery("fts_either")
    return and_(
        model.id.in_(select(either.c.id)),
        or_(and_(open_clause(now), model.id.in_(full)), and_(embargoed_clause(now), model.id.in_(shown))),
    )


def year_of(column: ColumnElement, dialect: str) -> ColumnElement:
    """The year of a date column as an integer (SQLite stores 'YYYY-MM-DD ...' text: its first
    four characters, without parsing the date on every row as ``strftime`` does)."""
    if dialect == "sqlite":
        return cast(func.substr(column, 1, 4), Integer)
    return cast(extract("year", column), Integer)


def _fts5_rows(table: str, match: str, ranked: bool, param: str):
    weights = ", ".join(str(w) for w in fts.SQLITE_TABLES[table][1])
    score = f"bm25({table}_fts, {weights})" if ranked else "0.0"
    sql = text(f"SELECT rowid AS id, {score} AS rank FROM {table}_fts WHERE {table}_fts MATCH :{param}")
    return sql.bindparams(**{param: match}).columns(id=Integer, rank=Float)


def fts5_ranks(session: Session, table: str, match: str, ids: list[int] | None) -> list[tuple[int, float]]:
    """(id, bm25 rank) of the rows ``match`` finds among ``ids`` (None: all of them), on SQLite.
    FTS5 scores every row it returns before any join, so scoring only the rows a search keeps
    (a chosen facet keeps one match in ten) saves the rest; ``+rowid`` stops FTS5 from running
    one MATCH per id."""
    weights = ", ".join(str(w) for w in fts.SQLITE_TABLES[table][1])
    sql = f"SELECT rowid, bm25({table}_fts, {weights}) FROM {table}_fts WHERE {table}_fts MATCH ?"
    args: tuple = (match,)
    if ids is not None:
        sql, args = sql + " AND +rowid IN (SELECT value FROM json_each(?))", (match, json.dumps(ids))
    cursor = session.connection().connection.cursor()
    try:
        return cursor.execute(sql, args).fetchall()
    finally:
        cursor.close()


def _pg_text(t: fts.Term) -> str:
    """A term's words split at punctuation as the index splits them (a phrase when several)."""
    words = " ".join(re.split(r"[^\w]+", t.text)).strip()
    return f'"{words}"' if " " in words else words


def _pg_prefix(t: fts.Term) -> str:
    """A prefix term's first word as ``word:*`` ('' when it has none)."""
    word = re.sub(r"\W", "", _pg_text(t).strip('"').split(" ")[0]).lower()
    return f"{word}:*" if word else ""


def pg_term(t: fts.Term) -> ColumnElement | None:
    """One included term as a ``tsquery`` (None: a prefix without a word)."""
    if t.prefix:
        prefix = _pg_prefix(t)
        return func.to_tsquery(literal_column("'simple'"), literal(prefix, String)) if prefix else None
    return func.websearch_to_tsquery(literal_column("'english'"), literal(_pg_text(t), String))


def pg_terms(terms: list[fts.Term]) -> list[ColumnElement]:
    """The included terms as ``tsquery``s, in the query's order (as ``pg_rank`` adds them)."""
    return [q for q in (pg_term(t) for t in terms if not t.exclude) if q is not None]


def pg_rank(vector: ColumnElement, terms: list[fts.Term]) -> ColumnElement:
    """A row's rank (lower is better): the sum of its included terms' ``-ts_rank``, in double
    precision and in the query's order. A sum, not one ``ts_rank`` of the whole query, so that
    each term's (row, rank) pairs, kept once (``tsvector_scores.py``), rank every search made
    of it with others, exactly as the database would."""
    parts = [-cast(func.ts_rank(vector, q), Float) for q in pg_terms(terms)]
    if not parts:
        return literal_column("0.0")
    out = parts[0]
    for part in parts[1:]:
        out = out + part
    return out


def _pg_tsquery(terms: list[fts.Term]) -> ColumnElement:
    """``websearch_to_tsquery`` of the words and phrases (it never raises), AND each prefix
    word as ``word:*``; punctuation splits words as it does in the index."""
    plain = [("-" if t.exclude else "") + _pg_text(t) for t in terms if not t.prefix]
    parts = [func.websearch_to_tsquery(literal_column("'english'"), " ".join(plain))] if plain else []
    for t in terms:
        prefix = _pg_prefix(t) if t.prefix else ""
        if prefix:  # an excluded prefix as ``!word:*``
            prefix = ("!" if t.exclude else "") + prefix
            parts.append(func.to_tsquery(literal_column("'simple'"), literal(prefix, String)))
    query = parts[0] if parts else func.websearch_to_tsquery(literal_column("'english'"), "")
    for part in parts[1:]:
        query = query.op("&&")(part)
    return query


def open_clause(now: datetime) -> ColumnElement:
    return or_(Dataset.is_public.is_(True), Dataset.release_date <= now)


def embargoed_clause(now: datetime) -> ColumnElement:
    """Not ``open_clause`` (a dataset with neither flag nor release date is embargoed)."""
    return and_(
        Dataset.is_public.is_not(True), or_(Dataset.release_date.is_(None), Dataset.release_date > now)
    )


def _year_clause(years: tuple[str, ...]) -> ColumnElement:
    spans = []
    for y in years:
        start = datetime(int(y), 1, 1, tzinfo=UTC)
        spans.append(
            and_(Dataset.creation_date >= start, Dataset.creation_date < start.replace(year=start.year + 1))
        )
    return or_(*spans)


def _size_clause(values: tuple[str, ...], now: datetime) -> ColumnElement:
    """Open datasets in the chosen size buckets: an embargoed dataset's size is not shown."""
    parts = []
    for name, _label, low, high in SIZE_BUCKETS:
        if name in values:
            parts.append(
                Dataset.size >= low if high is None else and_(Dataset.size >= low, Dataset.size < high)
            )
    return and_(open_clause(now), or_(*parts))


def _access_clause(values: tuple[str, ...], now: datetime) -> ColumnElement:
    if set(values) >= {"open", "embargoed"}:
        return true()
    if "open" in values:
        return open_clause(now)
    return embargoed_clause(now)


def _technique_clause(values: tuple[str, ...]) -> ColumnElement:
    wanted = sorted(set().union(*(panet.with_descendants(panet.lookup(v) or v) for v in values)))
    ids = (
        select(dataset_techniques.c.dataset_id)
        .join(Technique, Technique.id == dataset_techniques.c.technique_id)
        .where(Technique.panet_id.in_(wanted))
    )
    return Dataset.id.in_(ids)


def _json_has(session: Session, column, values: list[str]) -> ColumnElement:
    """The JSON list ``column`` holds one of ``values``."""
    if not values:
        return false()
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return cast(column, JSONB).op("?|")(postgresql.array(values))
    if dialect == "sqlite":
        each = func.json_each(column).table_valued("value")
        return select(each.c.value).where(each.c.value.in_(values)).exists()
    return or_(*(cast(column, String).contains(f'"{v}"') for v in values))


def mine_clause(session: Session, who: Identity) -> ColumnElement:
    """Datasets ``who`` owns or reaches through a group or proposal (as ``access.may_access``)."""
    if who.anonymous:
        return false()
    groups = sorted(who.groups)
    return or_(
        _json_has(session, Dataset.owners, [who.name, *groups]),
        _json_has(session, Dataset.groups, [who.name, *groups]),
        Dataset.proposal_id.in_([who.name, *groups]),
    )


def _filters(query: SearchQuery, now: datetime, skip: str = "") -> list[ColumnElement]:
    return [filter_clause(f, values, now) for f, values in query.filters if f != skip and values]


def where_clauses(
    session: Session,
    query: SearchQuery,
    who: Identity,
    now: datetime,
    skip: str = "",
    matched: ColumnElement | None = None,
):
    """The query's conditions on ``Dataset``; ``matched`` is its text (``text_condition``)."""
    conds = _filters(query, now, skip)
    if matched is not None:
        conds.append(matched)
    if query.mine:
        conds.append(mine_clause(session, who))
    return conds


def filter_clause(facet: str, values: tuple[str, ...], now: datetime) -> ColumnElement:
    plain = {"data_type": Dataset.data_type, "field": Dataset.scientific_field}
    plain |= {"facility": Dataset.facility, "instrument": Dataset.instrument}
    if facet in plain:
        return plain[facet].in_(values)
    return {
        "technique": _technique_clause,
        # open datasets only, as the template facet counts: a fit may rest on the files' suffixes
        "template": lambda v: and_(open_clause(now), named_clause(Dataset.id, v)),
        "year": _year_clause,
        "size": lambda v: _size_clause(v, now),
    }.get(facet, lambda v: _access_clause(v, now))(values)
