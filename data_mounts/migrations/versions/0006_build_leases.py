"""Build leases: one portal builds an image while the others on the same catalogue wait.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

Portable DDL only (no dialect-specific SQL): works on SQLite and PostgreSQL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "build_leases",
        sa.Column("image", sa.String(512), nullable=False),
        sa.Column("holder", sa.String(128), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("expires", sa.Float(), nullable=False),
        sa.Column("message", sa.Text(), server_default="", nullable=False),
        sa.PrimaryKeyConstraint("image", name="pk_build_leases"),
    )


def downgrade() -> None:
    op.drop_table("build_leases")
