"""Initial catalogue: datasets, techniques, files, publications.

Revision ID: 0001
Revises:
Create Date: 2026-05-01

Portable DDL only (no dialect-specific SQL): works on SQLite and PostgreSQL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "techniques",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("panet_id", sa.String(32), nullable=False),
        sa.Column("label", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_techniques"),
        sa.UniqueConstraint("panet_id", name="uq_techniques_panet_id"),
    )
    op.create_table(
        "datasets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pid", sa.String(512), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("facility", sa.String(255), nullable=False),
        sa.Column("instrument", sa.String(255), nullable=False),
        sa.Column("scientific_field", sa.String(255), nullable=False),
        sa.Column("data_type", sa.String(32), nullable=False),
        sa.Column("proposal_id", sa.String(255), nullable=True),
        sa.Column("owners", sa.JSON(), nullable=False),
        sa.Column("groups", sa.JSON(), nullable=False),
        sa.Column("creation_date", sa.DateTime(), nullable=True),
        sa.Column("release_date", sa.DateTime(), nullable=True),
        sa.Column("is_public", sa.Boolean(), nullable=False),
        sa.Column("location", sa.Text(), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("file_count", sa.Integer(), nullable=False),
        sa.Column("updated", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_datasets"),
        sa.UniqueConstraint("pid", name="uq_datasets_pid"),
    )
    op.create_index("ix_datasets_facility", "datasets", ["facility"])
    op.create_index("ix_datasets_instrument", "datasets", ["instrument"])
    op.create_table(
        "dataset_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(4096), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("mtime_ns", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.id"],
            name="fk_dataset_files_dataset_id_datasets",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_dataset_files"),
        sa.UniqueConstraint("dataset_id", "path", name="uq_dataset_files_dataset_id_path"),
    )
    op.create_index("ix_dataset_files_dataset_id", "dataset_files", ["dataset_id"])
    op.create_table(
        "dataset_techniques",
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("technique_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.id"],
            name="fk_dataset_techniques_dataset_id_datasets",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["technique_id"],
            ["techniques.id"],
            name="fk_dataset_techniques_technique_id_techniques",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("dataset_id", "technique_id", name="pk_dataset_techniques"),
    )
    op.create_table(
        "publications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("doi", sa.String(255), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("authors", sa.JSON(), nullable=False),
        sa.Column("year", sa.Integer(), nullable=True),
        sa.Column("repo_url", sa.Text(), nullable=False),
        sa.Column("ref", sa.String(255), nullable=False),
        sa.Column("resolved_sha", sa.String(64), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_publications"),
        sa.UniqueConstraint("doi", name="uq_publications_doi"),
    )
    op.create_table(
        "publication_datasets",
        sa.Column("publication_id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["publication_id"],
            ["publications.id"],
            name="fk_publication_datasets_publication_id_publications",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.id"],
            name="fk_publication_datasets_dataset_id_datasets",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("publication_id", "dataset_id", name="pk_publication_datasets"),
    )


def downgrade() -> None:
    op.drop_table("publication_datasets")
    op.drop_table("publications")
    op.drop_table("dataset_techniques")
    op.drop_index("ix_dataset_files_dataset_id", table_name="dataset_files")
    op.drop_table("dataset_files")
    op.drop_index("ix_datasets_instrument", table_name="datasets")
    op.drop_index("ix_datasets_facility", table_name="datasets")
    op.drop_table("datasets")
    op.drop_table("techniques")
