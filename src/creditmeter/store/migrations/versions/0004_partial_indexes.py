"""partial indexes: pending holds; a ledger transaction's purchase and a posting's grant

Holds are looked for by status only when pending (an account's, by expiry): one index of
pending holds replaces two of every hold by status, so that a hold that finishes is
removed from one index instead of moved within two. Most ledger transactions are usage,
with no purchase, and every usage transaction has one posting with no grant (the
consumption side): indexed, those NULLs were entries written with every usage and never
looked up. The indexes are built again, which takes a while on a large ledger and blocks
writes to their tables meanwhile.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

INDEXES = (("ledger_transactions", "purchase_id"), ("postings", "grant_id"))
PENDING_HOLD = sa.text("status = 'pending'")


def upgrade() -> None:
    op.drop_index("ix_holds_account_status", table_name="holds")
    op.drop_index("ix_holds_status_expires", table_name="holds")
    op.create_index(
        "ix_holds_pending",
        "holds",
        ["account_id", "expires_at"],
        postgresql_where=PENDING_HOLD,
        sqlite_where=PENDING_HOLD,
    )
    for table, column in INDEXES:
        op.drop_index(f"ix_{table}_{column}", table_name=table)
        where = sa.text(f"{column} IS NOT NULL")
        op.create_index(
            f"ix_{table}_{column}", table, [column], postgresql_where=where, sqlite_where=where
        )


def downgrade() -> None:
    for table, column in INDEXES:
        op.drop_index(f"ix_{table}_{column}", table_name=table)
        op.create_index(f"ix_{table}_{column}", table, [column])
    op.drop_index("ix_holds_pending", table_name="holds")
    op.create_index("ix_holds_status_expires", "holds", ["status", "expires_at"])
    op.create_index("ix_holds_account_status", "holds", ["account_id", "status"])
