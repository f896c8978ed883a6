"""accounts' notification preferences (billing emails, channels per event) and the log
of email deliveries

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import creditmeter.store.tables

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "notification_preferences",
        sa.Column("account_id", sa.String(length=255), nullable=False),
        sa.Column("emails", JSON, nullable=False),
        sa.Column("channels", JSON, nullable=False),
        sa.Column(
            "updated_at", creditmeter.store.tables.UTCDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_notification_preferences_account_id_accounts"),
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_notification_preferences")),
    )
    op.create_table(
        "email_deliveries",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("event_type", sa.String(length=100), nullable=False),
        sa.Column("account_id", sa.String(length=255), nullable=True),
        sa.Column("recipient", sa.String(length=254), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(length=2000), nullable=True),
        sa.Column(
            "next_retry_at", creditmeter.store.tables.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "created_at", creditmeter.store.tables.UTCDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_deliveries")),
    )
    op.create_index(
        "ix_email_deliveries_event", "email_deliveries", ["event_id", "created_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_email_deliveries_event", table_name="email_deliveries")
    op.drop_table("email_deliveries")
    op.drop_table("notification_preferences")
