"""Events for those who listen (outgoing webhooks, email), queued in the outbox with the
change that causes them; and the threshold alerts, checked under the account's lock.

:func:`check` runs at the end of every use case that changes an account, before the
locked account is saved: it compares the account's available balance and allowance with
the alert state read with the account's row (:mod:`creditmeter.core.alerts`), and queues
an event only for a line crossed. When nothing is crossed it reads and writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection

from creditmeter.core.alerts import OK, allowance_crossings, balance_crossings
from creditmeter.core.ids import new_id
from creditmeter.core.plans import Plan
from creditmeter.core.settings import Settings
from creditmeter.core.types import ANY_POOL
from creditmeter.service.locked_account import LockedAccount
from creditmeter.store import catalog, grants, outbox

EVENT_TOPIC_PREFIX = "event."


def queue(
    conn: Connection,
    now: datetime,
    event_type: str,
    data: Mapping[str, Any],
    *,
    dedupe_key: str | None = None,
) -> bool:
    """Queue one event in the caller's transaction; ``False`` if ``dedupe_key`` was
    queued before."""
    return outbox.enqueue(
        conn,
        new_id("job"),
        f"{EVENT_TOPIC_PREFIX}{event_type}",
        dict(data),
        now,
        dedupe_key=dedupe_key,
    )


def check(account: LockedAccount, settings: Settings) -> int:
    """Queue the threshold events the use case's changes crossed into, and move the
    account's alert state (saved with the locked account); how many were queued."""
    row = account.row
    now = account.now
    start = row.account.period_start
    # The available balance and the period's allowance, each read without reading every
    # grant of an account that has many: this runs on every write.
    used = limit = 0
    for g in account.period_allowances():
        used += g.amount - g.remaining
        limit += g.amount
    available = account.available
    percentage = used * 100 // limit if limit > 0 else None
    level = row.balance_alert
    quiet = level == OK and available > settings.low_balance_threshold
    told = row.allowance_alert
    if quiet and (percentage is None or percentage <= told):
        return 0
    told, reached = allowance_crossings(told, percentage, settings.allowance_alerts)
    if quiet and not reached:
        return 0
    queued = 0
    for crossing in reached:
        queue(
            account.conn,
            now,
            crossing.type,
            {
                "account_id": account.id,
                "percentage": crossing.threshold,
                "used": used,
                "limit": limit,
                "period_start": iso(start),
                "period_end": iso(row.account.period_end),
            },
        )
        queued += 1
    row.allowance_alert = told
    if quiet:
        return queued
    plan = _plan(account, row.account.plan)
    if plan is not None and plan.is_unlimited(ANY_POOL):
        return queued  # usage draws no credits: a low balance is nothing to tell
    level, crossed = balance_crossings(
        level, available, settings.low_balance_threshold, settings.critical_balance_threshold
    )
    for crossing in crossed:
        data = {"account_id": account.id, "available": available, "threshold": crossing.threshold}
        queue(account.conn, now, crossing.type, data)
        queued += 1
    row.balance_alert = level
    return queued


def _plan(account: LockedAccount, key: str | None) -> Plan | None:
    if key is None:
        return None
    return account.memo(("plan", key), lambda: catalog.get_plan(account.conn, key))


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


GRANT_EXPIRING_KEY = "grant.expiring:"
"""The prefix of the dedupe key of a grant's ``grant.expiring``: once per grant."""


def warn_expiring_grants(conn: Connection, now: datetime, settings: Settings, limit: int) -> int:
    """Queue ``grant.expiring`` once for each grant that expires within
    ``grant_expiring_days`` with credits left; how many were queued (run periodically by
    the sweeper; a grant warned before is not found again)."""
    days = settings.grant_expiring_days
    if days <= 0:
        return 0
    found = grants.expiring_unwarned(
        conn, now, now + timedelta(days=days), GRANT_EXPIRING_KEY, limit
    )
    for g in found:
        assert g.expires_at is not None
        data = {
            "account_id": g.account_id,
            "grant_id": g.id,
            "source": g.source.value,
            "pool": g.pool,
            "remaining": g.remaining,
            "expires_at": iso(g.expires_at),
        }
        queue(conn, now, "grant.expiring", data, dedupe_key=f"{GRANT_EXPIRING_KEY}{g.id}")
    return len(found)
