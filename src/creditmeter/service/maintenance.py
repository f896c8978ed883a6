"""Bringing an account up to date: expired holds, period rollover, expired grants.

It runs lazily at the start of every use case that touches an account whose ``due_at``
has passed, and from the sweeper for idle accounts. Each step is idempotent: the unique
allowance grant per (account, pool, period) and the conditional updates make a second
run a no-op.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

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
from creditmeter.service.locked_account import LockedAccount
from creditmeter.store import catalog, holds
from creditmeter.store.grants import Change as GrantChange


def bring_up_to_date(account: LockedAccount) -> None:
    """Expire the holds past their end, end every period that has ended, one at a time
    and each as it would have ended on time, and lapse the grants past their end."""
    if account.now < account.row.due_at:
        return
    for hold_id in holds.expired_ids(account.conn, account.id, account.now):
        released = account.unreserve(holds.allocations(account.conn, hold_id))
        # At once: the next expiry, below, is read from the holds still pending.
        holds.finish(account.conn, holds.Finished(hold_id, HoldStatus.EXPIRED, account.now))
        data = {"account_id": account.id, "hold_id": hold_id, "credits": released}
        alerts.queue(account.conn, account.now, "hold.expired", data)
    while account.now >= account.row.account.period_end:
        roll_period(account)
    expire_grants(account)
    candidates = [
        account.row.account.period_end,
        account.next_grant_expiry(),
        holds.next_expiry(account.conn, account.id),
    ]
    account.row.due_at = min(c for c in candidates if c is not None)


def expire_grants(account: LockedAccount, until: datetime | None = None) -> None:
    """Lapse what is free in the grants that ended by ``until`` (by default now), in the
    order they ended: an allowance carries what its plan's rollover cap still has room
    for into the next period, and the rest expires at the grant's end. A held part waits
    for its hold, and lapses the same way when the hold gives it back, so a hold that is
    released late leaves the account as if it had never been."""
    until = account.now if until is None else until
    while lapsing := account.ended_with_free(until):
        moment = min(g.expires_at for g in lapsing if g.expires_at is not None)
        ending = [g for g in lapsing if g.expires_at == moment]
        for g in ending:
            if g.source is GrantSource.ALLOWANCE:
                _roll_over(account, g)
        post_expiry(account, [account.grant(g.id) for g in ending], moment)


def post_expiry(account: LockedAccount, expiring: list[Grant], moment: datetime) -> None:
    """What is free in ``expiring`` expires at ``moment`` (a held part waits)."""
    total = sum(g.free for g in expiring)
    if total <= 0:
        return
    legs = [Posting(account.wallet, -g.free, g.id) for g in expiring if g.free > 0]
    legs.append(Posting(SystemAccount.EXPIRY.value, total))
    account.post(
        TransactionType.EXPIRY,
        legs,
        {g.id: GrantChange(remaining=-g.free) for g in expiring if g.free > 0},
        f"{total} unused credits expired",
        created_at=moment,
    )


def plan_of(account: LockedAccount) -> Plan | None:
    key = account.row.account.plan
    return None if key is None else _plan(account, key)


def _plan(account: LockedAccount, key: str) -> Plan | None:
    return account.memo(("plan", key), lambda: catalog.get_plan(account.conn, key))


def current_period(plan: Plan | None, anchor: datetime, at: datetime) -> Period:
    kind = PeriodKind.CALENDAR_MONTH if plan is None else plan.period
    return period_containing(kind, anchor, at)


def roll_period(account: LockedAccount) -> None:
    """End the account's current period as it would have ended on time: its grants lapse
    at their end, a pending plan change takes effect, and the following period (the one
    that starts where this one ends) gets its allowance."""
    ended = account.row.account.period_end
    expire_grants(account, until=ended)
    record = account.row.account
    plan = plan_of(account)
    if record.pending_plan is not None:
        plan = catalog.get_plan(account.conn, record.pending_plan)
        record = replace(record, plan=record.pending_plan, pending_plan=None)
    period = current_period(plan, record.created_at, ended)
    account.row.account = replace(record, period_start=period.start, period_end=period.end)
    if plan is None or not plan.renewed_by_invoice:
        renewed(
            account, plan, period, 0 if plan is None else issue_allowance(account, plan, period)
        )


def renewed(account: LockedAccount, plan: Plan | None, period: Period, allowance: int) -> None:
    """A new period began (by the calendar, or by a paid invoice): its allowance alerts
    are armed again, and ``period.renewed`` is queued."""
    account.row.allowance_alert = 0
    data = {
        "account_id": account.id,
        "plan": None if plan is None else plan.key,
        "period_start": alerts.iso(period.start),
        "period_end": alerts.iso(period.end),
        "allowance": allowance,
    }
    alerts.queue(account.conn, account.now, "period.renewed", data)


def _roll_over(account: LockedAccount, allowance: Grant) -> None:
    """Carry what is free in an ended allowance grant into the next period's ``rollover``
    grant of its pool, as far as the cap of the plan that issued it still has room."""
    key = (allowance.reference or "").removeprefix("plan:")
    plan = _plan(account, key) if allowance.reference and key else None
    if plan is None or plan.rollover_cap <= 0 or allowance.expires_at is None:
        return
    following = current_period(plan, account.row.account.created_at, allowance.expires_at)
    target = account.grant_in_period(GrantSource.ROLLOVER, allowance.pool, following.start)
    if target is not None and target.voided_at is not None:
        return  # an admin took the carried credits away: no more are carried into it
    carried = 0 if target is None else target.amount
    carry = min(allowance.free, plan.rollover_cap - carried)
    if carry <= 0:
        return
    if target is None:
        target = account.open_grant(
            GrantSource.ROLLOVER,
            pool=allowance.pool,
            effective_at=following.start,
            expires_at=following.end,
            period_start=following.start,
        )
    account.post(
        TransactionType.ROLLOVER,
        [Posting(account.wallet, -carry, allowance.id), Posting(account.wallet, carry, target.id)],
        {
            allowance.id: GrantChange(remaining=-carry),
            target.id: GrantChange(remaining=carry, amount=carry),
        },
        f"{carry} unused {allowance.pool} allowance carried into the next period",
        created_at=allowance.expires_at,
    )


def issue_allowance(account: LockedAccount, plan: Plan, period: Period) -> int:
    """The period's allowance grants, one per limited pool, in one transaction; how many
    credits they hold."""
    issued: dict[str, int] = {}
    for pool, credits in sorted(plan.limited_allowances().items()):
        if credits > 0:
            g = account.open_grant(
                GrantSource.ALLOWANCE,
                pool=pool,
                effective_at=period.start,
                expires_at=period.end,
                period_start=period.start,
                reference=f"plan:{plan.key}",
            )
            issued[g.id] = credits
    if issued:
        account.issue(
            issued,
            GrantSource.ALLOWANCE,
            TransactionType.ALLOCATION,
            f"{plan.name} allowance for the period from {period.start:%Y-%m-%d}",
            created_at=max(period.start, account.row.account.created_at),
        )
        repay_debt(account, list(issued))
    return sum(issued.values())


def repay_debt(account: LockedAccount, grant_ids: list[str]) -> None:
    """New credits pay the account's debt first."""
    legs: list[Posting] = []
    changes: dict[str, GrantChange] = {}
    left = account.row.debt
    for grant_id in grant_ids:
        g = account.grant(grant_id)
        take = min(g.free, left)
        if take:
            legs.append(Posting(account.wallet, -take, g.id))
            changes[g.id] = GrantChange(remaining=-take)
            left -= take
    repaid = account.row.debt - left
    if repaid:
        legs.append(Posting(account.wallet, repaid))
        account.post(
            TransactionType.DEBT_REPAYMENT, legs, changes, f"{repaid} credits of debt repaid"
        )
