"""NeXus application definitions per dataset, for the analysis templates' ``--format NXmx``.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03

A scan stores the application definitions (``/entry/definition``: NXmx, NXcanSAS...) it finds
in a dataset's files in ``dataset_definitions``; a template registered with formats fits a
dataset that has one of them (lower case compared), besides the techniques those definitions
stand for and the file suffixes. Existing templates get their ``definition`` terms here. Writes
to the new table raise the search's version (what templates fit is part of the search: the
template facet), as revision 0010 does for the other tables.
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

BUMP = "UPDATE search_state SET version = version + 1"


def upgrade() -> None:
    op.create_table(
        "dataset_definitions",
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("definition", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.id"],
            name="fk_dataset_definitions_dataset_id_datasets",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("dataset_id", "definition", name="pk_dataset_definitions"),
    )
    op.create_index("ix_dataset_definitions_definition", "dataset_definitions", ["definition"])
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, formats FROM analysis_templates")).all()
    for template_id, formats in rows:
        names = json.loads(formats) if isinstance(formats, str) else formats or []
        for name in sorted({f.strip().lower() for f in names if f and not f.startswith(".")}):
            bind.execute(
                sa.text("INSERT INTO template_terms (template_id, kind, term) VALUES (:t, 'definition', :n)"),
                {"t": template_id, "n": name},
            )
    dialect = bind.dialect.name
    if dialect == "sqlite":
        for event in ("INSERT", "DELETE"):
            op.execute(
                f"CREATE TRIGGER IF NOT EXISTS search_state_dataset_definitions_{event.lower()} "
                f"AFTER {event} ON dataset_definitions BEGIN {BUMP}; END"
            )
    elif dialect == "postgresql":
        op.execute(
            "CREATE TRIGGER search_state_dataset_definitions AFTER INSERT OR DELETE ON dataset_definitions "
            "FOR EACH STATEMENT EXECUTE FUNCTION search_state_bump()"
        )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for event in ("insert", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS search_state_dataset_definitions_{event}")
    elif dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS search_state_dataset_definitions ON dataset_definitions")
    op.execute("DELETE FROM template_terms WHERE kind = 'definition'")
    op.drop_index("ix_dataset_definitions_definition", "dataset_definitions")
    op.drop_table("dataset_definitions")
