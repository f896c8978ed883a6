"""SQL for holds and their per-grant allocations."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from creditmeter.core.grants import Draw
from creditmeter.core.records import Hold
from creditmeter.core.types import AccountId, HoldId, HoldStatus, UsageId
from creditmeter.store import _statements
from creditmeter.store.tables import hold_allocations, holds


def _hold(row: _statements.Row) -> Hold:
    return Hold(
        id=row["id"],
        account_id=row["account_id"],
        feature=row["feature_key"],
        credits=row["credits"],
        reserved=row["reserved"],
        status=HoldStatus(row["status"]),
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        usage_id=row["usage_id"],
        requested=row["requested"],
    )


# The hot path's statements are built once: building one costs more than running it.
_WITH_ALLOCATIONS = sa.select(
    holds,
    hold_allocations.c.grant_id.label("allocated_grant_id"),
    hold_allocations.c.credits.label("allocated_credits"),
).select_from(holds.outerjoin(hold_allocations))
_GET = _statements.Statement(
    _WITH_ALLOCATIONS.where(holds.c.id == sa.bindparam("hold_id")).order_by(
        hold_allocations.c.position
    )
)
_GET_MANY = _statements.Statement(
    _WITH_ALLOCATIONS.where(_statements.one_of(holds.c.id, "hold_ids")).order_by(
        holds.c.id, hold_allocations.c.position
    )
)
PENDING = holds.c.status == sa.literal_column(f"'{HoldStatus.PENDING.value}'")
"""A pending hold, with the status written as a literal: a query that asks for pending
holds this way can use the index of pending holds in every plan, also in the generic plan
of a statement prepared on PostgreSQL, where a parameter's value is unknown."""
_INSERT = _statements.Statement(holds.insert())
_INSERT_ALLOCATIONS = _statements.Statement(hold_allocations.insert())
_ALLOCATIONS = _statements.Statement(
    sa.select(hold_allocations.c.grant_id, hold_allocations.c.credits)
    .where(hold_allocations.c.hold_id == sa.bindparam("hold_id"))
    .order_by(hold_allocations.c.position)
)
_FINISH = _statements.Statement(
    holds.update()
    .where(holds.c.id == sa.bindparam("hold_id"), PENDING)
    .values(
        status=sa.bindparam("new_status"),
        finished_at=sa.bindparam("at"),
        usage_id=sa.bindparam("the_usage_id"),
    )
)


@dataclass(frozen=True)
class FoundHold:
    hold: Hold
    details: dict[str, Any]
    """What it was authorized for: pool, unlimited, model, member, estimate, metadata."""
    allocations: list[Draw]
    """The credits it holds in each grant, in the order they were drawn."""


def get(conn: Connection, hold_id: HoldId) -> FoundHold | None:
    """A hold, what it was authorized for and its allocations, in one statement."""
    found = _statements.rows(conn, _GET, {"hold_id": hold_id})
    return _found(found) if found else None


def get_many(conn: Connection, hold_ids: Sequence[HoldId]) -> dict[HoldId, FoundHold]:
    """:func:`get` for many holds in one statement; the ids of no hold are left out."""
    if not hold_ids:
        return {}
    by_hold: dict[HoldId, list[_statements.Row]] = {}
    for row in _statements.rows(conn, _GET_MANY, {"hold_ids": list(hold_ids)}):
        by_hold.setdefault(row["id"], []).append(row)
    return {hold_id: _found(rows) for hold_id, rows in by_hold.items()}


def _found(rows: Sequence[_statements.Row]) -> FoundHold:
    """The hold of ``rows`` (one a hold's allocation, in their order)."""
    row = rows[0]
    details = {k: row[k] for k in ("pool", "unlimited", "model", "member", "estimate", "metadata")}
    allocations = [
        Draw(r["allocated_grant_id"], r["allocated_credits"])
        for r in rows
        if r["allocated_grant_id"] is not None
    ]
    return FoundHold(_hold(row), details, allocations)


