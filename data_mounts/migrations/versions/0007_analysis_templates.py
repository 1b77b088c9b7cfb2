"""Analysis templates ("Analyse with"): pinned notebook repositories and the terms they fit.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

Portable DDL only (no dialect-specific SQL): works on SQLite and PostgreSQL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "analysis_templates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("repo_url", sa.Text(), nullable=False),
        sa.Column("ref", sa.String(255), nullable=False),
        sa.Column("resolved_sha", sa.String(64), nullable=False),
        sa.Column("notebook", sa.Text(), nullable=False),
        sa.Column("techniques", sa.JSON(), nullable=False),
        sa.Column("formats", sa.JSON(), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_analysis_templates"),
        sa.UniqueConstraint("name", name="uq_analysis_templates_name"),
    )
    op.create_table(
        "template_terms",
        sa.Column("template_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("term", sa.String(255), nullable=False),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["analysis_templates.id"],
            name="fk_template_terms_template_id_analysis_templates",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("template_id", "kind", "term", name="pk_template_terms"),
    )
    op.create_index("ix_template_terms_term", "template_terms", ["term"])


def downgrade() -> None:
    op.drop_index("ix_template_terms_term", "template_terms")
    op.drop_table("template_terms")
    op.drop_table("analysis_templates")
