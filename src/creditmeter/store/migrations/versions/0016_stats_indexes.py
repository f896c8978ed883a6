"""usage summed per day, account, feature and model, and an index of usage by time, for
the stats over every account

Revision ID: 0016
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_daily",
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("account_id", sa.String(length=255), nullable=False),
        sa.Column("feature_key", sa.String(length=255), nullable=False),
        sa.Column("model", sa.String(length=255), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.Column("credits", sa.BigInteger(), nullable=False),
        sa.Column("consumed", sa.BigInteger(), nullable=False),
        sa.Column("refunded", sa.BigInteger(), nullable=False),
        sa.Column("cost_dollars", sa.BigInteger(), nullable=False),
        sa.Column("cost_fraction", sa.BigInteger(), nullable=False),
        sa.Column("without_cost", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "day", "account_id", "feature_key", "model", name=op.f("pk_usage_daily")
        ),
    )
    op.create_index("ix_usage_records_created", "usage_records", ["created_at"])
    if op.get_bind().dialect.name == "sqlite":  # costs are text with ten places
        day = "substr(created_at, 1, 10)"
        dollars = "CAST(substr(provider_cost, 1, instr(provider_cost, '.') - 1) AS INTEGER)"
        fraction = "CAST(substr(provider_cost, instr(provider_cost, '.') + 1) AS INTEGER)"
    else:
        day = "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
        dollars = "floor(provider_cost)::bigint"
        fraction = "((provider_cost - floor(provider_cost)) * 10000000000)::bigint"
    op.execute(
        "INSERT INTO usage_daily (day, account_id, feature_key, model, events, credits,"
        " consumed, refunded, cost_dollars, cost_fraction, without_cost)"
        f" SELECT {day}, account_id, feature_key, coalesce(model, ''), count(*),"
        " sum(credits), sum(charged + debited), sum(refunded),"
        f" coalesce(sum({dollars}), 0), coalesce(sum({fraction}), 0),"
        " sum(CASE WHEN provider_cost IS NULL THEN 1 ELSE 0 END)"
        f" FROM usage_records GROUP BY {day}, account_id, feature_key, coalesce(model, '')"
    )


def downgrade() -> None:
    op.drop_index("ix_usage_records_created", table_name="usage_records")
    op.drop_table("usage_daily")
