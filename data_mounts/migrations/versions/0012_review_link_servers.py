"""Servers started through review links: their temporary Hub users, until they are stopped.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03

Revoking a review link, or its expiry, stops the servers launched through it; the portal
records each such server's temporary Hub user (a random name made for the launch: nothing of
the reviewer) when it is ready and forgets it once stopped. Portable DDL only: works on
SQLite and PostgreSQL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "review_link_servers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("link_id", sa.Integer(), nullable=False),
        sa.Column("hub_user", sa.String(255), nullable=False),
        sa.Column("started", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["link_id"],
            ["review_links.id"],
            name="fk_review_link_servers_link_id_review_links",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_review_link_servers"),
        sa.UniqueConstraint("hub_user", name="uq_review_link_servers_hub_user"),
    )
    op.create_index("ix_review_link_servers_link_id", "review_link_servers", ["link_id"])


def downgrade() -> None:
    op.drop_index("ix_review_link_servers_link_id", "review_link_servers")
    op.drop_table("review_link_servers")
