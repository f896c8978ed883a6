"""api keys

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import creditmeter.store.tables

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("account_id", sa.String(length=255), nullable=True),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column(
            "created_at", creditmeter.store.tables.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("revoked_at", creditmeter.store.tables.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "(role = 'account') = (account_id IS NOT NULL)",
            name=op.f("ck_api_keys_account_role_names_account"),
        ),
        sa.CheckConstraint(
            "role IN ('service', 'admin', 'superadmin', 'account')",
            name=op.f("ck_api_keys_role_known"),
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_api_keys_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("digest", name=op.f("uq_api_keys_digest")),
    )


def downgrade() -> None:
    op.drop_table("api_keys")
