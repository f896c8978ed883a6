"""Checks the invariants I1–I6 of the design over a whole database.

Each check is one aggregate query, so it runs over millions of ledger rows; each finding
is reported as a :class:`Violation` naming the invariant and what breaks it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from creditmeter.core.payments import PurchaseStatus
from creditmeter.core.types import SystemAccount, TransactionType
from creditmeter.store import stats as stats_store
from creditmeter.store.holds import PENDING
from creditmeter.store.tables import (
    accounts,
    grant_free,
    grants,
    hold_allocations,
    holds,
    idempotency_keys,
    ledger_transactions,
    postings,
    purchases,
    usage_daily,
    usage_records,
)


@dataclass(frozen=True)
class Violation:
    invariant: str
    subject: str
    message: str

    def __str__(self) -> str:
        return f"{self.invariant} {self.subject}: {self.message}"


def _sum(column: sa.ColumnElement[int]) -> sa.ColumnElement[int]:
    return sa.func.coalesce(sa.func.sum(column), 0)


def _wallet() -> sa.ColumnElement[str]:
    return sa.literal("account:") + accounts.c.id


def books_balance(conn: Connection) -> Iterator[Violation]:
    """I1: all postings sum to zero, and so does every transaction's."""
    total = conn.execute(sa.select(_sum(postings.c.amount))).scalar_one()
    if total != 0:
        yield Violation("I1", "ledger", f"postings sum to {total}, not 0")
    unbalanced = (
        sa.select(postings.c.transaction_id, sa.func.sum(postings.c.amount).label("total"))
        .group_by(postings.c.transaction_id)
        .having(sa.func.sum(postings.c.amount) != 0)
    )
    for row in conn.execute(unbalanced):
        yield Violation("I1", row.transaction_id, f"postings sum to {row.total}")


def grants_match_postings(conn: Connection) -> Iterator[Violation]:
    """I2: each grant's remaining is what its postings leave, within 0..amount, and its
    held credits are those its pending holds reserve."""
    posted = (
        sa.select(postings.c.grant_id, _sum(postings.c.amount).label("total"))
        .where(postings.c.grant_id.is_not(None))
        .group_by(postings.c.grant_id)
        .subquery()
    )
    reserved = (
        sa.select(hold_allocations.c.grant_id, _sum(hold_allocations.c.credits).label("total"))
        .select_from(hold_allocations.join(holds, holds.c.id == hold_allocations.c.hold_id))
        .where(PENDING)
        .group_by(hold_allocations.c.grant_id)
        .subquery()
    )
    query = (
        sa.select(
            grants.c.id,
            grants.c.amount,
            grants.c.remaining,
            grants.c.held,
            sa.func.coalesce(posted.c.total, 0).label("posted"),
            sa.func.coalesce(reserved.c.total, 0).label("reserved"),
        )
        .select_from(
            grants.outerjoin(posted, posted.c.grant_id == grants.c.id).outerjoin(
                reserved, reserved.c.grant_id == grants.c.id
            )
        )
        .where(
            sa.or_(
                grants.c.remaining != sa.func.coalesce(posted.c.total, 0),
                grants.c.remaining < 0,
                grants.c.remaining > grants.c.amount,
                grants.c.held != sa.func.coalesce(reserved.c.total, 0),
            )
        )
    )
    for r in conn.execute(query):
        yield Violation(
            "I2",
            r.id,
            f"remaining {r.remaining} of amount {r.amount}, postings leave {r.posted}; "
            f"held {r.held}, pending holds reserve {r.reserved}",
        )


def voids_empty_their_grants(conn: Connection) -> Iterator[Violation]:
    """I2: a voided grant holds nothing, and a ``void`` transaction moves one voided
    grant's credits to the void account and nothing else."""
    g = grants.c
    for r in conn.execute(
        sa.select(g.id, g.remaining, g.held).where(
            g.voided_at.is_not(None), sa.or_(g.remaining != 0, g.held != 0)
        )
    ):
        yield Violation("I2", r.id, f"voided, yet remaining {r.remaining}, held {r.held}")
    t, p = ledger_transactions.c, postings.c
    void = SystemAccount.VOID.value
    legs = (
        sa.select(
            t.id,
            sa.func.count(sa.distinct(p.grant_id)).label("grants"),
            sa.func.count(sa.distinct(g.id)).label("voided"),
            _sum(sa.case((p.ledger_account == void, p.amount), else_=0)).label("voided_credits"),
            _sum(sa.case((p.grant_id.is_not(None), -p.amount), else_=0)).label("drawn"),
            _sum(
                sa.case((sa.and_(p.grant_id.is_(None), p.ledger_account != void), 1), else_=0)
            ).label("other_legs"),
        )
        .select_from(
            ledger_transactions.join(postings, p.transaction_id == t.id).outerjoin(
                grants, sa.and_(g.id == p.grant_id, g.voided_at.is_not(None))
            )
        )
        .where(t.type == TransactionType.VOID.value)
        .group_by(t.id)
        .subquery()
    )
    wrong = sa.select(legs).where(
        sa.or_(
            legs.c.grants != 1,
            legs.c.voided != 1,
            legs.c.other_legs != 0,
            legs.c.voided_credits != legs.c.drawn,
        )
    )
    for v in conn.execute(wrong):
        yield Violation(
            "I2",
            v.id,
            f"void draws {v.drawn} from {v.grants} grants ({v.voided} voided) into the void "
            f"account {v.voided_credits}, with {v.other_legs} other postings",
        )
    # A voided grant is never drawn again: no posting on it after its void.
    later = (
        sa.select(p.transaction_id, p.grant_id)
        .select_from(
            postings.join(ledger_transactions, t.id == p.transaction_id).join(
                grants, g.id == p.grant_id
            )
        )
        .where(g.voided_at.is_not(None), t.created_at > g.voided_at)
    )
    for a in conn.execute(later):
        yield Violation("I2", a.transaction_id, f"posts to grant {a.grant_id} after its void")


