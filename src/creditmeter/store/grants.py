"""SQL for grants. Every change to a grant is a conditional update: the database refuses
what would take ``remaining`` below zero or ``held`` above ``remaining``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from creditmeter.core.grants import Grant
from creditmeter.core.types import AccountId, Credits, GrantId, GrantSource
from creditmeter.store import direct
from creditmeter.store.tables import accounts, grants, outbox


def grant_of(row: direct.Row) -> Grant:
    return Grant(
        id=row["id"],
        account_id=row["account_id"],
        source=GrantSource(row["source"]),
        pool=row["pool"],
        priority=row["priority"],
        amount=row["amount"],
        remaining=row["remaining"],
        held=row["held"],
        effective_at=row["effective_at"],
        expires_at=row["expires_at"],
        created_at=row["created_at"],
        period_start=row["period_start"],
        reference=row["reference"],
        voided_at=row["voided_at"],
    )


def _live(account_period_start: sa.ColumnElement[datetime]) -> sa.ColumnElement[bool]:
    """A grant worth loading for a use case: one that still holds credits, or an allowance
    grant of the account's current period (whose spent state the allowance reports)."""
    return sa.or_(grants.c.remaining > 0, grants.c.period_start == account_period_start)


_FOR_ACCOUNT = direct.Statement(
    sa.select(grants).where(
        grants.c.account_id == sa.bindparam("account_id"), _live(sa.bindparam("period_start"))
    )
)
FOR_ACCOUNT_AS_STORED = direct.Statement(
    sa.select(grants).where(
        grants.c.account_id == sa.bindparam("account_id"),
        _live(
            sa.select(accounts.c.period_start)
            .where(accounts.c.id == sa.bindparam("account_id"))
            .scalar_subquery()
        ),
    )
)
"""The grants :func:`for_account` returns, the account's period read by the query itself:
for a caller that sends it together with the query that locks the account."""
FOR_ACCOUNTS_AS_STORED = direct.Statement(
    sa.select(grants).where(
        direct.one_of(grants.c.account_id, "account_ids"),
        _live(
            sa.select(accounts.c.period_start)
            .where(accounts.c.id == grants.c.account_id)
            .scalar_subquery()
        ),
    )
)
"""``FOR_ACCOUNT_AS_STORED`` for the accounts of a list."""


def for_account(conn: Connection, account_id: AccountId, period_start: datetime) -> list[Grant]:
    """The grants that still hold credits, and the current period's allowance grants."""
    rows = direct.rows(conn, _FOR_ACCOUNT, {"account_id": account_id, "period_start": period_start})
    return [grant_of(r) for r in rows]


def expiring_unwarned(
    conn: Connection, now: datetime, until: datetime, warned_prefix: str, limit: int
) -> list[Grant]:
    """Grants given by hand or bought that still hold credits and expire after ``now``
    and by ``until``, and that no outbox job's dedupe key ``warned_prefix + id`` names
    yet (plan grants end with their period: ``period.renewed`` tells of those)."""
    warned = sa.exists().where(outbox.c.dedupe_key == sa.literal(warned_prefix) + grants.c.id)
    query = (
        sa.select(grants)
        .where(
            grants.c.expires_at > now,
            grants.c.expires_at <= until,
            grants.c.remaining > 0,
            grants.c.voided_at.is_(None),
            grants.c.source.not_in([GrantSource.ALLOWANCE.value, GrantSource.ROLLOVER.value]),
            ~warned,
        )
        .order_by(grants.c.expires_at, grants.c.id)
        .limit(limit)
    )
    return [grant_of(r) for r in conn.execute(query).mappings()]


def get_many(conn: Connection, ids: Iterable[GrantId]) -> list[Grant]:
    query = sa.select(grants).where(grants.c.id.in_(list(ids)))
    return [grant_of(r) for r in conn.execute(query).mappings()]


def in_period(
    conn: Connection,
    account_id: AccountId,
    source: GrantSource,
    pool: str,
    period_start: datetime,
) -> GrantId | None:
    """The id of the account's grant of ``source`` and ``pool`` for a period, if any (the
    unique constraint allows one)."""
    query = sa.select(grants.c.id).where(
        grants.c.account_id == account_id,
        grants.c.source == source.value,
        grants.c.pool == pool,
        grants.c.period_start == period_start,
    )
    found: GrantId | None = conn.execute(query).scalar_one_or_none()
    return found


_INSERT = direct.Statement(grants.insert())


def insert(conn: Connection, grant: Grant) -> None:
    direct.run(
        conn,
        _INSERT,
        {
            "id": grant.id,
            "account_id": grant.account_id,
            "source": grant.source.value,
            "pool": grant.pool,
            "priority": grant.priority,
            "amount": grant.amount,
            "remaining": grant.remaining,
            "held": grant.held,
            "effective_at": grant.effective_at,
            "expires_at": grant.expires_at,
            "created_at": grant.created_at,
            "period_start": grant.period_start,
            "reference": grant.reference,
            "voided_at": grant.voided_at,
        },
    )


_VOID = direct.Statement(
    grants.update()
    .where(grants.c.id == sa.bindparam("grant_id"), grants.c.voided_at.is_(None))
    .values(voided_at=sa.bindparam("at"))
)


def mark_voided(conn: Connection, grant_id: GrantId, at: datetime) -> None:
    """Mark a grant voided (once: a second writer's update misses and is refused)."""
    direct.run_expecting(conn, _VOID, [{"grant_id": grant_id, "at": at}], "a grant's void")


_NEW_REMAINING = grants.c.remaining + sa.bindparam("d_remaining")
_NEW_HELD = grants.c.held + sa.bindparam("d_held")
_NEW_AMOUNT = grants.c.amount + sa.bindparam("d_amount")
_CHANGE = direct.Statement(
    grants.update()
    .where(
        grants.c.id == sa.bindparam("grant_id"),
        _NEW_REMAINING >= _NEW_HELD,
        _NEW_HELD >= 0,
        _NEW_REMAINING <= _NEW_AMOUNT,
    )
    .values(remaining=_NEW_REMAINING, held=_NEW_HELD, amount=_NEW_AMOUNT)
)


@dataclass(frozen=True)
class Change:
    """What to add to a grant's remaining, held and amount."""

    remaining: Credits = 0
    held: Credits = 0
    amount: Credits = 0

    def __add__(self, other: Change) -> Change:
        return Change(
            self.remaining + other.remaining, self.held + other.held, self.amount + other.amount
        )


def change_many(conn: Connection, changes: Mapping[GrantId, Change]) -> None:
    """Add the changes to their grants, each only if the grant stays within its bounds; a
    grant that would not is a concurrent writer's doing, never a negative balance."""
    many = [
        {"grant_id": g, "d_remaining": c.remaining, "d_held": c.held, "d_amount": c.amount}
        for g, c in changes.items()
    ]
    direct.run_expecting(conn, _CHANGE, many, "a grant's change")


def list_for_account(
    conn: Connection, account_id: AccountId, *, include_spent: bool
) -> list[Grant]:
    query = sa.select(grants).where(grants.c.account_id == account_id)
    if not include_spent:
        query = query.where(grants.c.remaining > 0)
    query = query.order_by(grants.c.priority, grants.c.created_at, grants.c.id)
    return [grant_of(r) for r in conn.execute(query).mappings()]
