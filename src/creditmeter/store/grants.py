"""SQL for grants. Every change to a grant is a conditional update: the database refuses
what would take ``remaining`` below zero or ``held`` above ``remaining``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from creditmeter.core.grants import Grant
from creditmeter.core.types import ANY_POOL, AccountId, Credits, GrantId, GrantSource
from creditmeter.store import _statements
from creditmeter.store.tables import accounts, grant_free, grants, outbox


def grant_of(row: _statements.Row) -> Grant:
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


_FOR_ACCOUNT = _statements.Statement(
    sa.select(grants).where(
        grants.c.account_id == sa.bindparam("account_id"), _live(sa.bindparam("period_start"))
    )
)
LOAD_CAP = 8
"""The most live grants a use case loads with the account's lock: an account with more
is read through the indexes, as far as each use case needs (see ``LockedAccount``)."""
FOR_ACCOUNT_AS_STORED = _statements.Statement(
    sa.select(grants)
    .where(
        grants.c.account_id == sa.bindparam("account_id"),
        _live(
            sa.select(accounts.c.period_start)
            .where(accounts.c.id == sa.bindparam("account_id"))
            .scalar_subquery()
        ),
    )
    .limit(sa.bindparam("cap"))
)
"""The grants :func:`for_account` returns, the account's period read by the query itself,
at most ``cap`` of them (``LOAD_CAP + 1``: more than ``LOAD_CAP`` read means not all were):
for a caller that sends it together with the query that locks the account."""
FOR_ACCOUNTS_AS_STORED = _statements.Statement(
    sa.select(grants).where(
        _statements.one_of(grants.c.account_id, "account_ids"),
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
    rows = _statements.rows(
        conn, _FOR_ACCOUNT, {"account_id": account_id, "period_start": period_start}
    )
    return [grant_of(r) for r in rows]


# Reads through the indexes of an account's grants in consumption order and by start:
# what a use case on an account with more than ``LOAD_CAP`` live grants reads instead of
# all of them. The indexes hold no column a charge changes (``remaining``, ``held``), so
# that a charge writes no page of theirs.

LIVE = grants.c.remaining > sa.literal_column("0")


STREAMS = ((False, True), (False, False), (True, True), (True, False))
"""The streams of :func:`in_order`, by number: (of every pool, expiring)."""


def _stream(number: int) -> sa.Select[Any]:
    """One stream of :func:`in_order`, in the order of its index: the account's drawable
    grants of the charge's pool (or of every pool), those that expire
    (``ix_grants_order_expiring``) or those that never do (``ix_grants_order_lasting``),
    the first ``limit`` of them."""
    any_pool, expiring = STREAMS[number]
    ends = grants.c.expires_at
    query = sa.select(grants, sa.literal(number).label("stream")).where(
        grants.c.account_id == sa.bindparam("account_id"),
        grants.c.pool == sa.bindparam("any_pool" if any_pool else "pool"),
        LIVE,
        ends.is_not(None) if expiring else ends.is_(None),
        grants.c.remaining > grants.c.held,
        _statements.not_indexed(grants.c.effective_at) <= sa.bindparam("now"),
        grants.c.voided_at.is_(None),
    )
    if expiring:
        query = query.where(_statements.not_indexed(ends) > sa.bindparam("now"))
        order = [grants.c.priority, ends, grants.c.created_at, grants.c.id]
    else:
        order = [grants.c.priority, grants.c.created_at, grants.c.id]
    return query.order_by(*order).limit(sa.bindparam("limit"))


_IN_ORDER = _statements.Statement(
    sa.union_all(*(sa.select(_stream(n).subquery()) for n in range(len(STREAMS))))
)


def in_order(
    conn: Connection, account_id: AccountId, pool: str, now: datetime, limit: int
) -> list[tuple[int, Grant]]:
    """The first ``limit`` grants of each stream (:data:`STREAMS`) of the grants a charge
    of ``pool`` may draw at ``now``, in one query, each with its stream's number: each
    stream in consumption order, read in the order of its index."""
    params = {"account_id": account_id, "pool": pool, "any_pool": ANY_POOL, "now": now}
    rows = _statements.rows(conn, _IN_ORDER, {**params, "limit": limit})
    return [(r["stream"], grant_of(r)) for r in rows]


_LATER = _statements.Statement(
    sa.select(
        sa.func.coalesce(sa.func.sum(grants.c.remaining - grants.c.held), 0).label("free")
    ).where(
        grants.c.account_id == sa.bindparam("account_id"),
        LIVE,
        grants.c.effective_at > sa.bindparam("now"),
    )
)


def free_later(conn: Connection, account_id: AccountId, now: datetime) -> Credits:
    """What the account's grants that take effect after ``now`` hold free
    (``ix_grants_effective``)."""
    rows = _statements.rows(conn, _LATER, {"account_id": account_id, "now": now})
    return int(rows[0]["free"]) if rows else 0


_FREE_BY_POOL = _statements.Statement(
    sa.union_all(
        sa.select(grant_free.c.pool, grant_free.c.source, grant_free.c.free).where(
            grant_free.c.account_id == sa.bindparam("account_id")
        ),
        sa.select(
            grants.c.pool, grants.c.source, (grants.c.held - grants.c.remaining).label("free")
        ).where(
            grants.c.account_id == sa.bindparam("account_id"),
            LIVE,
            grants.c.effective_at > sa.bindparam("now"),
        ),
    )
)


def free_by_pool(
    conn: Connection, account_id: AccountId, now: datetime
) -> dict[tuple[str, GrantSource], Credits]:
    """What the account's grants active at ``now`` hold free, by pool and source: the
    running totals (``grant_free``) less what the grants that take effect later hold
    (``ix_grants_effective``). Exact while no grant that ended still holds free credits,
    as none does once the account is brought up to date (which every use case does first
    when the account is due, before it reads)."""
    found: dict[tuple[str, GrantSource], Credits] = {}
    for r in _statements.rows(conn, _FREE_BY_POOL, {"account_id": account_id, "now": now}):
        key = (r["pool"], GrantSource(r["source"]))
        found[key] = found.get(key, 0) + int(r["free"])
    return {key: free for key, free in found.items() if free > 0}


FreeKey = tuple[AccountId, str, GrantSource]
"""An account's running total of free credits: its account, pool and source."""