def accounts_match_postings(conn: Connection) -> Iterator[Violation]:
    """I3: stored totals are what a replay of the account's postings gives."""
    wallet = (
        sa.select(
            postings.c.ledger_account,
            _sum(postings.c.amount).label("balance"),
            _sum(sa.case((postings.c.grant_id.is_(None), -postings.c.amount), else_=0)).label(
                "debt"
            ),
        )
        .group_by(postings.c.ledger_account)
        .subquery()
    )
    in_grants = (
        sa.select(grants.c.account_id, _sum(grants.c.remaining).label("remaining"))
        .group_by(grants.c.account_id)
        .subquery()
    )
    held = (
        sa.select(holds.c.account_id, _sum(holds.c.reserved).label("held"))
        .where(PENDING)
        .group_by(holds.c.account_id)
        .subquery()
    )
    replayed_balance = sa.func.coalesce(wallet.c.balance, 0)
    replayed_debt = sa.func.coalesce(wallet.c.debt, 0)
    in_grants_total = sa.func.coalesce(in_grants.c.remaining, 0)
    held_total = sa.func.coalesce(held.c.held, 0)
    query = (
        sa.select(
            accounts.c.id,
            accounts.c.balance,
            accounts.c.debt,
            accounts.c.held,
            replayed_balance.label("replayed_balance"),
            replayed_debt.label("replayed_debt"),
            in_grants_total.label("in_grants"),
            held_total.label("replayed_held"),
        )
        .select_from(
            accounts.outerjoin(wallet, wallet.c.ledger_account == _wallet())
            .outerjoin(in_grants, in_grants.c.account_id == accounts.c.id)
            .outerjoin(held, held.c.account_id == accounts.c.id)
        )
        .where(
            sa.or_(
                accounts.c.balance != replayed_balance,
                accounts.c.debt != replayed_debt,
                accounts.c.balance + accounts.c.debt != in_grants_total,
                accounts.c.held != held_total,
            )
        )
    )
    for r in conn.execute(query):
        yield Violation(
            "I3",
            r.id,
            f"stored balance {r.balance}, debt {r.debt}, held {r.held}; replay gives balance "
            f"{r.replayed_balance}, debt {r.replayed_debt}, held {r.replayed_held}, "
            f"grants hold {r.in_grants}",
        )
    t = ledger_transactions
    steps = sa.select(t.c.id, t.c.amount, t.c.balance_before, t.c.balance_after).where(
        t.c.balance_after - t.c.balance_before != t.c.amount
    )
    for s in conn.execute(steps):
        yield Violation(
            "I3",
            s.id,
            f"balance moves {s.balance_before} → {s.balance_after} but amount is {s.amount}",
        )


