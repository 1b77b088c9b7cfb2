"""Environment locks of built images.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26

Portable DDL only (no dialect-specific SQL): works on SQLite and PostgreSQL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "image_locks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("image", sa.String(512), nullable=False),
        sa.Column("digest", sa.String(128), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("lock", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_image_locks"),
        sa.UniqueConstraint("image", name="uq_image_locks_image"),
    )


def downgrade() -> None:
    op.drop_table("image_locks")
