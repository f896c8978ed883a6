"""accounts keep the threshold alerts last sent (balance level, allowance percentage)

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN (no batch: SQLite would copy the accounts table, which other
    # tables reference).
    op.add_column(
        "accounts",
        sa.Column("balance_alert", sa.SmallInteger(), server_default="0", nullable=False),
    )
    op.add_column(
        "accounts",
        sa.Column("allowance_alert", sa.SmallInteger(), server_default="0", nullable=False),
    )


def downgrade() -> None:
    op.drop_column("accounts", "allowance_alert")
    op.drop_column("accounts", "balance_alert")