def holds_within_grants(conn: Connection) -> Iterator[Violation]:
    """I4: a pending hold reserves exactly its allocations, never more than its credits;
    no account is below zero beyond its overdraft limit (and what refunds of credits it
    had spent, and re-ratings of its usage, made it owe)."""
    allocated = (
        sa.select(hold_allocations.c.hold_id, _sum(hold_allocations.c.credits).label("total"))
        .group_by(hold_allocations.c.hold_id)
        .subquery()
    )
    total = sa.func.coalesce(allocated.c.total, 0)
    query = (
        sa.select(holds.c.id, holds.c.reserved, holds.c.credits, total.label("allocated"))
        .select_from(holds.outerjoin(allocated, allocated.c.hold_id == holds.c.id))
        .where(
            PENDING,
            sa.or_(holds.c.reserved != total, holds.c.reserved > holds.c.credits),
        )
    )
    for r in conn.execute(query):
        yield Violation(
            "I4", r.id, f"reserves {r.reserved} of {r.credits}, allocations hold {r.allocated}"
        )
    a = accounts.c
    clawed = (
        sa.select(purchases.c.account_id, _sum(purchases.c.clawback_debt).label("debt"))
        .group_by(purchases.c.account_id)
        .subquery()
    )
    t, p = ledger_transactions.c, postings.c
    # Re-rating's under-charges take on debt as clawbacks do: their wallet postings of no grant.
    adjusted = (
        sa.select(t.account_id, _sum(-p.amount).label("debt"))
        .select_from(ledger_transactions.join(postings, p.transaction_id == t.id))
        .where(
            t.type == TransactionType.ADJUSTMENT.value,
            p.grant_id.is_(None),
            p.ledger_account == sa.literal("account:") + t.account_id,
        )
        .group_by(t.account_id)
        .subquery()
    )
    limit = (
        a.overdraft_limit
        + sa.func.coalesce(clawed.c.debt, 0)
        + sa.func.coalesce(adjusted.c.debt, 0)
    )
    overdrawn = (
        sa.select(
            a.id,
            a.balance,
            a.held,
            a.debt,
            a.overdraft_limit,
            limit.label("limit"),
        )
        .select_from(
            accounts.outerjoin(clawed, clawed.c.account_id == a.id).outerjoin(
                adjusted, adjusted.c.account_id == a.id
            )
        )
        .where(sa.or_(a.balance - a.held < -limit, a.debt > limit))
    )
    for o in conn.execute(overdrawn):
        yield Violation(
            "I4",
            o.id,
            f"available {o.balance - o.held}, debt {o.debt}, overdraft limit "
            f"{o.overdraft_limit}"
            + (
                f" and {o.limit - o.overdraft_limit} owed for refunds and re-ratings"
                if o.limit > o.overdraft_limit
                else ""
            ),
        )


def applied_once(conn: Connection) -> Iterator[Violation]:
    """I5: each idempotency key is stored once; each usage is charged by exactly one
    usage transaction, for what its record says."""
    column = idempotency_keys.c.key
    duplicates = (
        sa.select(column, sa.func.count().label("n")).group_by(column).having(sa.func.count() > 1)
    )
    for r in conn.execute(duplicates):
        yield Violation("I5", str(r[0]), f"idempotency key stored {r.n} times")
    t = ledger_transactions
    charged = (
        sa.select(
            t.c.usage_id,
            sa.func.count(sa.distinct(t.c.id)).label("n"),
            _sum(-t.c.amount).label("drawn"),
        )
        .where(t.c.type == TransactionType.USAGE.value)
        .group_by(t.c.usage_id)
        .subquery()
    )
    u = usage_records.c
    query = (
        sa.select(
            u.id,
            u.charged,
            u.debited,
            sa.func.coalesce(charged.c.n, 0).label("n"),
            sa.func.coalesce(charged.c.drawn, 0).label("drawn"),
        )
        .select_from(usage_records.outerjoin(charged, charged.c.usage_id == u.id))
        .where(
            sa.or_(
                sa.func.coalesce(charged.c.n, 0) != 1,
                u.charged + u.debited != sa.func.coalesce(charged.c.drawn, 0),
            )
        )
    )
    for r in conn.execute(query):
        yield Violation(
            "I5",
            r.id,
            f"charged by {r.n} usage transactions drawing {r.drawn}, "
            f"record says {r.charged} + {r.debited} debt",
        )


