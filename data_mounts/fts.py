"""Full-text search through the database's own index: SQLite FTS5 or PostgreSQL ``tsvector``.

SQLite: ``datasets_fts`` and ``publications_fts`` are FTS5 tables with external content (the
text stays in ``datasets``/``publications``); triggers made by revision 0004 keep them in step
with every insert, update and delete, whoever writes (the portal, a command, a test), so there
is no index written by hand. Ranking is ``bm25`` with per-column weights.

PostgreSQL: a generated ``search_vector`` column (weights A title, B identifiers, C text) with
a GIN index, and ``search_vector_shown`` (what an embargoed row shows, revision 0015) with its
own; ranking is the sum of the terms' ``ts_rank`` (``search_filters.pg_rank``). Neither the FTS
tables nor the vectors are in the models: ``db.include_object`` keeps them out of the
model/migration comparison.

A migration that rebuilds ``datasets`` or ``publications`` on SQLite (Alembic's batch mode
copies and drops the table) drops the triggers with it: call ``sqlite_ddl`` again after it.

User text never reaches the FTS5 query language as syntax: ``parse_terms`` splits it into
words and ``"phrases"`` (``-word`` excludes, ``word*`` is a prefix), and ``fts5_query`` quotes
every one, so ``AND``, ``NEAR(``, ``col:`` or a stray ``"`` are searched as text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# (table, FTS columns in the content table, bm25 weights in the same order)
SQLITE_TABLES = {
    "datasets": (
        ("pid", "title", "description", "instrument", "facility", "proposal_id", "keywords", "sample"),
        (3.0, 10.0, 2.0, 3.0, 3.0, 3.0, 4.0, 2.0),
    ),
    "publications": (("doi", "title", "authors"), (3.0, 10.0, 4.0)),
}
# Columns read from a dataset's files (the scan), which only readers of open datasets may search:
# a query reaches them through ``fts5_visible`` / ``postgres_visible_vector`` only when the
# dataset is open, so the index (and its triggers) stays the same whatever the embargo.
EMBARGOED_HIDDEN = {"datasets": ("sample",), "publications": ()}
MAX_TERMS = 16
MAX_QUERY = 500
_TERM_RE = re.compile(r'(-?)"([^"]*)"?|(\S+)')
_WORD_RE = re.compile(r"\w", re.UNICODE)


def _cols(prefix: str, columns: tuple[str, ...]) -> str:
    return ", ".join(f"{prefix}{c}" for c in columns)


def sqlite_ddl(table: str) -> list[str]:
    """The FTS5 table over ``table`` and the three triggers that keep it in sync."""
    columns, _ = SQLITE_TABLES[table]
    fts = f"{table}_fts"
    names = ", ".join(columns)
    new, old = _cols("new.", columns), _cols("old.", columns)
    delete = f"INSERT INTO {fts}({fts}, rowid, {names}) VALUES ('delete', old.id, {old});"
    insert = f"INSERT INTO {fts}(rowid, {names}) VALUES (new.id, {new});"
    return [
        f"CREATE VIRTUAL TABLE IF NOT EXISTS {fts} USING fts5({names}, content='{table}', "
        "content_rowid='id', tokenize='porter unicode61 remove_diacritics 2')",
        f"CREATE TRIGGER IF NOT EXISTS {fts}_insert AFTER INSERT ON {table} BEGIN {insert} END",
        f"CREATE TRIGGER IF NOT EXISTS {fts}_delete AFTER DELETE ON {table} BEGIN {delete} END",
        f"CREATE TRIGGER IF NOT EXISTS {fts}_update AFTER UPDATE OF {names} ON {table} "
        f"BEGIN {delete} {insert} END",
        f"INSERT INTO {fts}({fts}) VALUES ('rebuild')",
    ]


def sqlite_drop(table: str) -> list[str]:
    fts = f"{table}_fts"
    return [
        *(f"DROP TRIGGER IF EXISTS {fts}_{what}" for what in ("insert", "delete", "update")),
        f"DROP TABLE IF EXISTS {fts}",
    ]


# PostgreSQL: generated column expressions (immutable: explicit text search configurations)
def fts5_visible(match: str, table: str) -> str:
    """``match`` restricted to the columns an embargoed row shows (``match`` when it hides none)."""
    hidden = EMBARGOED_HIDDEN[table]
    return f"- {{{' '.join(hidden)}}} : ({match})" if hidden and match else match


def _pg_identifiers(expression: str) -> str:
    """Identifiers and names (PIDs, proposals, instruments) split at punctuation, indexed both
    as written ('simple') and stemmed ('english'), so "abc-123" and "membranes" both match."""
    clean = f"regexp_replace({expression}, '[^[:alnum:]]+', ' ', 'g')"
    return f"setweight(to_tsvector('simple', {clean}) || to_tsvector('english', {clean}), 'B')"


def _joined(*columns: str) -> str:
    return " || ' ' || ".join(f"coalesce({c}, '')" for c in columns)


def _pg_dataset_vector(*identifiers: str) -> str:
    return (
        "setweight(to_tsvector('english', coalesce(title, '')), 'A') || "
        + _pg_identifiers(_joined(*identifiers))
        + " || setweight(to_tsvector('english', coalesce(description, '')), 'C')"
    )


_PG_IDENTIFIERS = ("pid", "instrument", "facility", "proposal_id", "sample", "keywords::text")
# PostgreSQL: generated column expressions (immutable: explicit text search configurations)
POSTGRES_VECTORS = {
    "datasets": _pg_dataset_vector(*_PG_IDENTIFIERS),
    "publications": (
        "setweight(to_tsvector('english', coalesce(title, '')), 'A') || "
        + _pg_identifiers(_joined("doi", "authors::text"))
    ),
}


def postgres_visible_vector(table: str) -> str | None:
    """The ``search_vector`` of an embargoed row without its hidden columns (None: hides none)."""
    if not EMBARGOED_HIDDEN[table]:
        return None
    return _pg_dataset_vector(*(c for c in _PG_IDENTIFIERS if c not in EMBARGOED_HIDDEN[table]))


def postgres_ddl(table: str) -> list[str]:
    return [
        f"ALTER TABLE {table} ADD COLUMN search_vector tsvector "
        f"GENERATED ALWAYS AS ({POSTGRES_VECTORS[table]}) STORED",
        f"CREATE INDEX ix_{table}_search_vector ON {table} USING GIN (search_vector)",
    ]


def postgres_drop(table: str) -> list[str]:
    return [
        f"DROP INDEX IF EXISTS ix_{table}_search_vector",
        f"ALTER TABLE {table} DROP COLUMN search_vector",
    ]


# The vector an embargoed row shows, stored (revision 0015) for the rows not public, the only ones
# an embargo can hide: a search reads it from its own GIN index instead of making it again with
# ``to_tsvector`` for every embargoed candidate. NULL for a public row (never embargoed).
SHOWN = "search_vector_shown"


def postgres_shown_ddl(table: str) -> list[str]:
    visible = postgres_visible_vector(table)
    if visible is None:
        return []
    return [
        f"ALTER TABLE {table} ADD COLUMN {SHOWN} tsvector GENERATED ALWAYS AS "
        f"(CASE WHEN is_public IS TRUE THEN NULL ELSE {visible} END) STORED",
        f"CREATE INDEX ix_{table}_{SHOWN} ON {table} USING GIN ({SHOWN})",
    ]


def postgres_shown_drop(table: str) -> list[str]:
    if postgres_visible_vector(table) is None:
        return []
    return [f"DROP INDEX IF EXISTS ix_{table}_{SHOWN}", f"ALTER TABLE {table} DROP COLUMN IF EXISTS {SHOWN}"]


def is_fts_object(name: str | None, type_: str) -> bool:
    """FTS tables (and their shadow tables) and ``search_vector``, which the models leave out."""
    if not name:
        return False
    if type_ == "table":
        return any(name == f"{t}_fts" or name.startswith(f"{t}_fts_") for t in SQLITE_TABLES)
    if type_ == "index":
        return name.endswith(("_search_vector", f"_{SHOWN}"))
    return name in ("search_vector", SHOWN)


# user query --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Term:
    text: str
    exclude: bool = False
    prefix: bool = False


def parse_terms(query: str) -> list[Term]:
    """Words and quoted phrases of ``query``; terms without a letter or digit are dropped."""
    terms: list[Term] = []
    for m in _TERM_RE.finditer(query[:MAX_QUERY]):
        if m.group(3) is not None:
            raw = m.group(3)
            exclude = raw.startswith("-") and len(raw) > 1
            raw = raw[1:] if exclude else raw
            prefix = raw.endswith("*")
            text = raw.rstrip("*").replace('"', " ")
        else:
            exclude, prefix, text = bool(m.group(1)), False, m.group(2)
        text = " ".join(text.split())
        if text and _WORD_RE.search(text):
            terms.append(Term(text, exclude, prefix))
        if len(terms) >= MAX_TERMS:
            break
    if terms and all(t.exclude for t in terms):  # nothing to exclude from: search them instead
        terms = [Term(t.text, False, t.prefix) for t in terms]
    return terms


def fts5_query(terms: list[Term]) -> str:
    """An FTS5 MATCH expression in which every term is a quoted string ('' when no terms)."""

    def quoted(t: Term) -> str:
        return '"' + t.text.replace('"', '""') + '"' + (" *" if t.prefix else "")

    include = [quoted(t) for t in terms if not t.exclude]
    exclude = [quoted(t) for t in terms if t.exclude]
    if not include:
        return ""
    out = " AND ".join(include)
    for e in exclude:
        out = f"({out}) NOT {e}"
    return out
