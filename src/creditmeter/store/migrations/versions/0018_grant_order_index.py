"""indexes of an account's grants in consumption order, and by start

A use case on an account with more live grants than it loads with the lock reads them
through these indexes, only as far as it needs: the drawable grants of a pool in
consumption order (one index for grants that expire, ordered by their end, one for
grants that never do), and the free credits of grants that take effect later. They hold
no column that a charge changes (``remaining``, ``held``), so a charge writes none of
their pages.

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

INDEXES = (
    (
        "ix_grants_order_expiring",
        ["account_id", "pool", "priority", "expires_at", "created_at", "id"],
        "expires_at IS NOT NULL",
    ),
    (
        "ix_grants_order_lasting",
        ["account_id", "pool", "priority", "created_at", "id"],
        "expires_at IS NULL",
    ),
    ("ix_grants_effective", ["account_id", "effective_at"], None),
)


def upgrade() -> None:
    for name, columns, where in INDEXES:
        condition = None if where is None else sa.text(where)
        op.create_index(name, "grants", columns, postgresql_where=condition, sqlite_where=condition)


def downgrade() -> None:
    for name, _, _ in INDEXES:
        op.drop_index(name, table_name="grants")
