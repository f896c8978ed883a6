"""Grants issued by hand (admin, promotional, bonus, purchase) and refunds."""

from __future__ import annotations

from datetime import datetime

from creditmeter.core.audit import Action, Actor
from creditmeter.core.errors import GrantHeld, InvalidRequest, NotFound
from creditmeter.core.pricing import credit_amount
from creditmeter.core.records import GrantResult, Posting, Transaction
from creditmeter.core.types import ANY_POOL, GrantSource, SystemAccount, TransactionType
from creditmeter.service import alerts, audit, metering
from creditmeter.service.locked_account import LockedAccount
from creditmeter.service.maintenance import repay_debt
from creditmeter.store import grants, holds, ledger, usage
from creditmeter.store.grants import Change as GrantChange

PLAN_SOURCES = frozenset({GrantSource.ALLOWANCE, GrantSource.ROLLOVER})

VOID_HELD = ("refuse", "release")
"""What a void does with credits of the grant that pending holds reserve: refuse
(``GrantHeld``, naming the holds) or release those holds first."""


def grant(
    account: LockedAccount,
    amount: int,
    *,
    source: str,
    pool: str | None,
    priority: int | None,
    expires_at: datetime | None,
    effective_at: datetime | None,
    reason: str | None,
    reference: str | None,
    actor: Actor,
) -> GrantResult:
    amount = credit_amount(amount, "amount", minimum=1)
    try:
        kind = GrantSource(source)
    except ValueError:
        raise InvalidRequest(f"unknown grant source {source!r}") from None
    if kind in PLAN_SOURCES:
        raise InvalidRequest(f"{kind.value} grants come from the plan, not by hand")
    if expires_at is not None and expires_at <= account.now:
        raise InvalidRequest("expires_at must be in the future: an expired grant adds nothing")
    if expires_at is not None and expires_at <= (effective_at or account.now):
        raise InvalidRequest("expires_at must be after the grant takes effect")
    if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)):
        raise InvalidRequest("priority must be an integer")
    g = account.open_grant(
        kind,
        pool=pool or ANY_POOL,
        priority=priority,
        effective_at=effective_at,
        expires_at=expires_at,
        reference=reference,
    )
    description = reason or f"{amount} {kind.value} credits granted"
    txn = account.issue(
        {g.id: amount},
        kind,
        TransactionType.GRANT,
        description,
        metadata={"reason": reason} if reason else None,
    )
    repay_debt(account, [g.id])
    details = {
        "amount": amount,
        "source": kind.value,
        "pool": g.pool,
        "priority": g.priority,
        "effective_at": audit.moment(g.effective_at),
        "expires_at": audit.moment(g.expires_at),
        "reason": reason,
        "transaction": txn.id,
    }
    audit.record(
        account.conn,
        account.now,
        actor,
        Action.GRANT_CREATED,
        account_id=account.id,
        subject_id=g.id,
        details=details,
    )
    alerts.queue(
        account.conn,
        account.now,
        "grant.created",
        {
            "account_id": account.id,
            "grant_id": g.id,
            "amount": amount,
            "source": kind.value,
            "pool": g.pool,
            "effective_at": alerts.iso(g.effective_at),
            "expires_at": None if g.expires_at is None else alerts.iso(g.expires_at),
            "reason": reason,
        },
    )
    return GrantResult(g.id, txn.id, amount, account.available)


