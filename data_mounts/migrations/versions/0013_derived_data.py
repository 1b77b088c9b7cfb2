"""Derived datasets' lineage: the datasets each was made from and the server it was made in.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03

A signed-in user registers files of their workspace as a derived dataset (``derived_data.py``);
``dataset_sources`` links it to the datasets mounted in that server, ``dataset_origins`` keeps
the server's image, the publication it was launched for and who registered it. The search does
not read these tables (the dataset row itself raises the search's version, revision 0010).
Portable DDL only: works on SQLite and PostgreSQL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dataset_sources",
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name="fk_dataset_sources_dataset_id_datasets", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["source_id"], ["datasets.id"], name="fk_dataset_sources_source_id_datasets", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("dataset_id", "source_id", name="pk_dataset_sources"),
    )
    op.create_index("ix_dataset_sources_source_id", "dataset_sources", ["source_id"])
    op.create_table(
        "dataset_origins",
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("image", sa.String(512), nullable=False),
        sa.Column("publication_id", sa.Integer(), nullable=True),
        sa.Column("registered_by", sa.String(255), nullable=False),
        sa.Column("registered", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name="fk_dataset_origins_dataset_id_datasets", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["publication_id"],
            ["publications.id"],
            name="fk_dataset_origins_publication_id_publications",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("dataset_id", name="pk_dataset_origins"),
    )
    op.create_index("ix_dataset_origins_publication_id", "dataset_origins", ["publication_id"])


def downgrade() -> None:
    op.drop_index("ix_dataset_origins_publication_id", "dataset_origins")
    op.drop_table("dataset_origins")
    op.drop_index("ix_dataset_sources_source_id", "dataset_sources")
    op.drop_table("dataset_sources")
