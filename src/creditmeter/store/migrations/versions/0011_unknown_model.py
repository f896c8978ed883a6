"""unknown models, cost-plus usage and the price book's versions of model prices

A usage record says whether its feature had no rates for its model and priced it at the
default rates (``usage_records.unknown_model``; earlier records did not), and a cost-plus
usage the price-book version of its provider cost (``price_book_version``). Each import of
the price catalogue is a version (``price_book_versions``) with its providers' prices per
model and unit (``model_prices``), kept as imported.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import creditmeter.store.tables

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "usage_records",
        sa.Column("unknown_model", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column("usage_records", sa.Column("price_book_version", sa.Integer(), nullable=True))
    op.create_table(
        "price_book_versions",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column(
            "providers",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("prices", sa.Integer(), nullable=False),
        sa.Column(
            "created_at", creditmeter.store.tables.UTCDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_price_book_versions")),
    )
    op.create_table(
        "model_prices",
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=255), nullable=False),
        sa.Column("unit", sa.String(length=64), nullable=False),
        sa.Column("usd_per_million", creditmeter.store.tables.ExactDecimal(20, 10), nullable=False),
        sa.ForeignKeyConstraint(
            ["version"],
            ["price_book_versions.version"],
            name=op.f("fk_model_prices_version_price_book_versions"),
        ),
        sa.PrimaryKeyConstraint(
            "version", "provider", "model", "unit", name=op.f("pk_model_prices")
        ),
    )


def downgrade() -> None:
    op.drop_table("model_prices")
    op.drop_table("price_book_versions")
    op.drop_column("usage_records", "price_book_version")
    op.drop_column("usage_records", "unknown_model")
