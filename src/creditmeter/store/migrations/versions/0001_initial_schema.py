"""initial schema

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import creditmeter.store.tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "features",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("pool", sa.String(length=255), nullable=False),
        sa.Column(
            "rule",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column(
            "updated_at", creditmeter.store.tables.UTCDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_features")),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("operation", sa.String(length=64), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column(
            "result",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "created_at", creditmeter.store.tables.UTCDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_idempotency_keys")),
    )
    op.create_table(
        "plans",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column(
            "allowances",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "features",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("period", sa.String(length=32), nullable=False),
        sa.Column("rollover_cap", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column(
            "updated_at", creditmeter.store.tables.UTCDateTime(timezone=True), nullable=False
        ),
        sa.CheckConstraint("rollover_cap >= 0", name=op.f("ck_plans_rollover_cap_non_negative")),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_plans")),
    )
    op.create_table(
        "settings_versions",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column(
            "values",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "changes",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("changed_by", sa.String(length=255), nullable=False),
        sa.Column(
            "changed_at", creditmeter.store.tables.UTCDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_settings_versions")),
    )
    op.create_table(
        "accounts",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("plan_key", sa.String(length=255), nullable=True),
        sa.Column("pending_plan_key", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "created_at", creditmeter.store.tables.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "period_start", creditmeter.store.tables.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "period_end", creditmeter.store.tables.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("balance", sa.BigInteger(), nullable=False),
        sa.Column("held", sa.BigInteger(), nullable=False),
        sa.Column("debt", sa.BigInteger(), nullable=False),
        sa.Column("overdraft_limit", sa.BigInteger(), nullable=False),
        sa.Column("due_at", creditmeter.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "metadata",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('active', 'suspended', 'blocked')", name=op.f("ck_accounts_status_known")
        ),
        sa.CheckConstraint("debt >= 0", name=op.f("ck_accounts_debt_non_negative")),
        sa.CheckConstraint("held <= balance + debt", name=op.f("ck_accounts_held_within_grants")),
        sa.CheckConstraint("held >= 0", name=op.f("ck_accounts_held_non_negative")),
        sa.CheckConstraint(
            "overdraft_limit >= 0", name=op.f("ck_accounts_overdraft_limit_non_negative")
        ),
        sa.ForeignKeyConstraint(
            ["pending_plan_key"], ["plans.key"], name=op.f("fk_accounts_pending_plan_key_plans")
        ),
        sa.ForeignKeyConstraint(
            ["plan_key"], ["plans.key"], name=op.f("fk_accounts_plan_key_plans")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
    )
    op.create_table(
        "feature_versions",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("pool", sa.String(length=255), nullable=False),
        sa.Column(
            "rule",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "valid_from", creditmeter.store.tables.UTCDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["key"], ["features.key"], name=op.f("fk_feature_versions_key_features")
        ),
        sa.PrimaryKeyConstraint("key", "version", name=op.f("pk_feature_versions")),
    )
    op.create_table(
        "grants",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("account_id", sa.String(length=255), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("pool", sa.String(length=255), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("remaining", sa.BigInteger(), nullable=False),
        sa.Column("held", sa.BigInteger(), nullable=False),
        sa.Column(
            "effective_at", creditmeter.store.tables.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("expires_at", creditmeter.store.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at", creditmeter.store.tables.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "period_start", creditmeter.store.tables.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("reference", sa.String(length=255), nullable=True),
        sa.CheckConstraint("held <= remaining", name=op.f("ck_grants_held_within_remaining")),
        sa.CheckConstraint("held >= 0", name=op.f("ck_grants_held_non_negative")),
        sa.CheckConstraint("remaining <= amount", name=op.f("ck_grants_remaining_within_amount")),
        sa.CheckConstraint("remaining >= 0", name=op.f("ck_grants_remaining_non_negative")),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_grants_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grants")),
        sa.UniqueConstraint(
            "account_id", "source", "pool", "period_start", name="uq_grants_period"
        ),
    )
    with op.batch_alter_table("grants", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_grants_account_id"), ["account_id"], unique=False)

    op.create_table(
        "holds",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("account_id", sa.String(length=255), nullable=False),
        sa.Column("feature_key", sa.String(length=255), nullable=False),
        sa.Column("pool", sa.String(length=255), nullable=False),
        sa.Column("credits", sa.BigInteger(), nullable=False),
        sa.Column("reserved", sa.BigInteger(), nullable=False),
        sa.Column("unlimited", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("model", sa.String(length=255), nullable=True),
        sa.Column("member", sa.String(length=255), nullable=True),
        sa.Column(
            "estimate",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "metadata",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "created_at", creditmeter.store.tables.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "expires_at", creditmeter.store.tables.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "finished_at", creditmeter.store.tables.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("usage_id", sa.String(length=255), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'settled', 'released', 'expired')",
            name=op.f("ck_holds_status_known"),
        ),
        sa.CheckConstraint(
            "reserved >= 0 AND reserved <= credits", name=op.f("ck_holds_reserved_within_credits")
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_holds_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["feature_key"], ["features.key"], name=op.f("fk_holds_feature_key_features")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_holds")),
    )
    with op.batch_alter_table("holds", schema=None) as batch_op:
        batch_op.create_index("ix_holds_account_status", ["account_id", "status"], unique=False)
        batch_op.create_index("ix_holds_status_expires", ["status", "expires_at"], unique=False)

    op.create_table(
        "ledger_transactions",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("account_id", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("balance_before", sa.BigInteger(), nullable=False),
        sa.Column("balance_after", sa.BigInteger(), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("usage_id", sa.String(length=255), nullable=True),
        sa.Column("hold_id", sa.String(length=255), nullable=True),
        sa.Column(
            "metadata",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "created_at", creditmeter.store.tables.UTCDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_ledger_transactions_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_transactions")),
    )
    with op.batch_alter_table("ledger_transactions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_ledger_transactions_account_created",
            ["account_id", "created_at", "id"],
            unique=False,
        )

    op.create_table(
        "members",
        sa.Column("account_id", sa.String(length=255), nullable=False),
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column(
            "created_at", creditmeter.store.tables.UTCDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_members_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("account_id", "id", name=op.f("pk_members")),
    )
    op.create_table(
        "unlimited_usage",
        sa.Column("account_id", sa.String(length=255), nullable=False),
        sa.Column("pool", sa.String(length=255), nullable=False),
        sa.Column(
            "period_start", creditmeter.store.tables.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("credits", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("credits >= 0", name=op.f("ck_unlimited_usage_credits_non_negative")),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_unlimited_usage_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint(
            "account_id", "pool", "period_start", name=op.f("pk_unlimited_usage")
        ),
    )
    op.create_table(
        "hold_allocations",
        sa.Column("hold_id", sa.String(length=255), nullable=False),
        sa.Column("grant_id", sa.String(length=255), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("credits", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("credits > 0", name=op.f("ck_hold_allocations_credits_positive")),
        sa.ForeignKeyConstraint(
            ["grant_id"], ["grants.id"], name=op.f("fk_hold_allocations_grant_id_grants")
        ),
        sa.ForeignKeyConstraint(
            ["hold_id"], ["holds.id"], name=op.f("fk_hold_allocations_hold_id_holds")
        ),
        sa.PrimaryKeyConstraint("hold_id", "grant_id", name=op.f("pk_hold_allocations")),
    )
    op.create_table(
        "postings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("transaction_id", sa.String(length=255), nullable=False),
        sa.Column("ledger_account", sa.String(length=255), nullable=False),
        sa.Column("grant_id", sa.String(length=255), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("amount <> 0", name=op.f("ck_postings_amount_non_zero")),
        sa.ForeignKeyConstraint(
            ["grant_id"], ["grants.id"], name=op.f("fk_postings_grant_id_grants")
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["ledger_transactions.id"],
            name=op.f("fk_postings_transaction_id_ledger_transactions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_postings")),
    )
    with op.batch_alter_table("postings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_postings_grant_id"), ["grant_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_postings_transaction_id"), ["transaction_id"], unique=False
        )

    op.create_table(
        "usage_records",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("account_id", sa.String(length=255), nullable=False),
        sa.Column("feature_key", sa.String(length=255), nullable=False),
        sa.Column("feature_version", sa.Integer(), nullable=False),
        sa.Column("pool", sa.String(length=255), nullable=False),
        sa.Column("model", sa.String(length=255), nullable=True),
        sa.Column("member", sa.String(length=255), nullable=True),
        sa.Column(
            "quantities",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("provider_cost", sa.Numeric(precision=20, scale=10), nullable=True),
        sa.Column("credits", sa.BigInteger(), nullable=False),
        sa.Column("charged", sa.BigInteger(), nullable=False),
        sa.Column("debited", sa.BigInteger(), nullable=False),
        sa.Column("uncollected", sa.BigInteger(), nullable=False),
        sa.Column("refunded", sa.BigInteger(), nullable=False),
        sa.Column("unlimited", sa.Boolean(), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("hold_id", sa.String(length=255), nullable=True),
        sa.Column("transaction_id", sa.String(length=255), nullable=True),
        sa.Column(
            "metadata",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "created_at", creditmeter.store.tables.UTCDateTime(timezone=True), nullable=False
        ),
        sa.CheckConstraint(
            "charged + debited + uncollected = CASE WHEN unlimited THEN 0 ELSE credits END",
            name=op.f("ck_usage_records_credits_accounted"),
        ),
        sa.CheckConstraint(
            "refunded >= 0 AND refunded <= charged + debited",
            name=op.f("ck_usage_records_refund_bounded"),
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_usage_records_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["feature_key"], ["features.key"], name=op.f("fk_usage_records_feature_key_features")
        ),
        sa.ForeignKeyConstraint(
            ["hold_id"], ["holds.id"], name=op.f("fk_usage_records_hold_id_holds")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_records")),
    )
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.create_index(
            "ix_usage_records_account_created", ["account_id", "created_at"], unique=False
        )


def downgrade() -> None:

    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.drop_index("ix_usage_records_account_created")

    op.drop_table("usage_records")
    with op.batch_alter_table("postings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_postings_transaction_id"))
        batch_op.drop_index(batch_op.f("ix_postings_grant_id"))

    op.drop_table("postings")
    op.drop_table("hold_allocations")
    op.drop_table("unlimited_usage")
    op.drop_table("members")
    with op.batch_alter_table("ledger_transactions", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_transactions_account_created")

    op.drop_table("ledger_transactions")
    with op.batch_alter_table("holds", schema=None) as batch_op:
        batch_op.drop_index("ix_holds_status_expires")
        batch_op.drop_index("ix_holds_account_status")

    op.drop_table("holds")
    with op.batch_alter_table("grants", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_grants_account_id"))

    op.drop_table("grants")
    op.drop_table("feature_versions")
    op.drop_table("accounts")
    op.drop_table("settings_versions")
    op.drop_table("plans")
    op.drop_table("idempotency_keys")
    op.drop_table("features")