def purchases_fulfilled_once(conn: Connection) -> Iterator[Violation]:
    """I6: a fulfilled or refunded purchase was credited by exactly one purchase
    transaction, the one it names, for its credits; no other purchase was credited; its
    reversals took back what it says was clawed back, all of it once it is refunded."""
    t = ledger_transactions
    credited = (
        sa.select(
            t.c.purchase_id,
            sa.func.count().label("n"),
            _sum(t.c.amount).label("credits"),
            sa.func.max(t.c.id).label("transaction_id"),
        )
        .where(t.c.type == TransactionType.PURCHASE.value)
        .group_by(t.c.purchase_id)
        .subquery()
    )
    reversed_ = (
        sa.select(
            t.c.purchase_id,
            _sum(
                sa.case((postings.c.ledger_account.in_(_ISSUERS), postings.c.amount), else_=0)
            ).label("credits"),
        )
        .select_from(t.join(postings, postings.c.transaction_id == t.c.id))
        .where(t.c.type == TransactionType.REVERSAL.value)
        .group_by(t.c.purchase_id)
        .subquery()
    )
    p = purchases.c
    done = p.status.in_([PurchaseStatus.FULFILLED.value, PurchaseStatus.REFUNDED.value])
    n = sa.func.coalesce(credited.c.n, 0)
    query = (
        sa.select(
            p.id,
            p.status,
            p.credits,
            p.transaction_id,
            p.credits_clawed_back,
            p.credits_unrecovered,
            n.label("n"),
            credited.c.credits.label("credited"),
            credited.c.transaction_id.label("credited_by"),
            sa.func.coalesce(reversed_.c.credits, 0).label("reversed"),
        )
        .select_from(
            purchases.outerjoin(credited, credited.c.purchase_id == p.id).outerjoin(
                reversed_, reversed_.c.purchase_id == p.id
            )
        )
        .where(
            sa.or_(
                sa.and_(done, n != 1),
                sa.and_(sa.not_(done), n != 0),
                sa.and_(n == 1, credited.c.credits != p.credits),
                sa.and_(n == 1, credited.c.transaction_id != p.transaction_id),
                sa.func.coalesce(reversed_.c.credits, 0)
                != p.credits_clawed_back - p.credits_unrecovered,
                sa.and_(
                    p.status == PurchaseStatus.REFUNDED.value,
                    p.credits_clawed_back != p.credits,
                ),
            )
        )
    )
    for r in conn.execute(query):
        yield Violation(
            "I6",
            r.id,
            f"{r.status} purchase of {r.credits} credits credited by {r.n} transactions "
            f"({r.credited} credits, {r.credited_by}, it names {r.transaction_id}); "
            f"reversals took back {r.reversed}, it says {r.credits_clawed_back} less "
            f"{r.credits_unrecovered} unrecovered",
        )
    orphans = sa.select(t.c.id, t.c.purchase_id).where(
        t.c.type.in_([TransactionType.PURCHASE.value, TransactionType.REVERSAL.value]),
        sa.or_(t.c.purchase_id.is_(None), t.c.purchase_id.not_in(sa.select(p.id))),
    )
    for o in conn.execute(orphans):
        yield Violation("I6", o.id, f"credits a purchase that does not exist ({o.purchase_id})")


_ISSUERS = (SystemAccount.ISSUANCE_PURCHASE.value, SystemAccount.ISSUANCE_BONUS.value)


def daily_sums_match_usage(conn: Connection) -> Iterator[Violation]:
    """I3 for the daily usage sums: each is what its day's records add up to."""
    u = usage_records.c
    day = stats_store.day_of(conn.dialect.name)
    model = sa.func.coalesce(u.model, "")
    query = sa.select(
        day,
        u.account_id,
        u.feature_key,
        model,
        sa.func.count(),
        _sum(u.credits),
        _sum(u.charged + u.debited),
        _sum(u.refunded),
        _sum(sa.case((u.provider_cost.is_(None), 1), else_=0)),
    ).group_by(day, u.account_id, u.feature_key, model)
    replayed = {
        (str(r[0]), r[1], r[2], r[3]): tuple(int(v) for v in r[4:]) for r in conn.execute(query)
    }
    stored = {
        (r.day, r.account_id, r.feature_key, r.model): (
            int(r.events),
            int(r.credits),
            int(r.consumed),
            int(r.refunded),
            int(r.without_cost),
        )
        for r in conn.execute(sa.select(usage_daily))
    }
    for key in sorted(set(replayed) | set(stored)):
        if replayed.get(key) != stored.get(key):
            yield Violation(
                "I3",
                "/".join(key),
                f"daily usage sums {stored.get(key)}, its records {replayed.get(key)}",
            )


def free_totals_match_grants(conn: Connection) -> Iterator[Violation]:
    """I3 for the running totals of free credits: each account has one for each pool and
    source of its grants, what those grants hold free (remaining less held)."""
    g = grants.c
    query = sa.select(g.account_id, g.pool, g.source, _sum(g.remaining - g.held)).group_by(
        g.account_id, g.pool, g.source
    )
    replayed = {(r[0], r[1], r[2]): int(r[3]) for r in conn.execute(query)}
    stored = {
        (r.account_id, r.pool, r.source): int(r.free) for r in conn.execute(sa.select(grant_free))
    }
    for key in sorted(set(replayed) | set(stored)):
        if replayed.get(key) != stored.get(key):
            yield Violation(
                "I3",
                "/".join(key),
                f"running total of free credits {stored.get(key)}, "
                f"its grants hold {replayed.get(key)} free",
            )


CHECKS: tuple[Callable[[Connection], Iterator[Violation]], ...] = (
    books_balance,
    grants_match_postings,
    voids_empty_their_grants,
    accounts_match_postings,
    holds_within_grants,
    applied_once,
    purchases_fulfilled_once,
    daily_sums_match_usage,
    free_totals_match_grants,
)


def verify(conn: Connection) -> list[Violation]:
    return [v for check in CHECKS for v in check(conn)]
