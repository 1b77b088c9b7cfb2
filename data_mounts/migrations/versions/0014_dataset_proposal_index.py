"""An index on ``datasets.proposal_id``.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04

PaNOSC proposal Documents (``panosc/proposals.py``) find their datasets by proposal id, one
lookup per proposal listed or included, and "my datasets" matches a reader's proposals; without
an index each lookup read every dataset. Portable DDL only: works on SQLite and PostgreSQL, and
on SQLite leaves the table (and its triggers) in place.
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_datasets_proposal_id", "datasets", ["proposal_id"])


def downgrade() -> None:
    op.drop_index("ix_datasets_proposal_id", "datasets")
