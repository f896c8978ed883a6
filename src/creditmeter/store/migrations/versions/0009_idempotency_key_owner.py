"""idempotency keys scoped by their owner: the operator's side or one account

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("idempotency_keys", sa.Column("owner", sa.String(length=255), nullable=True))
    op.execute("UPDATE idempotency_keys SET owner = ''")  # every key so far was the operator's
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.alter_column("owner", existing_type=sa.String(length=255), nullable=False)
        batch_op.drop_constraint("pk_idempotency_keys", type_="primary")
        batch_op.create_primary_key("pk_idempotency_keys", ["owner", "key"])


def downgrade() -> None:
    # An account's keys may repeat the operator's: without their owner they would collide.
    op.execute("DELETE FROM idempotency_keys WHERE owner <> ''")
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.drop_constraint("pk_idempotency_keys", type_="primary")
        batch_op.create_primary_key("pk_idempotency_keys", ["key"])
        batch_op.drop_column("owner")
