"""voided grants and balancing holds

A grant an admin voided keeps when (``grants.voided_at``); a hold that reserved less than
its balancing authorize asked for keeps what was asked (``holds.requested``).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import creditmeter.store.tables

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "grants",
        sa.Column("voided_at", creditmeter.store.tables.UTCDateTime(timezone=True), nullable=True),
    )
    op.add_column("holds", sa.Column("requested", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("holds", "requested")
    op.drop_column("grants", "voided_at")
