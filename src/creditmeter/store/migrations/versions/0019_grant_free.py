"""what an account's grants hold free, by pool and source, kept as a running total

A balance read sums these few rows instead of every grant of the account; the writes
that change a grant's ``remaining`` or ``held`` move its row by as much. Filled here from
the grants as they stand: a row for each account, pool and source that has grants.

And an index of an account's grants by end, through which bringing an account up to
date reads the grants that ended since it last was, not every grant.

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "grant_free",
        sa.Column("account_id", sa.String(length=255), nullable=False),
        sa.Column("pool", sa.String(length=255), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("free", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("free >= 0", name=op.f("ck_grant_free_free_non_negative")),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_grant_free_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("account_id", "pool", "source", name=op.f("pk_grant_free")),
    )
    op.execute(
        "INSERT INTO grant_free (account_id, pool, source, free)"
        " SELECT account_id, pool, source, SUM(remaining - held) FROM grants"
        " GROUP BY account_id, pool, source"
    )
    ends = sa.text("expires_at IS NOT NULL")
    op.create_index(
        "ix_grants_ends",
        "grants",
        ["account_id", "expires_at"],
        postgresql_where=ends,
        sqlite_where=ends,
    )


def downgrade() -> None:
    op.drop_index("ix_grants_ends", table_name="grants")
    op.drop_table("grant_free")