_NEW_FREE = grant_free.c.free + sa.bindparam("d_free")
_MOVE_FREE = _statements.Statement(
    grant_free.update()
    .where(
        grant_free.c.account_id == sa.bindparam("of_account"),
        grant_free.c.pool == sa.bindparam("of_pool"),
        grant_free.c.source == sa.bindparam("of_source"),
        _NEW_FREE >= 0,
    )
    .values(free=_NEW_FREE)
)


def move_free(conn: Connection, moves: Mapping[FreeKey, Credits]) -> None:
    """Add to the accounts' running totals of free credits what their grants' changes
    added to ``remaining - held``, each only if it stays at zero or more (a grant's total
    is there from its insert: :func:`insert`)."""
    many = [
        {"of_account": a, "of_pool": pool, "of_source": source.value, "d_free": free}
        for (a, pool, source), free in moves.items()
        if free != 0
    ]
    _statements.run_expecting(conn, _MOVE_FREE, many, "a running total of free credits")


_ENDING = _statements.Statement(
    sa.select(grants).where(
        grants.c.account_id == sa.bindparam("account_id"),
        grants.c.expires_at.is_not(None),
        grants.c.expires_at >= sa.bindparam("since"),
        grants.c.expires_at <= sa.bindparam("until"),
        grants.c.remaining > grants.c.held,
    )
)


