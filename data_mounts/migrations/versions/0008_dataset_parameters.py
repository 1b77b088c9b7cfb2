"""Dataset parameters (PaNOSC ``Parameter``): name, value as written, unit, and the value in SI.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

PaNOSC parameter queries name a parameter and bound its value in a unit of their own
(``wavelength`` between 1000 and 1100 nm); the index on (name, SI dimension, SI value) answers
them with one range scan per parameter. Portable DDL only: works on SQLite and PostgreSQL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dataset_parameters",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("value_text", sa.Text(), nullable=False),
        sa.Column("value_number", sa.Float(), nullable=True),
        sa.Column("unit", sa.String(64), nullable=False),
        sa.Column("si_value", sa.Float(), nullable=True),
        sa.Column("si_unit", sa.String(32), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.id"],
            name="fk_dataset_parameters_dataset_id_datasets",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_dataset_parameters"),
    )
    op.create_index("ix_dataset_parameters_dataset_id", "dataset_parameters", ["dataset_id"])
    op.create_index("ix_dataset_parameters_name_si", "dataset_parameters", ["name", "si_unit", "si_value"])


def downgrade() -> None:
    op.drop_index("ix_dataset_parameters_name_si", "dataset_parameters")
    op.drop_index("ix_dataset_parameters_dataset_id", "dataset_parameters")
    op.drop_table("dataset_parameters")