@dataclass(frozen=True)
class NewHold:
    """A hold to store, with what the record itself does not carry."""

    hold: Hold
    pool: str
    unlimited: bool
    model: str | None
    member: str | None
    estimate: dict[str, Any]
    metadata: dict[str, Any]
    allocations: Sequence[Draw]


def insert(conn: Connection, new: NewHold) -> None:
    hold = new.hold
    _statements.run(
        conn,
        _INSERT,
        {
            "id": hold.id,
            "account_id": hold.account_id,
            "feature_key": hold.feature,
            "pool": new.pool,
            "credits": hold.credits,
            "reserved": hold.reserved,
            "requested": hold.requested,
            "unlimited": new.unlimited,
            "status": hold.status.value,
            "model": new.model,
            "member": new.member,
            "estimate": new.estimate,
            "metadata": new.metadata,
            "created_at": hold.created_at,
            "expires_at": hold.expires_at,
        },
    )
    _statements.run_many(
        conn,
        _INSERT_ALLOCATIONS,
        [
            {"hold_id": hold.id, "grant_id": d.grant_id, "position": i, "credits": d.credits}
            for i, d in enumerate(new.allocations)
        ],
    )


def allocations(conn: Connection, hold_id: HoldId) -> list[Draw]:
    found = _statements.rows(conn, _ALLOCATIONS, {"hold_id": hold_id})
    return [Draw(r["grant_id"], r["credits"]) for r in found]


@dataclass(frozen=True)
class Finished:
    """A pending hold's move to its final status."""

    hold_id: HoldId
    status: HoldStatus
    at: datetime
    usage_id: UsageId | None = None


def finish(conn: Connection, finished: Finished) -> None:
    """Move a pending hold to its final status; only a pending hold can move (one that
    another writer finished first is a :class:`~creditmeter.store._statements.ConcurrentUpdate`)."""
    params = {
        "hold_id": finished.hold_id,
        "new_status": finished.status.value,
        "at": finished.at,
        "the_usage_id": finished.usage_id,
    }
    _statements.run_expecting(conn, _FINISH, [params], f"hold {finished.hold_id} finishing")


def expired_ids(conn: Connection, account_id: AccountId, at: datetime) -> list[HoldId]:
    query = (
        sa.select(holds.c.id)
        .where(
            holds.c.account_id == account_id,
            PENDING,
            holds.c.expires_at <= at,
        )
        .order_by(holds.c.expires_at)
    )
    return list(conn.execute(query).scalars())


def next_expiry(conn: Connection, account_id: AccountId) -> datetime | None:
    query = sa.select(sa.func.min(holds.c.expires_at)).where(
        holds.c.account_id == account_id, PENDING
    )
    value: datetime | None = conn.execute(query).scalar()
    return value


_COUNT_PENDING = sa.select(sa.func.count()).where(PENDING, holds.c.expires_at > sa.bindparam("now"))


def count_pending(conn: Connection, now: datetime) -> int:
    """Pending holds not yet past their expiry at ``now``."""
    return int(conn.execute(_COUNT_PENDING, {"now": now}).scalar_one())


def pending_on_grant(conn: Connection, grant_id: str) -> list[HoldId]:
    """The pending holds that reserve credits of a grant, oldest first."""
    query = (
        sa.select(holds.c.id)
        .select_from(holds.join(hold_allocations))
        .where(hold_allocations.c.grant_id == grant_id, PENDING)
        .order_by(holds.c.created_at, holds.c.id)
    )
    return list(conn.execute(query).scalars())


def pending_of(conn: Connection, account_id: AccountId, at: datetime, limit: int) -> list[Hold]:
    """The account's pending holds not past their expiry, oldest first."""
    query = (
        sa.select(holds)
        .where(holds.c.account_id == account_id, PENDING, holds.c.expires_at > at)
        .order_by(holds.c.created_at, holds.c.id)
        .limit(limit)
    )
    return [_hold(row) for row in conn.execute(query).mappings()]