def refund_usage(
    account: LockedAccount, usage_id: str, reason: str | None, actor: Actor
) -> Transaction:
    """A usage's credits go back to the grants they came from; a grant that has expired
    since, and debt already repaid, give theirs back as a new refund grant. The credits
    given back repay the account's debt first, as any new credits do."""
    record = usage.get(account.conn, usage_id)
    if record is None or record.account_id != account.id:
        raise NotFound("usage", usage_id)
    refundable = record.charged + record.debited - record.refunded
    if refundable <= 0:
        raise InvalidRequest(f"usage {usage_id} has nothing left to refund")
    legs: list[Posting] = []
    changes: dict[str, GrantChange] = {}
    credited: list[str] = []
    new_grant_credits = 0
    for leg in ledger.usage_postings(account.conn, usage_id):
        if leg.ledger_account != account.wallet:
            continue
        credits = -leg.amount
        if leg.grant_id is None:
            owed = min(credits, account.row.debt)
            legs.append(Posting(account.wallet, owed))
            new_grant_credits += credits - owed
        elif account.grant(leg.grant_id).is_active(account.now):
            legs.append(Posting(account.wallet, credits, leg.grant_id))
            changes[leg.grant_id] = GrantChange(remaining=credits)
            credited.append(leg.grant_id)
        else:
            new_grant_credits += credits
    if new_grant_credits:
        g = account.open_grant(GrantSource.REFUND, pool=ANY_POOL, reference=f"usage:{usage_id}")
        legs.append(Posting(account.wallet, new_grant_credits, g.id))
        changes[g.id] = GrantChange(remaining=new_grant_credits, amount=new_grant_credits)
        credited.append(g.id)
    legs.append(Posting(SystemAccount.REFUND.value, -refundable))
    usage.add_refunded(account.conn, usage_id, refundable)
    txn = account.post(
        TransactionType.REFUND,
        legs,
        changes,
        reason or f"usage {usage_id} refunded",
        usage_id=usage_id,
    )
    repay_debt(account, credited)
    _record_refund(account, txn, usage_id, reason, actor)
    return txn


def refund_credits(
    account: LockedAccount, amount: int, reason: str | None, actor: Actor
) -> Transaction:
    """Credits given back outside any usage, as a new refund grant."""
    amount = credit_amount(amount, "amount", minimum=1)
    g = account.open_grant(GrantSource.REFUND, pool=ANY_POOL)
    txn = account.issue(
        {g.id: amount},
        GrantSource.REFUND,
        TransactionType.REFUND,
        reason or f"{amount} credits refunded",
    )
    repay_debt(account, [g.id])
    _record_refund(account, txn, None, reason, actor)
    return txn


def _record_refund(
    account: LockedAccount, txn: Transaction, usage_id: str | None, reason: str | None, actor: Actor
) -> None:
    audit.record(
        account.conn,
        account.now,
        actor,
        Action.REFUND_CREATED,
        account_id=account.id,
        subject_id=txn.id,
        details={"amount": txn.amount, "usage": usage_id, "reason": reason},
    )


def void_grant(
    account: LockedAccount, grant_id: str, *, reason: str, held: str, actor: Actor
) -> Transaction:
    """Take the credits left in one grant away, as a ``void`` transaction. Credits of the
    grant held by pending holds refuse the void unless ``held="release"``, which releases
    those holds (all of each) first. Debt is not touched: a void takes only credits that
    are there."""
    if held not in VOID_HELD:
        raise InvalidRequest(f"held must be one of {', '.join(VOID_HELD)}")
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidRequest("a void needs a reason")
    stored = grants.get_many(account.conn, [grant_id])
    if not stored or stored[0].account_id != account.id:
        raise NotFound("grant", grant_id)
    g = account.grant(grant_id)
    if g.voided_at is not None:
        raise InvalidRequest(f"grant {grant_id} was voided at {audit.moment(g.voided_at)}")
    holding = holds.pending_on_grant(account.conn, grant_id)
    if holding and held == "refuse":
        raise GrantHeld(grant_id, tuple(holding))
    for hold_id in holding:
        found = holds.get(account.conn, hold_id)
        assert found is not None
        metering.release(account, found)
    if account.grant(grant_id).remaining == 0:
        raise InvalidRequest(f"grant {grant_id} has nothing left to void")
    txn = account.void(grant_id, reason, metadata={"reason": reason, "released_holds": holding})
    audit.record(
        account.conn,
        account.now,
        actor,
        Action.GRANT_VOIDED,
        account_id=account.id,
        subject_id=grant_id,
        details={
            "amount": -txn.amount,
            "reason": reason,
            "transaction": txn.id,
            "released_holds": holding,
        },
    )
    return txn
