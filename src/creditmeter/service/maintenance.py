"""Bringing an account up to date: expired holds, period rollover, expired grants.

It runs lazily at the start of every use case that touches an account whose ``due_at``
has passed, and from the sweeper for idle accounts. Each step is idempotent: the unique
allowance grant per (account, pool, period) and the conditional updates make a second
run a no-op.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from sqlalchemy.engine import Connection

from creditmeter.core.errors import NotFound
from creditmeter.core.grants import Grant
from creditmeter.core.periods import Period, period_containing
from creditmeter.core.plans import Plan
from creditmeter.core.records import Posting
from creditmeter.core.types import (
    GrantSource,
    HoldStatus,
    PeriodKind,
    SystemAccount,
    TransactionType,
)
from creditmeter.service import alerts
from creditmeter.service import settings as settings_service
from creditmeter.service.book import AccountBook
from creditmeter.store import accounts, catalog, holds
from creditmeter.store.accounts import AccountRow
from creditmeter.store.grants import Change as GrantChange
from creditmeter.store.idempotency import StoredResult


def lock_current(
    conn: Connection, now: datetime, account_id: str
) -> tuple[AccountRow, list[Grant]]:
    """Lock the account, brought up to date, and read its grants with it: its upkeep
    (expired holds, an ended period, expired grants) is committed by itself, so a refusal
    that follows cannot undo it."""
    row, loaded, _ = lock_current_and_key(conn, now, account_id, None)
    return row, loaded


def lock_current_and_key(
    conn: Connection, now: datetime, account_id: str, idempotency_key: str | None
) -> tuple[AccountRow, list[Grant], StoredResult | None]:
    """:func:`lock_current`, and what is stored under the operator's ``idempotency_key``
    (if one is given), read in the round trip that takes the lock, once it is taken."""
    found, stored = accounts.lock_with_grants_and_key(conn, account_id, idempotency_key)
    if found is None:
        raise NotFound("account", account_id)
    if now >= found[0].due_at:
        _upkeep(conn, now, *found)
        conn.commit()
        found = _relocked(conn, account_id)
    return *found, stored


def lock_current_many(
    conn: Connection, now: datetime, account_ids: Sequence[str]
) -> dict[str, tuple[AccountRow, list[Grant]]]:
    """:func:`lock_current` for several accounts, locked together in the order of their
    ids, for a use case whose refusals raise nothing (a batch): their upkeep is committed
    with it. The ids of no account are left out."""
    found = accounts.lock_many_with_grants(conn, account_ids)
    for account_id, (row, loaded) in found.items():
        if now >= row.due_at:
            _upkeep(conn, now, row, loaded)
            found[account_id] = _relocked(conn, account_id)
    return found


def _upkeep(conn: Connection, now: datetime, row: AccountRow, loaded: list[Grant]) -> None:
    upkeep = AccountBook(conn, row, now, loaded=loaded)
    bring_up_to_date(upkeep)
    alerts.check(upkeep, settings_service.current(conn))
    upkeep.save()


def _relocked(conn: Connection, account_id: str) -> tuple[AccountRow, list[Grant]]:
    """The account and its grants read again, as its upkeep left them."""
    found = accounts.lock_with_grants(conn, account_id)
    assert found is not None
    return found


def bring_up_to_date(book: AccountBook) -> None:
    """Expire the holds past their end, end every period that has ended, one at a time
    and each as it would have ended on time, and lapse the grants past their end."""
    if book.now < book.row.due_at:
        return
    for hold_id in holds.expired_ids(book.conn, book.id, book.now):
        released = book.unreserve(holds.allocations(book.conn, hold_id))
        # At once: the next expiry, below, is read from the holds still pending.
        holds.finish(book.conn, holds.Finished(hold_id, HoldStatus.EXPIRED, book.now))
        data = {"account_id": book.id, "hold_id": hold_id, "credits": released}
        alerts.queue(book.conn, book.now, "hold.expired", data)
    while book.now >= book.row.account.period_end:
        roll_period(book)
    expire_grants(book)
    candidates = [
        book.row.account.period_end,
        book.next_grant_expiry(),
        holds.next_expiry(book.conn, book.id),
    ]
    book.row.due_at = min(c for c in candidates if c is not None)


def expire_grants(book: AccountBook, until: datetime | None = None) -> None:
    """Lapse what is free in the grants that ended by ``until`` (by default now), in the
    order they ended: an allowance carries what its plan's rollover cap still has room
    for into the next period, and the rest expires at the grant's end. A held part waits
    for its hold, and lapses the same way when the hold gives it back, so a hold that is
    released late leaves the account as if it had never been."""
    until = book.now if until is None else until
    while lapsing := book.ended_with_free(until):
        moment = min(g.expires_at for g in lapsing if g.expires_at is not None)
        ending = [g for g in lapsing if g.expires_at == moment]
        for g in ending:
            if g.source is GrantSource.ALLOWANCE:
                _roll_over(book, g)
        post_expiry(book, [book.grant(g.id) for g in ending], moment)


def post_expiry(book: AccountBook, expiring: list[Grant], moment: datetime) -> None:
    """What is free in ``expiring`` expires at ``moment`` (a held part waits)."""
    total = sum(g.free for g in expiring)
    if total <= 0:
        return
    legs = [Posting(book.wallet, -g.free, g.id) for g in expiring if g.free > 0]
    legs.append(Posting(SystemAccount.EXPIRY.value, total))
    book.post(
        TransactionType.EXPIRY,
        legs,
        {g.id: GrantChange(remaining=-g.free) for g in expiring if g.free > 0},
        f"{total} unused credits expired",
        created_at=moment,
    )


def plan_of(book: AccountBook) -> Plan | None:
    key = book.row.account.plan
    return None if key is None else _plan(book, key)


def _plan(book: AccountBook, key: str) -> Plan | None:
    return book.memo(("plan", key), lambda: catalog.get_plan(book.conn, key))


def current_period(plan: Plan | None, anchor: datetime, at: datetime) -> Period:
    kind = PeriodKind.CALENDAR_MONTH if plan is None else plan.period
    return period_containing(kind, anchor, at)


def roll_period(book: AccountBook) -> None:
    """End the account's current period as it would have ended on time: its grants lapse
    at their end, a pending plan change takes effect, and the following period (the one
    that starts where this one ends) gets its allowance."""
    ended = book.row.account.period_end
    expire_grants(book, until=ended)
    account = book.row.account
    plan = plan_of(book)
    if account.pending_plan is not None:
        plan = catalog.get_plan(book.conn, account.pending_plan)
        account = replace(account, plan=account.pending_plan, pending_plan=None)
    period = current_period(plan, account.created_at, ended)
    book.row.account = replace(account, period_start=period.start, period_end=period.end)
    if plan is None or not plan.renewed_by_invoice:
        renewed(book, plan, period, 0 if plan is None else issue_allowance(book, plan, period))


def renewed(book: AccountBook, plan: Plan | None, period: Period, allowance: int) -> None:
    """A new period began (by the calendar, or by a paid invoice): its allowance alerts
    are armed again, and ``period.renewed`` is queued."""
    book.row.allowance_alert = 0
    data = {
        "account_id": book.id,
        "plan": None if plan is None else plan.key,
        "period_start": alerts.iso(period.start),
        "period_end": alerts.iso(period.end),
        "allowance": allowance,
    }
    alerts.queue(book.conn, book.now, "period.renewed", data)


def _roll_over(book: AccountBook, allowance: Grant) -> None:
    """Carry what is free in an ended allowance grant into the next period's ``rollover``
    grant of its pool, as far as the cap of the plan that issued it still has room."""
    key = (allowance.reference or "").removeprefix("plan:")
    plan = _plan(book, key) if allowance.reference and key else None
    if plan is None or plan.rollover_cap <= 0 or allowance.expires_at is None:
        return
    following = current_period(plan, book.row.account.created_at, allowance.expires_at)
    target = book.grant_in_period(GrantSource.ROLLOVER, allowance.pool, following.start)
    if target is not None and target.voided_at is not None:
        return  # an admin took the carried credits away: no more are carried into it
    carried = 0 if target is None else target.amount
    carry = min(allowance.free, plan.rollover_cap - carried)
    if carry <= 0:
        return
    if target is None:
        target = book.open_grant(
            GrantSource.ROLLOVER,
            pool=allowance.pool,
            effective_at=following.start,
            expires_at=following.end,
            period_start=following.start,
        )
    book.post(
        TransactionType.ROLLOVER,
        [Posting(book.wallet, -carry, allowance.id), Posting(book.wallet, carry, target.id)],
        {
            allowance.id: GrantChange(remaining=-carry),
            target.id: GrantChange(remaining=carry, amount=carry),
        },
        f"{carry} unused {allowance.pool} allowance carried into the next period",
        created_at=allowance.expires_at,
    )


def issue_allowance(book: AccountBook, plan: Plan, period: Period) -> int:
    """The period's allowance grants, one per limited pool, in one transaction; how many
    credits they hold."""
    issued: dict[str, int] = {}
    for pool, credits in sorted(plan.limited_allowances().items()):
        if credits > 0:
            g = book.open_grant(
                GrantSource.ALLOWANCE,
                pool=pool,
                effective_at=period.start,
                expires_at=period.end,
                period_start=period.start,
                reference=f"plan:{plan.key}",
            )
            issued[g.id] = credits
    if issued:
        book.issue(
            issued,
            GrantSource.ALLOWANCE,
            TransactionType.ALLOCATION,
            f"{plan.name} allowance for the period from {period.start:%Y-%m-%d}",
            created_at=max(period.start, book.row.account.created_at),
        )
        repay_debt(book, list(issued))
    return sum(issued.values())


def repay_debt(book: AccountBook, grant_ids: list[str]) -> None:
    """New credits pay the account's debt first."""
    legs: list[Posting] = []
    changes: dict[str, GrantChange] = {}
    left = book.row.debt
    for grant_id in grant_ids:
        g = book.grant(grant_id)
        take = min(g.free, left)
        if take:
            legs.append(Posting(book.wallet, -take, g.id))
            changes[g.id] = GrantChange(remaining=-take)
            left -= take
    repaid = book.row.debt - left
    if repaid:
        legs.append(Posting(book.wallet, repaid))
        book.post(TransactionType.DEBT_REPAYMENT, legs, changes, f"{repaid} credits of debt repaid")
