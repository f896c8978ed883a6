"""The schema. Invariants the database can hold itself are declared here."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both engines. SQLite stores them as naive UTC text,
    ``2026-12-01 09:30:00.000000`` (SQLAlchemy's own layout, which sorts as it compares),
    converted here by the standard library's ISO functions rather than SQLAlchemy's
    patterns: the hot path converts a score of them a call."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "sqlite":
            return _SQLiteText()  # type: ignore[no-untyped-call]  # SQLAlchemy's, untyped
        return super().load_dialect_impl(dialect)

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | str | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.isoformat(" ", "microseconds")[: -len("+00:00")]
        return value

    def process_result_value(
        self, value: datetime | str | None, dialect: Dialect
    ) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # SQLite's naive UTC (a fifth of the time of .replace())
            return datetime.fromisoformat(value + "+00:00")
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class _SQLiteText(sqlite.DATETIME):
    """A ``DATETIME`` column on SQLite whose values :class:`UTCDateTime` converts itself."""

    def bind_processor(self, dialect: Dialect) -> None:
        return None

    def result_processor(self, dialect: Dialect, coltype: object) -> None:
        return None


class ExactDecimal(sa.TypeDecorator[Decimal]):
    """A decimal stored exactly on both engines: ``NUMERIC(precision, scale)`` on
    PostgreSQL; on SQLite, whose ``NUMERIC`` keeps a float (15 significant digits), its
    text in a ``TEXT`` column, rounded to the scale as PostgreSQL rounds it."""

    impl = sa.Numeric
    cache_ok = True

    def __init__(self, precision: int, scale: int) -> None:
        super().__init__(precision, scale)
        # Kept on the type itself too: SQLAlchemy's cache key of a type is made of its
        # arguments found among its attributes.
        self.precision, self.scale = precision, scale
        self.unit = Decimal(1).scaleb(-scale)

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.Text())
        return super().load_dialect_impl(dialect)

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Decimal | str | None:
        if value is None or dialect.name != "sqlite":
            return value
        return format(value.quantize(self.unit, rounding=ROUND_HALF_UP), "f")

    def process_result_value(self, value: Decimal | str | None, dialect: Dialect) -> Decimal | None:
        return Decimal(value) if isinstance(value, str) else value


JSONDocument = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
Credits = sa.BigInteger
CreditsTotal = sa.BigInteger().with_variant(sa.Numeric(38, 0), "postgresql")
"""A sum of credits with no account behind it to bound it (a day's usage recorded with
enforcement off can pass 64 bits): exact on PostgreSQL, 64 bits on SQLite."""
Key = sa.String(255)

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _json(name: str, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, JSONDocument, nullable=nullable)


plans = sa.Table(
    "plans",
    metadata,
    sa.Column("key", Key, primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    _json("allowances"),
    _json("features"),
    sa.Column("period", sa.String(32), nullable=False),
    sa.Column("rollover_cap", Credits, nullable=False, server_default="0"),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.CheckConstraint("rollover_cap >= 0", name="rollover_cap_non_negative"),
)

features = sa.Table(
    "features",
    metadata,
    sa.Column("key", Key, primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("pool", Key, nullable=False),
    _json("rule"),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

feature_versions = sa.Table(
    "feature_versions",
    metadata,
    sa.Column("key", Key, sa.ForeignKey("features.key"), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("pool", Key, nullable=False),
    _json("rule"),
    sa.Column("valid_from", UTCDateTime, nullable=False),
)

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("id", Key, primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("plan_key", Key, sa.ForeignKey("plans.key"), nullable=True),
    sa.Column("pending_plan_key", Key, sa.ForeignKey("plans.key"), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("period_start", UTCDateTime, nullable=False),
    sa.Column("period_end", UTCDateTime, nullable=False),
    sa.Column("balance", Credits, nullable=False),
    sa.Column("held", Credits, nullable=False),
    sa.Column("debt", Credits, nullable=False),
    sa.Column("overdraft_limit", Credits, nullable=False),
    sa.Column("due_at", UTCDateTime, nullable=False),
    _json("metadata"),
    sa.Column("payment_customer_id", sa.String(255), nullable=True),
    # The auto-recharge threshold while auto-recharge is enabled: read with the account's
    # row, so that a charge knows without another query whether to start a recharge.
    sa.Column("recharge_below", Credits, nullable=True),
    # The threshold alerts last sent (creditmeter.core.alerts): read with the row and
    # changed under its lock, so a crossing is told once however many writers race.
    sa.Column("balance_alert", sa.SmallInteger, nullable=False, server_default="0"),
    sa.Column("allowance_alert", sa.SmallInteger, nullable=False, server_default="0"),
    sa.CheckConstraint("status IN ('active', 'suspended', 'blocked')", name="status_known"),
    sa.CheckConstraint("held >= 0", name="held_non_negative"),
    sa.CheckConstraint("debt >= 0", name="debt_non_negative"),
    sa.CheckConstraint("held <= balance + debt", name="held_within_grants"),
    sa.CheckConstraint("overdraft_limit >= 0", name="overdraft_limit_non_negative"),
)

members = sa.Table(
    "members",
    metadata,
    sa.Column("account_id", Key, sa.ForeignKey("accounts.id"), primary_key=True),
    sa.Column("id", Key, primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

grants = sa.Table(
    "grants",
    metadata,
    sa.Column("id", Key, primary_key=True),
    sa.Column("account_id", Key, sa.ForeignKey("accounts.id"), nullable=False, index=True),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("pool", Key, nullable=False),
    sa.Column("priority", sa.Integer, nullable=False),
    sa.Column("amount", Credits, nullable=False),
    sa.Column("remaining", Credits, nullable=False),
    sa.Column("held", Credits, nullable=False),
    sa.Column("effective_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("period_start", UTCDateTime, nullable=True),
    sa.Column("reference", sa.String(255), nullable=True),
    sa.Column("voided_at", UTCDateTime, nullable=True),
    sa.CheckConstraint("remaining >= 0", name="remaining_non_negative"),
    sa.CheckConstraint("held >= 0", name="held_non_negative"),
    sa.CheckConstraint("held <= remaining", name="held_within_remaining"),
    sa.CheckConstraint("remaining <= amount", name="remaining_within_amount"),
    # One allowance (or rollover) grant per account, pool and period.
    sa.UniqueConstraint("account_id", "source", "pool", "period_start", name="uq_grants_period"),
    # An account's grants of a pool in consumption order (those that expire, by end; those
    # that never do), and by start: on columns a charge never changes, so that it writes
    # none of their pages.
    sa.Index(
        "ix_grants_order_expiring",
        "account_id",
        "pool",
        "priority",
        "expires_at",
        "created_at",
        "id",
        postgresql_where=sa.text("expires_at IS NOT NULL"),
        sqlite_where=sa.text("expires_at IS NOT NULL"),
    ),
    sa.Index(
        "ix_grants_order_lasting",
        "account_id",
        "pool",
        "priority",
        "created_at",
        "id",
        postgresql_where=sa.text("expires_at IS NULL"),
        sqlite_where=sa.text("expires_at IS NULL"),
    ),
    sa.Index("ix_grants_effective", "account_id", "effective_at"),
    # An account's grants by end: those that ended since it was last brought up to date.
    sa.Index(
        "ix_grants_ends",
        "account_id",
        "expires_at",
        postgresql_where=sa.text("expires_at IS NOT NULL"),
        sqlite_where=sa.text("expires_at IS NOT NULL"),
    ),
)

# What an account's grants hold free (remaining less held), by pool and source: moved by
# the same writes that change the grants, so that a balance reads a few rows here rather
# than summing every grant of the account.
grant_free = sa.Table(
    "grant_free",
    metadata,
    sa.Column("account_id", Key, sa.ForeignKey("accounts.id"), primary_key=True),
    sa.Column("pool", Key, primary_key=True),
    sa.Column("source", sa.String(32), primary_key=True),
    sa.Column("free", Credits, nullable=False),
    sa.CheckConstraint("free >= 0", name="free_non_negative"),
)

PENDING_HOLD = "status = 'pending'"
"""The condition of the index of pending holds (queries ask for it with
``creditmeter.store.holds.PENDING``)."""

holds = sa.Table(
    "holds",
    metadata,
    sa.Column("id", Key, primary_key=True),
    sa.Column("account_id", Key, sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("feature_key", Key, sa.ForeignKey("features.key"), nullable=False),
    sa.Column("pool", Key, nullable=False),
    sa.Column("credits", Credits, nullable=False),
    sa.Column("reserved", Credits, nullable=False),
    # What a balancing authorize asked for, when it could reserve less (then `credits`).
    sa.Column("requested", Credits, nullable=True),
    sa.Column("unlimited", sa.Boolean, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("model", sa.String(255), nullable=True),
    sa.Column("member", Key, nullable=True),
    _json("estimate"),
    _json("metadata"),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime, nullable=True),
    sa.Column("usage_id", Key, nullable=True),
    sa.CheckConstraint("reserved >= 0 AND reserved <= credits", name="reserved_within_credits"),
    sa.CheckConstraint(
        "status IN ('pending', 'settled', 'released', 'expired')", name="status_known"
    ),
    # Only pending holds are ever looked for by status (an account's, by expiry): a
    # finished hold leaves the index, and only its own row is written when it finishes.
    sa.Index(
        "ix_holds_pending",
        "account_id",
        "expires_at",
        postgresql_where=sa.text(PENDING_HOLD),
        sqlite_where=sa.text(PENDING_HOLD),
    ),
)

hold_allocations = sa.Table(
    "hold_allocations",
    metadata,
    sa.Column("hold_id", Key, sa.ForeignKey("holds.id"), primary_key=True),
    sa.Column("grant_id", Key, sa.ForeignKey("grants.id"), primary_key=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("credits", Credits, nullable=False),
    sa.CheckConstraint("credits > 0", name="credits_positive"),
)

usage_records = sa.Table(
    "usage_records",
    metadata,
    sa.Column("id", Key, primary_key=True),
    sa.Column("account_id", Key, sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("feature_key", Key, sa.ForeignKey("features.key"), nullable=False),
    sa.Column("feature_version", sa.Integer, nullable=False),
    sa.Column("pool", Key, nullable=False),
    sa.Column("model", sa.String(255), nullable=True),
    sa.Column("member", Key, nullable=True),
    _json("quantities"),
    sa.Column("provider_cost", ExactDecimal(20, 10), nullable=True),
    sa.Column("credits", Credits, nullable=False),
    sa.Column("charged", Credits, nullable=False),
    sa.Column("debited", Credits, nullable=False),
    sa.Column("uncollected", Credits, nullable=False),
    sa.Column("refunded", Credits, nullable=False),
    sa.Column("unlimited", sa.Boolean, nullable=False),
    sa.Column("success", sa.Boolean, nullable=False),
    # Priced at the feature's default rates: it had none for the model (migration 0011).
    sa.Column("unknown_model", sa.Boolean, nullable=False, server_default=sa.false()),
    # A cost-plus usage's: the price-book version of its provider cost (migration 0011).
    sa.Column("price_book_version", sa.Integer, nullable=True),
    sa.Column("hold_id", Key, sa.ForeignKey("holds.id"), nullable=True),
    sa.Column("transaction_id", Key, nullable=True),
    _json("metadata"),
    sa.Column("created_at", UTCDateTime, nullable=False),
    # An unlimited allowance records the credits and draws none of them.
    sa.CheckConstraint(
        "charged + debited + uncollected = CASE WHEN unlimited THEN 0 ELSE credits END",
        name="credits_accounted",
    ),
    sa.CheckConstraint("refunded >= 0 AND refunded <= charged + debited", name="refund_bounded"),
    sa.Index("ix_usage_records_account_created", "account_id", "created_at"),
    # The records of a part of a day, for the stats over every account (docs/stats.md).
    sa.Index("ix_usage_records_created", "created_at"),
)

# Usage summed per UTC day, account, feature and model, kept in the transaction of each
# usage and of each refund of one: what the stats over every account read for whole days
# (docs/stats.md). Provider costs as whole dollars and 1e-10 USD units of the rest: integer
# sums, exact on both engines.
usage_daily = sa.Table(
    "usage_daily",
    metadata,
    sa.Column("day", sa.String(10), primary_key=True),
    sa.Column("account_id", Key, primary_key=True),
    sa.Column("feature_key", Key, primary_key=True),
    sa.Column("model", sa.String(255), primary_key=True),
    sa.Column("events", sa.BigInteger, nullable=False),
    sa.Column("credits", CreditsTotal, nullable=False),
    sa.Column("consumed", CreditsTotal, nullable=False),
    sa.Column("refunded", CreditsTotal, nullable=False),
    sa.Column("cost_dollars", sa.BigInteger, nullable=False),
    sa.Column("cost_fraction", sa.BigInteger, nullable=False),
    sa.Column("without_cost", sa.BigInteger, nullable=False),
)

# What usage drew on unlimited allowances, per pool and period: no grant shows it.
unlimited_usage = sa.Table(
    "unlimited_usage",
    metadata,
    sa.Column("account_id", Key, sa.ForeignKey("accounts.id"), primary_key=True),
    sa.Column("pool", Key, primary_key=True),
    sa.Column("period_start", UTCDateTime, primary_key=True),
    sa.Column("credits", Credits, nullable=False),
    sa.CheckConstraint("credits >= 0", name="credits_non_negative"),
)


def _index_where_set(table: str, column: str) -> sa.Index:
    """An index of the rows where ``column`` is set: most rows leave it NULL, and a query
    never looks for those through it."""
    where = sa.text(f"{column} IS NOT NULL")
    return sa.Index(f"ix_{table}_{column}", column, postgresql_where=where, sqlite_where=where)


ledger_transactions = sa.Table(
    "ledger_transactions",
    metadata,
    sa.Column("id", Key, primary_key=True),
    sa.Column("account_id", Key, sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("amount", Credits, nullable=False),
    sa.Column("balance_before", Credits, nullable=False),
    sa.Column("balance_after", Credits, nullable=False),
    sa.Column("description", sa.String(500), nullable=False),
    sa.Column("usage_id", Key, nullable=True),
    sa.Column("hold_id", Key, nullable=True),
    sa.Column("purchase_id", Key, nullable=True),
    _json("metadata"),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index("ix_ledger_transactions_account_created", "account_id", "created_at", "id"),
    _index_where_set("ledger_transactions", "purchase_id"),
)

postings = sa.Table(
    "postings",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "transaction_id", Key, sa.ForeignKey("ledger_transactions.id"), nullable=False, index=True
    ),
    sa.Column("ledger_account", Key, nullable=False),
    sa.Column("grant_id", Key, sa.ForeignKey("grants.id"), nullable=True),
    sa.Column("amount", Credits, nullable=False),
    sa.CheckConstraint("amount <> 0", name="amount_non_zero"),
    _index_where_set("postings", "grant_id"),
)

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    # Whose key it is: "" for the operator's side (the library, the CLI, staff and service
    # keys), an account's id for keys sent with that account's own API keys.
    sa.Column("owner", Key, primary_key=True),
    sa.Column("key", Key, primary_key=True),
    sa.Column("operation", sa.String(64), nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    _json("result"),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", Key, primary_key=True),
    sa.Column("digest", sa.String(64), nullable=False, unique=True),
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("account_id", Key, sa.ForeignKey("accounts.id"), nullable=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("revoked_at", UTCDateTime, nullable=True),
    sa.CheckConstraint("role IN ('service', 'admin', 'superadmin', 'account')", name="role_known"),
    sa.CheckConstraint(
        "(role = 'account') = (account_id IS NOT NULL)", name="account_role_names_account"
    ),
)

settings_versions = sa.Table(
    "settings_versions",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    _json("values"),
    _json("changes"),
    sa.Column("changed_by", sa.String(255), nullable=False),
    sa.Column("changed_at", UTCDateTime, nullable=False),
)

# One row: a number that every change of a feature or a plan increases, read with each
# account so that a use case knows whether the prices and plans it remembers still hold.
catalog_version = sa.Table(
    "catalog_version",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.CheckConstraint("id = 1", name="one_row"),
)

packages = sa.Table(
    "packages",
    metadata,
    sa.Column("id", Key, primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("credits", Credits, nullable=False),
    sa.Column("bonus_credits", Credits, nullable=False),
    sa.Column("price_amount", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("popular", sa.Boolean, nullable=False),
    sa.Column("best_value", sa.Boolean, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("sort_order", sa.Integer, nullable=False),
    sa.Column("stripe_price_id", sa.String(255), nullable=True),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.CheckConstraint("credits > 0", name="credits_positive"),
    sa.CheckConstraint("bonus_credits >= 0", name="bonus_credits_non_negative"),
    sa.CheckConstraint("price_amount > 0", name="price_positive"),
)

purchases = sa.Table(
    "purchases",
    metadata,
    sa.Column("id", Key, primary_key=True),
    sa.Column("account_id", Key, sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("package_id", Key, sa.ForeignKey("packages.id"), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("credits", Credits, nullable=False),
    sa.Column("bonus_credits", Credits, nullable=False),
    sa.Column("price_amount", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("provider", sa.String(16), nullable=False),
    sa.Column("session_id", sa.String(255), nullable=True, unique=True),
    sa.Column("payment_intent_id", sa.String(255), nullable=True, unique=True),
    sa.Column("amount_paid", sa.BigInteger, nullable=False),
    sa.Column("amount_refunded", sa.BigInteger, nullable=False),
    sa.Column("credits_clawed_back", Credits, nullable=False),
    # Clawed-back credits the account had spent already: owed as debt on its balance, or
    # recorded here only (per the refund_shortfall setting).
    sa.Column("clawback_debt", Credits, nullable=False),
    sa.Column("credits_unrecovered", Credits, nullable=False),
    sa.Column("failure_reason", sa.String(500), nullable=True),
    sa.Column("transaction_id", Key, nullable=True, unique=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("paid_at", UTCDateTime, nullable=True),
    sa.Column("fulfilled_at", UTCDateTime, nullable=True),
    sa.CheckConstraint(
        "status IN ('pending', 'paid', 'fulfilled', 'failed', 'refunded')", name="status_known"
    ),
    sa.CheckConstraint("kind IN ('checkout', 'auto_recharge', 'external')", name="kind_known"),
    sa.CheckConstraint(
        "credits_clawed_back >= 0 AND credits_clawed_back <= credits", name="clawback_bounded"
    ),
    sa.CheckConstraint(
        "clawback_debt >= 0 AND credits_unrecovered >= 0 "
        "AND clawback_debt + credits_unrecovered <= credits_clawed_back",
        name="debt_bounded",
    ),
    sa.CheckConstraint(
        "amount_refunded >= 0 AND amount_refunded <= amount_paid", name="refund_bounded"
    ),
    # Fulfilled (and refunded) purchases name the one transaction that credited them.
    sa.CheckConstraint(
        "(status IN ('fulfilled', 'refunded')) = (transaction_id IS NOT NULL)",
        name="fulfilled_has_transaction",
    ),
    sa.Index("ix_purchases_account_created", "account_id", "created_at"),
)

auto_recharges = sa.Table(
    "auto_recharges",
    metadata,
    sa.Column("account_id", Key, sa.ForeignKey("accounts.id"), primary_key=True),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("threshold", Credits, nullable=False),
    sa.Column("package_id", Key, sa.ForeignKey("packages.id"), nullable=True),
    sa.Column("payment_method", sa.String(255), nullable=True),
    sa.Column("monthly_cap", sa.BigInteger, nullable=True),
    sa.Column("consecutive_failures", sa.Integer, nullable=False),
    sa.Column("disabled_reason", sa.String(500), nullable=True),
    # At most one recharge at a time: the purchase in flight.
    sa.Column(
        "pending_purchase_id", Key, sa.ForeignKey("purchases.id"), nullable=True, unique=True
    ),
    sa.Column("retry_at", UTCDateTime, nullable=True),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.CheckConstraint("threshold >= 0", name="threshold_non_negative"),
    sa.CheckConstraint("monthly_cap IS NULL OR monthly_cap > 0", name="monthly_cap_positive"),
    sa.CheckConstraint(
        "NOT enabled OR (package_id IS NOT NULL AND payment_method IS NOT NULL)",
        name="enabled_is_complete",
    ),
)

payment_events = sa.Table(
    "payment_events",
    metadata,
    # The provider's event id: an event is stored, and applied, once.
    sa.Column("id", sa.String(255), primary_key=True),
    sa.Column("provider", sa.String(16), nullable=False),
    sa.Column("type", sa.String(100), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("note", sa.String(500), nullable=True),
    sa.Column("purchase_id", Key, nullable=True),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Column("handled_at", UTCDateTime, nullable=True),
    sa.CheckConstraint(
        "status IN ('received', 'applied', 'ignored', 'flagged')", name="status_known"
    ),
    sa.Index("ix_payment_events_status", "status"),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", Key, primary_key=True),
    sa.Column("topic", sa.String(100), nullable=False),
    _json("payload"),
    # A job that must not be queued twice (the handling of one event, one recharge).
    sa.Column("dedupe_key", sa.String(255), nullable=True, unique=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    # When the job may next be taken: a worker that takes it moves this past its lease, so
    # a job whose worker died is taken again once the lease runs out.
    sa.Column("run_at", UTCDateTime, nullable=False),
    sa.Column("last_error", sa.String(2000), nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime, nullable=True),
    sa.CheckConstraint("status IN ('pending', 'done', 'dead')", name="status_known"),
    sa.Index("ix_outbox_status_run_at", "status", "run_at"),
)

# Who changed credits, prices, plans, settings or keys: written in the transaction of the
# change. Ids are kept as they were recorded, without foreign keys: the log outlives what
# it names.
price_book_versions = sa.Table(
    "price_book_versions",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("source", sa.String(64), nullable=False),
    # The providers the import refreshed; null: every provider.
    _json("providers", nullable=True),
    sa.Column("prices", sa.Integer, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

model_prices = sa.Table(
    "model_prices",
    metadata,
    sa.Column(
        "version", sa.Integer, sa.ForeignKey("price_book_versions.version"), primary_key=True
    ),
    sa.Column("provider", sa.String(64), primary_key=True),
    sa.Column("model", sa.String(255), primary_key=True),
    sa.Column("unit", sa.String(64), primary_key=True),
    sa.Column("usd_per_million", ExactDecimal(20, 10), nullable=False),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", Key, primary_key=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("actor_kind", sa.String(16), nullable=False),
    sa.Column("actor_key_id", Key, nullable=True),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("account_id", Key, nullable=True),
    sa.Column("subject_id", Key, nullable=True),
    _json("details"),
    sa.CheckConstraint(
        "actor_kind IN ('api_key', 'admin_key_env', 'library', 'cli', 'system')",
        name="actor_kind_known",
    ),
    sa.CheckConstraint(
        "(actor_kind = 'api_key') = (actor_key_id IS NOT NULL)", name="api_key_actor_names_key"
    ),
    sa.Index("ix_audit_log_created", "created_at", "id"),
    sa.Index("ix_audit_log_account_created", "account_id", "created_at", "id"),
    sa.Index("ix_audit_log_actor_created", "actor_key_id", "created_at", "id"),
)

# Random secrets a database keeps for itself (the development provider's webhook signing
# secret and checkout page key), made on first use: never a published constant.
secrets = sa.Table(
    "secrets",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(255), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

# Where events are sent, signed with the endpoint's secret (kept as it is: signing needs it).
webhook_endpoints = sa.Table(
    "webhook_endpoints",
    metadata,
    sa.Column("id", Key, primary_key=True),
    sa.Column("url", sa.String(2000), nullable=False),
    _json("event_types"),
    sa.Column("description", sa.String(500), nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("secret", sa.String(255), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    # Failed deliveries since the last success; at the limit the endpoint is disabled.
    sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
    sa.Column("disabled_reason", sa.String(500), nullable=True),
    # The secret before the last rotation, which also signs until previous_secret_until.
    sa.Column("previous_secret", sa.String(255), nullable=True),
    sa.Column("previous_secret_until", UTCDateTime, nullable=True),
)

# Each attempt to deliver an event to an endpoint; deleted with its endpoint.
webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", Key, primary_key=True),
    sa.Column(
        "endpoint_id",
        Key,
        sa.ForeignKey("webhook_endpoints.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("event_id", Key, nullable=False),
    sa.Column("event_type", sa.String(100), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("status_code", sa.Integer, nullable=True),
    sa.Column("latency_ms", sa.Integer, nullable=False),
    sa.Column("error", sa.String(2000), nullable=True),
    sa.Column("next_retry_at", UTCDateTime, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index("ix_webhook_deliveries_endpoint_created", "endpoint_id", "created_at", "id"),
)

# Who hears an account's events and how (core.notifications): billing email addresses and
# the channels of each event type.
notification_preferences = sa.Table(
    "notification_preferences",
    metadata,
    sa.Column("account_id", Key, sa.ForeignKey("accounts.id"), primary_key=True),
    _json("emails"),
    _json("channels"),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

# Each attempt to send an event by email to one address.
email_deliveries = sa.Table(
    "email_deliveries",
    metadata,
    sa.Column("id", Key, primary_key=True),
    sa.Column("event_id", Key, nullable=False),
    sa.Column("event_type", sa.String(100), nullable=False),
    sa.Column("account_id", Key, nullable=True),
    sa.Column("recipient", sa.String(254), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("error", sa.String(2000), nullable=True),
    sa.Column("next_retry_at", UTCDateTime, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index("ix_email_deliveries_event", "event_id", "created_at"),
)

portal_sessions = sa.Table(
    "portal_sessions",
    metadata,
    sa.Column("id", Key, primary_key=True),
    sa.Column("digest", sa.String(64), nullable=False, unique=True),
    sa.Column("account_id", Key, sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("return_url", sa.String(2000), nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("used_at", UTCDateTime, nullable=True),
)
