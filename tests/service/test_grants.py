"""Voiding a grant: its credits left are taken away by a ledger transaction of its own."""

from __future__ import annotations

from datetime import timedelta

import pytest

from creditmeter import (
    CreditMeter,
    GrantHeld,
    HoldNotPending,
    IdempotencyConflict,
    InvalidRequest,
    NotFound,
)
from creditmeter.core.audit import Action, key
from creditmeter.core.types import SystemAccount
from tests.conftest import Clock


@pytest.fixture
def acme(meter: CreditMeter) -> str:
    meter.put_feature("chat", rates={"tokens": 1})
    meter.create_account("acme")
    return "acme"


def test_void_takes_what_is_left_of_one_grant(meter: CreditMeter, acme: str) -> None:
    promo = meter.grant(acme, 300, source="promotional").grant_id
    meter.grant(acme, 500, source="purchase")
    meter.charge(acme, "chat", credits=100)  # drawn from the promotional grant first

    txn = meter.void_grant(acme, promo, reason="promotion sent by mistake")

    assert txn.type == "void"
    assert txn.amount == -200
    assert (txn.balance_before, txn.balance_after) == (700, 500)
    assert {(p.ledger_account, p.amount, p.grant_id) for p in txn.postings} == {
        ("account:acme", -200, promo),
        (SystemAccount.VOID.value, 200, None),
    }
    assert txn.metadata["reason"] == "promotion sent by mistake"
    assert meter.balance(acme).available == 500
    [voided] = [g for g in meter.grants(acme, include_spent=True) if g.id == promo]
    assert (voided.amount, voided.remaining, voided.voided_at) == (300, 0, meter.clock())
    assert meter.verify() == []


def test_a_voided_grant_is_never_drawn_or_refilled(meter: CreditMeter, acme: str) -> None:
    promo = meter.grant(acme, 300, source="promotional").grant_id
    used = meter.charge(acme, "chat", credits=100).usage_id
    meter.void_grant(acme, promo, reason="abuse")

    refund = meter.refund(acme, usage_id=used)

    # The usage's credits come back, but not into the voided grant: into a new one.
    [leg] = refund.wallet_postings
    assert leg.grant_id not in (None, promo)
    assert meter.balance(acme).available == 100
    assert meter.charge(acme, "chat", credits=100).charged == 100
    [voided] = [g for g in meter.grants(acme, include_spent=True) if g.id == promo]
    assert voided.remaining == 0
    assert meter.verify() == []


def test_void_is_idempotent_by_key(meter: CreditMeter, acme: str) -> None:
    promo = meter.grant(acme, 300, source="bonus").grant_id

    first = meter.void_grant(acme, promo, reason="r", idempotency_key="v1")
    again = meter.void_grant(acme, promo, reason="r", idempotency_key="v1")

    assert again == first
    assert [t.type for t in meter.iter_transactions(acme)] == ["void", "grant"]
    with pytest.raises(IdempotencyConflict):
        meter.void_grant(acme, promo, reason="other", idempotency_key="v1")
    with pytest.raises(InvalidRequest, match="voided"):
        meter.void_grant(acme, promo, reason="r", idempotency_key="v2")
    assert meter.verify() == []


def test_bad_voids_are_refused_and_change_nothing(meter: CreditMeter, acme: str) -> None:
    meter.create_account("other")
    theirs = meter.grant("other", 100).grant_id
    ours = meter.grant(acme, 100).grant_id
    meter.charge(acme, "chat", credits=100)

    with pytest.raises(NotFound):
        meter.void_grant(acme, theirs, reason="r")
    with pytest.raises(NotFound):
        meter.void_grant(acme, "grt_missing", reason="r")
    with pytest.raises(InvalidRequest, match="reason"):
        meter.void_grant("other", theirs, reason=" ")
    with pytest.raises(InvalidRequest, match="held"):
        meter.void_grant("other", theirs, reason="r", held="ignore")
    with pytest.raises(InvalidRequest, match="nothing left"):
        meter.void_grant(acme, ours, reason="r")
    assert meter.balance("other").available == 100
    assert [t.type for t in meter.iter_transactions("other")] == ["grant"]
    assert meter.verify() == []


def test_void_of_held_credits_is_refused_naming_the_holds(meter: CreditMeter, acme: str) -> None:
    promo = meter.grant(acme, 300, source="promotional").grant_id
    hold = meter.authorize(acme, "chat", credits=100)

    with pytest.raises(GrantHeld) as refused:
        meter.void_grant(acme, promo, reason="r")

    assert refused.value.holds == (hold.id,)
    assert meter.hold(hold.id).status == "pending"
    balance = meter.balance(acme)
    assert (balance.available, balance.held) == (200, 100)
    # Once the hold is settled, the rest can be voided.
    meter.settle(hold.id, credits=40)
    assert meter.void_grant(acme, promo, reason="r").amount == -260
    assert meter.verify() == []


def test_void_with_held_release_releases_the_holds_first(meter: CreditMeter, acme: str) -> None:
    promo = meter.grant(acme, 300, source="promotional").grant_id
    meter.grant(acme, 50, source="purchase")
    hold = meter.authorize(acme, "chat", credits=320)  # 300 promotional + 20 purchased

    txn = meter.void_grant(acme, promo, reason="r", held="release", actor=key("key_ops"))

    assert txn.amount == -300
    assert txn.metadata["released_holds"] == [hold.id]
    assert meter.hold(hold.id).status == "released"
    balance = meter.balance(acme)
    assert (balance.available, balance.held) == (50, 0)
    with pytest.raises(HoldNotPending):
        meter.settle(hold.id)
    [entry] = meter.audit_log(actions=(Action.GRANT_VOIDED.value,)).data
    assert (entry.actor, entry.account_id, entry.subject_id) == (key("key_ops"), acme, promo)
    assert entry.details == {
        "amount": 300,
        "reason": "r",
        "transaction": txn.id,
        "released_holds": [hold.id],
    }
    assert meter.verify() == []


def test_void_leaves_debt_alone_and_the_books_balanced(meter: CreditMeter, clock: Clock) -> None:
    meter.put_feature("chat", rates={"tokens": 1})
    meter.create_account("acme", overdraft_limit=100)
    meter.grant("acme", 50, source="purchase", expires_at=clock.now + timedelta(days=1))
    meter.charge("acme", "chat", credits=120)  # 50 drawn, 70 debt
    later = meter.grant("acme", 100, source="admin").grant_id  # repays the 70 first

    txn = meter.void_grant("acme", later, reason="r")

    assert txn.amount == -30
    balance = meter.balance("acme")
    assert (balance.available, balance.debt) == (0, 0)
    meter.charge("acme", "chat", credits=60)
    balance = meter.balance("acme")
    assert (balance.available, balance.debt) == (-60, 60)
    assert meter.verify() == []


def test_an_upgrade_does_not_refill_a_voided_allowance(meter: CreditMeter) -> None:
    meter.put_plan("starter", allowances={"*": 100})
    meter.put_plan("pro", allowances={"*": 300})
    meter.create_account("acme", plan="starter")
    [allowance] = meter.grants("acme")
    meter.void_grant("acme", allowance.id, reason="chargeback")

    meter.change_plan("acme", "pro")

    assert meter.balance("acme").available == 0
    assert meter.verify() == []
