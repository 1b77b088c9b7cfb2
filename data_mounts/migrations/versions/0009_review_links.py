"""Review links: a publication's signed, expiring, revocable links for reviewers, and their uses.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03

Only the SHA-256 of a link's token is stored; a use is its time alone. Portable DDL only: works
on SQLite and PostgreSQL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "review_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("publication_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("dataset_pids", sa.JSON(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("expires", sa.DateTime(), nullable=False),
        sa.Column("revoked", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["publication_id"],
            ["publications.id"],
            name="fk_review_links_publication_id_publications",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_review_links"),
        sa.UniqueConstraint("token_hash", name="uq_review_links_token_hash"),
    )
    op.create_index("ix_review_links_publication_id", "review_links", ["publication_id"])
    op.create_table(
        "review_link_uses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("link_id", sa.Integer(), nullable=False),
        sa.Column("used", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["link_id"],
            ["review_links.id"],
            name="fk_review_link_uses_link_id_review_links",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_review_link_uses"),
    )
    op.create_index("ix_review_link_uses_link_id", "review_link_uses", ["link_id"])


def downgrade() -> None:
    op.drop_index("ix_review_link_uses_link_id", "review_link_uses")
    op.drop_table("review_link_uses")
    op.drop_index("ix_review_links_publication_id", "review_links")
    op.drop_table("review_links")
