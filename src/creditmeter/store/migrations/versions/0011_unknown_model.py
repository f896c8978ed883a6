"""usage priced at default rates for an unknown model

A usage record says whether its feature had no rates for its model and priced it at the
default rates (``usage_records.unknown_model``); earlier records did not.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "usage_records",
        sa.Column("unknown_model", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    op.drop_column("usage_records", "unknown_model")
