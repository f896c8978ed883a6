"""a covering index of usage records by time, for the stats over every account

Revision ID: 0016
Revises: 0013
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0013"
branch_labels = None
depends_on = None

COLUMNS = [
    "created_at",
    "account_id",
    "feature_key",
    "model",
    "credits",
    "charged",
    "debited",
    "refunded",
    "provider_cost",
]


def upgrade() -> None:
    op.create_index("ix_usage_records_created_stats", "usage_records", COLUMNS)


def downgrade() -> None:
    op.drop_index("ix_usage_records_created_stats", table_name="usage_records")
