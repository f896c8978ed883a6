"""partial indexes of live grants: the consumption order, the next ends, later starts

A use case on an account with more live grants than it loads with the lock reads them
through these indexes, only as far as it needs: the drawable grants of a pool in
consumption order (one index for grants that expire, ordered by their end, one for
grants that never do), the grants that ended with credits left, and the free credits of
grants that take effect later. Each holds only live grants (``remaining > 0``), so spent
grants, which accumulate, are never scanned.

Revision ID: 0018
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0014"
branch_labels = None
depends_on = None

INDEXES = (
    (
        "ix_grants_order_expiring",
        ["account_id", "pool", "priority", "expires_at", "created_at", "id"],
        "remaining > 0 AND expires_at IS NOT NULL",
    ),
    (
        "ix_grants_order_lasting",
        ["account_id", "pool", "priority", "created_at", "id"],
        "remaining > 0 AND expires_at IS NULL",
    ),
    (
        "ix_grants_live_expires",
        ["account_id", "expires_at"],
        "remaining > 0 AND expires_at IS NOT NULL",
    ),
    ("ix_grants_live_effective", ["account_id", "effective_at"], "remaining > 0"),
)


def upgrade() -> None:
    for name, columns, where in INDEXES:
        condition = sa.text(where)
        op.create_index(name, "grants", columns, postgresql_where=condition, sqlite_where=condition)


def downgrade() -> None:
    for name, _, _ in INDEXES:
        op.drop_index(name, table_name="grants")
