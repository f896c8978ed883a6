"""webhook endpoints count their failures in a row, say why they were disabled and keep
their previous secret through a rotation's overlap; creditmeter itself may act in the
audit log

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import creditmeter.store.tables

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

KINDS = "'api_key', 'admin_key_env', 'library', 'cli'"


def upgrade() -> None:
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.add_column(sa.Column("failures", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("disabled_reason", sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column("previous_secret", sa.String(length=255), nullable=True))
        batch_op.add_column(
            sa.Column(
                "previous_secret_until",
                creditmeter.store.tables.UTCDateTime(timezone=True),
                nullable=True,
            )
        )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_audit_log_actor_kind_known"), type_="check")
        batch_op.create_check_constraint(
            op.f("ck_audit_log_actor_kind_known"), f"actor_kind IN ({KINDS}, 'system')"
        )


def downgrade() -> None:
    op.execute("DELETE FROM audit_log WHERE actor_kind = 'system'")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_audit_log_actor_kind_known"), type_="check")
        batch_op.create_check_constraint(
            op.f("ck_audit_log_actor_kind_known"), f"actor_kind IN ({KINDS})"
        )
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.drop_column("previous_secret_until")
        batch_op.drop_column("previous_secret")
        batch_op.drop_column("disabled_reason")
        batch_op.drop_column("failures")
