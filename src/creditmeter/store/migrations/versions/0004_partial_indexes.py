"""partial indexes: a ledger transaction's purchase and a posting's grant, where set

Most ledger transactions are usage, with no purchase, and every usage transaction has one
posting with no grant (the consumption side): indexed, those NULLs were entries written
with every usage and never looked up. The two indexes are built again, which takes a
while on a large ledger and blocks writes to the two tables meanwhile.

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


def upgrade() -> None:
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