def ending(
    conn: Connection, account_id: AccountId, since: datetime, until: datetime
) -> list[Grant]:
    """The account's grants that end from ``since`` to ``until`` and hold free credits
    (``ix_grants_ends``)."""
    params = {"account_id": account_id, "since": since, "until": until}
    return [grant_of(r) for r in _statements.rows(conn, _ENDING, params)]


_NEXT_ENDS = _statements.Statement(
    sa.select(grants.c.id, grants.c.expires_at)
    .where(
        grants.c.account_id == sa.bindparam("account_id"),
        grants.c.expires_at.is_not(None),
        grants.c.expires_at >= sa.bindparam("since"),
        LIVE,
    )
    .order_by(grants.c.expires_at)
    .limit(sa.bindparam("limit"))
)


def next_ends(
    conn: Connection, account_id: AccountId, since: datetime, limit: int
) -> list[tuple[GrantId, datetime]]:
    """The first ``limit`` ends from ``since`` on of the account's grants that hold
    credits, soonest first, with their grants (``ix_grants_ends``)."""
    params = {"account_id": account_id, "since": since, "limit": limit}
    return [(r["id"], r["expires_at"]) for r in _statements.rows(conn, _NEXT_ENDS, params)]


_OF_PERIOD = _statements.Statement(
    sa.select(grants).where(
        grants.c.account_id == sa.bindparam("account_id"),
        grants.c.source == GrantSource.ALLOWANCE.value,
        grants.c.period_start == sa.bindparam("period_start"),
    )
)


def allowances_of_period(
    conn: Connection, account_id: AccountId, period_start: datetime
) -> list[Grant]:
    """The account's allowance grants of the period that starts at ``period_start``, also
    spent ones (``uq_grants_period``)."""
    params = {"account_id": account_id, "period_start": period_start}
    return [grant_of(r) for r in _statements.rows(conn, _OF_PERIOD, params)]


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


_INSERT = _statements.Statement(grants.insert())
_INSERT_FREE = _statements.Statement(
    sa.text(
        "INSERT INTO grant_free (account_id, pool, source, free)"
        " VALUES (:account_id, :pool, :source, :free)"
        " ON CONFLICT (account_id, pool, source) DO UPDATE"
        " SET free = grant_free.free + excluded.free"
    )
)


def insert(conn: Connection, grant: Grant) -> None:
    """Insert a grant, and add what it holds free to the running total of its account,
    pool and source (made for the first such grant)."""
    key = {"account_id": grant.account_id, "pool": grant.pool, "source": grant.source.value}
    _statements.run(conn, _INSERT_FREE, {**key, "free": grant.free})
    _statements.run(
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


_VOID = _statements.Statement(
    grants.update()
    .where(grants.c.id == sa.bindparam("grant_id"), grants.c.voided_at.is_(None))
    .values(voided_at=sa.bindparam("at"))
)


def mark_voided(conn: Connection, grant_id: GrantId, at: datetime) -> None:
    """Mark a grant voided (once: a second writer's update misses and is refused)."""
    _statements.run_expecting(conn, _VOID, [{"grant_id": grant_id, "at": at}], "a grant's void")


_NEW_REMAINING = grants.c.remaining + sa.bindparam("d_remaining")
_NEW_HELD = grants.c.held + sa.bindparam("d_held")
_NEW_AMOUNT = grants.c.amount + sa.bindparam("d_amount")
_CHANGE = _statements.Statement(
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
    _statements.run_expecting(conn, _CHANGE, many, "a grant's change")


def list_for_account(
    conn: Connection, account_id: AccountId, *, include_spent: bool
) -> list[Grant]:
    query = sa.select(grants).where(grants.c.account_id == account_id)
    if not include_spent:
        query = query.where(grants.c.remaining > 0)
    query = query.order_by(grants.c.priority, grants.c.created_at, grants.c.id)
    return [grant_of(r) for r in conn.execute(query).mappings()]
