"""Search: full-text index, NeXus details, view and launch counters, facet indexes.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

Portable columns and indexes, then the dialect's own full-text search (``fts.py``): FTS5
tables kept in sync by triggers on SQLite, a generated ``tsvector`` column with a GIN index on
PostgreSQL. Columns are added in place (no table copy), so the triggers made here stay.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from panbinder.data_mounts import fts

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

DATASET_COLUMNS = (
    sa.Column("description", sa.Text(), nullable=False, server_default=""),
    sa.Column("keywords", sa.JSON(), nullable=False, server_default="[]"),
    sa.Column("sample", sa.String(255), nullable=False, server_default=""),
    sa.Column("probe", sa.String(32), nullable=False, server_default=""),
    sa.Column("end_date", sa.DateTime(), nullable=True),
    sa.Column("preview", sa.Text(), nullable=False, server_default=""),
)
INDEXES = (
    ("datasets", "scientific_field"),
    ("datasets", "data_type"),
    ("datasets", "creation_date"),
    ("datasets", "size"),
    ("datasets", "views"),
    ("datasets", "launches"),
    ("publications", "views"),
    ("publications", "launches"),
    ("dataset_techniques", "technique_id"),
)


def upgrade() -> None:
    for column in DATASET_COLUMNS:
        op.add_column("datasets", column)
    for table in ("datasets", "publications"):
        op.add_column(table, sa.Column("views", sa.Integer(), nullable=False, server_default="0"))
        op.add_column(table, sa.Column("launches", sa.Integer(), nullable=False, server_default="0"))
    for table, column in INDEXES:
        op.create_index(f"ix_{table}_{column}", table, [column])
    dialect = op.get_bind().dialect.name
    for table in fts.SQLITE_TABLES:
        if dialect == "sqlite":
            statements = fts.sqlite_ddl(table)
        elif dialect == "postgresql":
            statements = fts.postgres_ddl(table)
        else:  # search falls back to LIKE (search.py)
            statements = []
        for statement in statements:
            op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table in fts.SQLITE_TABLES:
        statements = {"sqlite": fts.sqlite_drop, "postgresql": fts.postgres_drop}.get(dialect)
        for statement in statements(table) if statements else ():
            op.execute(statement)
    for table, column in reversed(INDEXES):
        op.drop_index(f"ix_{table}_{column}", table)
    # In place (SQLite 3.35+), never batch mode's table copy: SQLite connections enforce foreign
    # keys (db._sqlite_pragmas), so dropping the old table would cascade to dataset_files,
    # dataset_techniques, publication_datasets and checks.
    for table in ("publications", "datasets"):
        op.drop_column(table, "launches")
        op.drop_column(table, "views")
    for column in reversed(DATASET_COLUMNS):
        op.drop_column("datasets", column.name)
