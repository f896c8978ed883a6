"""audit log: who changed credits, prices, plans, settings or keys

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import creditmeter.store.tables

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column(
            "created_at", creditmeter.store.tables.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("actor_kind", sa.String(length=16), nullable=False),
        sa.Column("actor_key_id", sa.String(length=255), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=255), nullable=True),
        sa.Column("subject_id", sa.String(length=255), nullable=True),
        sa.Column(
            "details",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "actor_kind IN ('api_key', 'admin_key_env', 'library', 'cli')",
            name=op.f("ck_audit_log_actor_kind_known"),
        ),
        sa.CheckConstraint(
            "(actor_kind = 'api_key') = (actor_key_id IS NOT NULL)",
            name=op.f("ck_audit_log_api_key_actor_names_key"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index("ix_audit_log_created", "audit_log", ["created_at", "id"])
    op.create_index("ix_audit_log_account_created", "audit_log", ["account_id", "created_at", "id"])
    op.create_index("ix_audit_log_actor_created", "audit_log", ["actor_key_id", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_audit_log_actor_created", table_name="audit_log")
    op.drop_index("ix_audit_log_account_created", table_name="audit_log")
    op.drop_index("ix_audit_log_created", table_name="audit_log")
    op.drop_table("audit_log")
