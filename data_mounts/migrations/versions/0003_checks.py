"""Reproducibility checks: one row per check of a publication.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

Portable DDL only (no dialect-specific SQL): works on SQLite and PostgreSQL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "checks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("publication_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("started", sa.DateTime(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("verdict", sa.String(32), nullable=False),
        sa.Column("failed_step", sa.String(32), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("image", sa.String(512), nullable=False),
        sa.Column("restored", sa.Boolean(), nullable=False),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("differences", sa.JSON(), nullable=False),
        sa.Column("diff", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["publication_id"],
            ["publications.id"],
            name="fk_checks_publication_id_publications",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_checks"),
    )
    op.create_index("ix_checks_publication_id", "checks", ["publication_id"])
    op.create_index("ix_checks_started", "checks", ["started"])


def downgrade() -> None:
    op.drop_index("ix_checks_started", "checks")
    op.drop_index("ix_checks_publication_id", "checks")
    op.drop_table("checks")
