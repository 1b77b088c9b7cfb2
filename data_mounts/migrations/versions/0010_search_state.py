"""The search's write counter: one row whose ``version`` every search-relevant write raises.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03

Search results kept between requests (facet counts, a text's ranked matches) are valid while
``search_state.version`` is unchanged; database triggers raise it, whoever writes (the portal,
a command, another portal on the same PostgreSQL), in the writing transaction, so a reader
never sees new rows under an old version. Writes that change nothing a search reads (view and
launch counters, ``updated``) leave it alone. The index on ``release_date`` finds the next
embargo end, after which kept results are stale too.

A later migration that rebuilds ``datasets`` on SQLite (batch mode copies the table) drops
these triggers with it: create them again after it (``TRIGGERS``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# what a search reads: text, facets, "my datasets", and what analysis templates fit
DATASET_COLUMNS = (
    "pid, title, description, instrument, facility, proposal_id, keywords, sample, data_type, "
    "scientific_field, creation_date, release_date, is_public, size, owners, groups, technique_key"
)
WATCHED = (  # (table, events)
    ("datasets", ("INSERT", "DELETE", f"UPDATE OF {DATASET_COLUMNS}")),
    ("dataset_techniques", ("INSERT", "DELETE")),
    ("dataset_files", ("INSERT", "DELETE", "UPDATE OF path")),
    ("analysis_templates", ("INSERT", "DELETE", "UPDATE")),
    ("template_terms", ("INSERT", "DELETE", "UPDATE")),
)
BUMP = "UPDATE search_state SET version = version + 1"


def _name(table: str, event: str) -> str:
    return f"search_state_{table}_{event.split()[0].lower()}"


def sqlite_triggers() -> list[str]:
    return [
        f"CREATE TRIGGER IF NOT EXISTS {_name(t, e)} AFTER {e} ON {t} BEGIN {BUMP}; END"
        for t, events in WATCHED
        for e in events
    ]


POSTGRES_FUNCTION = (
    "CREATE OR REPLACE FUNCTION search_state_bump() RETURNS trigger LANGUAGE plpgsql AS "
    f"$$ BEGIN {BUMP}; RETURN NULL; END $$"
)


def postgres_triggers() -> list[str]:
    return [POSTGRES_FUNCTION] + [
        f"CREATE TRIGGER search_state_{t} AFTER {' OR '.join(events)} ON {t} "
        "FOR EACH STATEMENT EXECUTE FUNCTION search_state_bump()"
        for t, events in WATCHED
    ]


def upgrade() -> None:
    op.create_table(
        "search_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("id", name="pk_search_state"),
    )
    op.execute("INSERT INTO search_state (id, version) VALUES (1, 0)")
    op.create_index("ix_datasets_release_date", "datasets", ["release_date"])
    dialect = op.get_bind().dialect.name
    for statement in {"sqlite": sqlite_triggers, "postgresql": postgres_triggers}.get(dialect, list)():
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for t, events in WATCHED:
            for e in events:
                op.execute(f"DROP TRIGGER IF EXISTS {_name(t, e)}")
    elif dialect == "postgresql":
        for t, _events in WATCHED:
            op.execute(f"DROP TRIGGER IF EXISTS search_state_{t} ON {t}")
        op.execute("DROP FUNCTION IF EXISTS search_state_bump()")
    op.drop_index("ix_datasets_release_date", "datasets")
    op.drop_table("search_state")
