"""Holds: authorize reserves, settle charges the actual usage, release returns it all,
and a hold past its ttl expires on the next touch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from creditmeter import (
    CreditMeter,
    HoldNotPending,
    IdempotencyConflict,
    InsufficientCredits,
    InvalidRequest,
)
from creditmeter.core.records import Transaction
from creditmeter.core.types import GrantSource
from creditmeter.meter import HeldOperation
from tests.conftest import Clock


def assert_books_balance(meter: CreditMeter) -> None:
    assert meter.verify() == []


def usage_transaction(meter: CreditMeter, account_id: str, txn_id: str | None) -> Transaction:
    [txn] = [t for t in meter.iter_transactions(account_id, types=("usage",)) if t.id == txn_id]
    return txn


@pytest.fixture
def acme(meter: CreditMeter) -> str:
    meter.put_feature("chat", rates={"tokens": 1})
    meter.create_account("acme")
    meter.grant("acme", 1_000, source="purchase")
    return "acme"


def test_authorize_reserves_the_estimate(meter: CreditMeter, acme: str, clock: Clock) -> None:
    hold = meter.authorize(acme, "chat", estimate={"tokens": 300}, member="ann")

    assert hold.credits == 300
    assert hold.reserved == 300
    assert hold.status == "pending"
    assert hold.account_id == acme
    assert hold.feature == "chat"
    assert hold.created_at == clock.now
    assert hold.expires_at == clock.now + timedelta(seconds=900)
    balance = meter.balance(acme)
    assert balance.available == 700
    assert balance.held == 300
    assert meter.hold(hold.id) == hold
    # A reservation is not a ledger entry.
    assert [t.type for t in meter.iter_transactions(acme)] == ["grant"]
    assert_books_balance(meter)


def test_authorize_beyond_the_balance_is_refused(meter: CreditMeter, acme: str) -> None:
    meter.authorize(acme, "chat", credits=800)
    with pytest.raises(InsufficientCredits) as refused:
        meter.authorize(acme, "chat", credits=201)
    assert refused.value.required == 201
    assert refused.value.available == 200
    assert refused.value.purchased_available == 200
    balance = meter.balance(acme)
    assert (balance.available, balance.held) == (200, 800)
    assert_books_balance(meter)


def test_settle_for_less_releases_the_rest(meter: CreditMeter, acme: str) -> None:
    hold = meter.authorize(acme, "chat", credits=300)

    charge = meter.settle(hold.id, usage={"tokens": 200})

    assert charge.credits == 200
    assert charge.charged == 200
    assert charge.uncollected == 0
    assert charge.hold_id == hold.id
    assert charge.available_after == 800
    balance = meter.balance(acme)
    assert (balance.available, balance.held) == (800, 0)
    settled = meter.hold(hold.id)
    assert settled.status == "settled"
    assert settled.usage_id == charge.usage_id
    record = meter.usage_record(charge.usage_id)
    assert (record.credits, record.charged, record.hold_id) == (200, 200, hold.id)
    assert usage_transaction(meter, acme, charge.transaction_id).amount == -200
    assert_books_balance(meter)


def test_settle_without_usage_charges_the_estimate(meter: CreditMeter, acme: str) -> None:
    hold = meter.authorize(acme, "chat", estimate={"tokens": 250}, model="m1", member="ann")

    charge = meter.settle(hold.id)

    assert charge.credits == 250
    assert charge.available_after == 750
    record = meter.usage_record(charge.usage_id)
    assert record.quantities == {"tokens": 250}
    assert (record.model, record.member) == ("m1", "ann")
    assert_books_balance(meter)


def test_settle_for_more_draws_the_overage_from_other_grants(meter: CreditMeter) -> None:
    meter.put_feature("chat", rates={"tokens": 1})
    meter.create_account("acme")
    bonus = meter.grant("acme", 300, source="bonus")
    purchase = meter.grant("acme", 1_000, source="purchase")
    hold = meter.authorize("acme", "chat", credits=200)
    meter.charge("acme", "chat", credits=50)  # from the bonus's unreserved 100

    charge = meter.settle(hold.id, credits=450)

    assert charge.charged == 450
    assert charge.available_after == 1_300 - 50 - 450
    txn = usage_transaction(meter, "acme", charge.transaction_id)
    assert txn.by_grant_source() == {GrantSource.BONUS: -250, GrantSource.PURCHASE: -200}
    by_grant = {p.grant_id: p.amount for p in txn.postings if p.grant_id is not None}
    assert by_grant == {bonus.grant_id: -250, purchase.grant_id: -200}
    balance = meter.balance("acme")
    assert (balance.available, balance.held, balance.purchased_available) == (800, 0, 800)
    assert_books_balance(meter)


def test_settle_beyond_everything_without_overdraft_is_uncollected(
    meter: CreditMeter, acme: str
) -> None:
    hold = meter.authorize(acme, "chat", credits=1_000)

    charge = meter.settle(hold.id, credits=1_600)

    assert charge.credits == 1_600
    assert charge.charged == 1_000
    assert charge.debited == 0
    assert charge.uncollected == 600
    assert charge.available_after == 0
    record = meter.usage_record(charge.usage_id)
    assert (record.charged, record.debited, record.uncollected) == (1_000, 0, 600)
    balance = meter.balance(acme)
    assert (balance.available, balance.debt) == (0, 0)
    assert_books_balance(meter)


def test_settle_beyond_everything_with_overdraft_becomes_debt(meter: CreditMeter) -> None:
    meter.put_feature("chat", rates={"tokens": 1})
    meter.create_account("acme", overdraft_limit=500)
    meter.grant("acme", 300, source="purchase")
    hold = meter.authorize("acme", "chat", credits=300)

    charge = meter.settle(hold.id, credits=600)

    assert (charge.charged, charge.debited, charge.uncollected) == (300, 300, 0)
    assert charge.available_after == -300
    balance = meter.balance("acme")
    assert (balance.available, balance.debt, balance.held) == (-300, 300, 0)
    txn = usage_transaction(meter, "acme", charge.transaction_id)
    assert txn.by_grant_source() == {GrantSource.PURCHASE: -300, None: -300}
    assert_books_balance(meter)


def test_debt_stops_at_the_overdraft_limit(meter: CreditMeter) -> None:
    meter.put_feature("chat", rates={"tokens": 1})
    meter.create_account("acme", overdraft_limit=500)
    meter.grant("acme", 300, source="purchase")
    hold = meter.authorize("acme", "chat", credits=300)

    charge = meter.settle(hold.id, credits=1_000)

    assert (charge.charged, charge.debited, charge.uncollected) == (300, 500, 200)
    assert charge.available_after == -500
    balance = meter.balance("acme")
    assert (balance.available, balance.debt) == (-500, 500)
    assert_books_balance(meter)


def test_a_later_grant_repays_the_debt_first(meter: CreditMeter) -> None:
    meter.put_feature("chat", rates={"tokens": 1})
    meter.create_account("acme", overdraft_limit=500)
    meter.grant("acme", 300, source="purchase")
    hold = meter.authorize("acme", "chat", credits=300)
    meter.settle(hold.id, credits=600)

    grant = meter.grant("acme", 1_000, source="purchase")

    assert grant.available_after == 700
    balance = meter.balance("acme")
    assert (balance.available, balance.debt, balance.purchased_available) == (700, 0, 700)
    [repayment] = list(meter.iter_transactions("acme", types=("debt_repayment",)))
    assert repayment.by_grant_source() == {GrantSource.PURCHASE: -300, None: 300}
    assert repayment.amount == 0
    assert_books_balance(meter)


def test_one_shot_charge_beyond_the_balance_uses_the_overdraft(meter: CreditMeter) -> None:
    meter.put_feature("chat", rates={"tokens": 1})
    meter.create_account("acme", overdraft_limit=500)
    meter.grant("acme", 300, source="purchase")

    with pytest.raises(InsufficientCredits) as refused:
        meter.charge("acme", "chat", credits=801)
    assert refused.value.available == 800
    charge = meter.charge("acme", "chat", credits=700)

    assert (charge.charged, charge.debited, charge.uncollected) == (300, 400, 0)
    assert charge.available_after == -400
    assert meter.balance("acme").debt == 400
    grant = meter.grant("acme", 1_000, source="purchase")
    assert grant.available_after == 600
    balance = meter.balance("acme")
    assert (balance.available, balance.debt) == (600, 0)
    [repayment] = list(meter.iter_transactions("acme", types=("debt_repayment",)))
    assert repayment.by_grant_source() == {GrantSource.PURCHASE: -400, None: 400}
    assert_books_balance(meter)


def test_release_returns_everything(meter: CreditMeter, acme: str) -> None:
    hold = meter.authorize(acme, "chat", credits=400)

    released = meter.release(hold.id)

    assert released.status == "released"
    assert released.id == hold.id
    assert meter.hold(hold.id).status == "released"
    balance = meter.balance(acme)
    assert (balance.available, balance.held) == (1_000, 0)
    assert meter.usage(acme).data == ()
    assert_books_balance(meter)


def test_hold_past_its_ttl_expires_on_the_next_touch(
    meter: CreditMeter, acme: str, clock: Clock
) -> None:
    hold = meter.authorize(acme, "chat", credits=400, ttl=timedelta(seconds=60))
    clock.advance(seconds=59)
    assert meter.balance(acme).held == 400

    clock.advance(seconds=1)
    balance = meter.balance(acme)

    assert (balance.available, balance.held) == (1_000, 0)
    assert meter.hold(hold.id).status == "expired"
    with pytest.raises(HoldNotPending) as not_pending:
        meter.settle(hold.id, credits=100)
    assert not_pending.value.status == "expired"
    assert meter.balance(acme).available == 1_000
    assert_books_balance(meter)


def test_settle_of_an_expired_hold_is_refused(meter: CreditMeter, acme: str, clock: Clock) -> None:
    hold = meter.authorize(acme, "chat", credits=400, ttl=timedelta(minutes=5))
    clock.advance(minutes=6)

    with pytest.raises(HoldNotPending) as not_pending:
        meter.settle(hold.id, credits=100)

    assert not_pending.value.status == "expired"
    balance = meter.balance(acme)
    assert (balance.available, balance.held) == (1_000, 0)
    assert meter.hold(hold.id).status == "expired"
    assert meter.usage(acme).data == ()
    assert_books_balance(meter)


def test_reading_a_hold_past_its_ttl_reports_it_expired(
    meter: CreditMeter, acme: str, clock: Clock
) -> None:
    """DESIGN §4: an unsettled hold past its expires_at is released lazily by any read
    that meets it."""
    hold = meter.authorize(acme, "chat", credits=400, ttl=timedelta(seconds=60))
    clock.advance(seconds=61)

    assert meter.hold(hold.id).status == "expired"
    assert meter.balance(acme).held == 0
    assert_books_balance(meter)


def test_sweep_expires_holds_of_idle_accounts(meter: CreditMeter, acme: str, clock: Clock) -> None:
    hold = meter.authorize(acme, "chat", credits=400, ttl=timedelta(seconds=30))
    clock.advance(seconds=31)

    assert meter.sweep() == 1

    assert meter.hold(hold.id).status == "expired"
    assert meter.balance(acme).held == 0
    assert meter.sweep() == 0
    assert_books_balance(meter)


def test_settle_or_release_of_a_finished_hold_is_refused(meter: CreditMeter, acme: str) -> None:
    settled = meter.authorize(acme, "chat", credits=100)
    meter.settle(settled.id, credits=100)
    released = meter.authorize(acme, "chat", credits=100)
    meter.release(released.id)

    with pytest.raises(HoldNotPending) as twice:
        meter.settle(settled.id, credits=100)
    assert (twice.value.hold_id, twice.value.status) == (settled.id, "settled")
    with pytest.raises(HoldNotPending):
        meter.release(settled.id)
    with pytest.raises(HoldNotPending) as after_release:
        meter.settle(released.id)
    assert after_release.value.status == "released"
    with pytest.raises(HoldNotPending):
        meter.release(released.id)

    balance = meter.balance(acme)
    assert (balance.available, balance.held) == (900, 0)
    assert len(meter.usage(acme).data) == 1
    assert_books_balance(meter)


def test_failed_operation_costs_nothing(meter: CreditMeter, acme: str) -> None:
    hold = meter.authorize(acme, "chat", credits=400)

    charge = meter.settle(hold.id, usage={"tokens": 350}, success=False)

    assert charge.credits == 0
    assert charge.charged == 0
    assert charge.available_after == 1_000
    record = meter.usage_record(charge.usage_id)
    assert record.success is False
    assert record.credits == 0
    assert record.quantities == {"tokens": 350}
    assert meter.hold(hold.id).status == "settled"
    balance = meter.balance(acme)
    assert (balance.available, balance.held) == (1_000, 0)
    assert_books_balance(meter)


def test_holding_settles_the_estimate_on_normal_exit(meter: CreditMeter, acme: str) -> None:
    with meter.holding(acme, "chat", credits=250) as held:
        assert meter.balance(acme).held == 250

    assert held.charge is not None
    assert held.charge.charged == 250
    assert meter.hold(held.hold.id).status == "settled"
    balance = meter.balance(acme)
    assert (balance.available, balance.held) == (750, 0)
    assert_books_balance(meter)


def test_holding_settles_the_actual_usage_given_in_the_block(meter: CreditMeter, acme: str) -> None:
    with meter.holding(acme, "chat", estimate={"tokens": 500}) as held:
        charge = held.settle(usage={"tokens": 120})

    assert charge.charged == 120
    assert held.charge == charge
    assert meter.balance(acme).available == 880
    assert len(meter.usage(acme).data) == 1
    assert_books_balance(meter)


def test_holding_releases_on_exception(meter: CreditMeter, acme: str) -> None:
    blocks: list[HeldOperation] = []

    def call_provider() -> None:
        with meter.holding(acme, "chat", credits=250) as held:
            blocks.append(held)
            assert meter.balance(acme).available == 750
            raise RuntimeError("provider down")

    with pytest.raises(RuntimeError, match="provider down"):
        call_provider()

    [held] = blocks
    assert held.charge is None
    assert meter.hold(held.hold.id).status == "released"
    balance = meter.balance(acme)
    assert (balance.available, balance.held) == (1_000, 0)
    assert meter.usage(acme).data == ()
    assert_books_balance(meter)


def test_holding_refuses_before_the_block_runs(meter: CreditMeter, acme: str) -> None:
    ran = False
    with (
        pytest.raises(InsufficientCredits),
        meter.holding(acme, "chat", credits=1_001),
    ):
        ran = True
    assert ran is False
    assert meter.balance(acme).held == 0
    assert_books_balance(meter)


def test_held_credits_cannot_be_spent_twice(meter: CreditMeter, acme: str) -> None:
    first = meter.authorize(acme, "chat", credits=600)
    with pytest.raises(InsufficientCredits):
        meter.charge(acme, "chat", credits=500)
    meter.charge(acme, "chat", credits=400)
    assert meter.balance(acme).available == 0
    meter.settle(first.id, credits=600)
    assert meter.balance(acme).available == 0
    assert_books_balance(meter)


def test_bad_ttl_is_refused(meter: CreditMeter, acme: str) -> None:
    for ttl in (timedelta(0), timedelta(seconds=-5), timedelta(days=1, seconds=1)):
        with pytest.raises(InvalidRequest):
            meter.authorize(acme, "chat", credits=10, ttl=ttl)
    hold = meter.authorize(acme, "chat", credits=10, ttl=timedelta(days=1))
    assert hold.expires_at - hold.created_at == timedelta(days=1)
    assert meter.balance(acme).held == 10
    assert_books_balance(meter)


def test_credits_held_across_a_period_end_are_honoured(meter: CreditMeter, clock: Clock) -> None:
    meter.put_plan("pro", allowances={"*": 1_000})
    meter.put_feature("chat", rates={"tokens": 1})
    meter.create_account("acme", plan="pro")
    clock.now = datetime(2026, 3, 31, 23, 30, tzinfo=UTC)
    hold = meter.authorize("acme", "chat", credits=500, ttl=timedelta(hours=2))

    clock.now = datetime(2026, 4, 1, 0, 30, tzinfo=UTC)
    charge = meter.settle(hold.id, credits=300)

    assert charge.charged == 300
    txn = usage_transaction(meter, "acme", charge.transaction_id)
    assert txn.by_grant_source() == {GrantSource.ALLOWANCE: -300}
    balance = meter.balance("acme")
    assert (balance.available, balance.held) == (1_000, 0)
    assert balance.allowance.used == 0
    expired = [t.amount for t in meter.iter_transactions("acme", types=("expiry",))]
    assert sorted(expired) == [-500, -200]
    assert_books_balance(meter)


def test_observe_mode_authorizes_what_it_would_refuse(meter: CreditMeter, acme: str) -> None:
    meter.change_settings({"enforcement": "observe"}, changed_by="test")

    hold = meter.authorize(acme, "chat", credits=1_500)

    assert hold.would_refuse is not None
    assert hold.would_refuse.code == "insufficient_credits"
    assert hold.reserved == 1_000
    charge = meter.settle(hold.id)
    assert (charge.credits, charge.charged, charge.uncollected) == (1_500, 1_000, 500)
    assert meter.balance(acme).available == 0
    assert_books_balance(meter)


def test_unlimited_plan_hold_settles_without_drawing(meter: CreditMeter) -> None:
    meter.put_plan("enterprise", allowances={"*": None})
    meter.put_feature("chat", rates={"tokens": 1})
    meter.create_account("acme", plan="enterprise")
    meter.grant("acme", 100, source="purchase")
    hold = meter.authorize("acme", "chat", credits=5_000)
    assert hold.reserved == 0
    assert meter.balance("acme").available == 100

    charge = meter.settle(hold.id, credits=4_000)

    assert (charge.credits, charge.charged, charge.uncollected) == (4_000, 0, 0)
    assert meter.balance("acme").available == 100
    assert meter.usage_record(charge.usage_id).unlimited is True
    assert_books_balance(meter)


def test_balancing_authorize_reserves_what_is_there(meter: CreditMeter, acme: str) -> None:
    meter.authorize(acme, "chat", credits=800)

    hold = meter.authorize(acme, "chat", estimate={"tokens": 500}, balancing=True)

    assert (hold.credits, hold.reserved, hold.requested) == (200, 200, 500)
    assert meter.hold(hold.id) == hold
    balance = meter.balance(acme)
    assert (balance.available, balance.held) == (0, 1_000)
    # Settled without usage, it charges what it reserved, not the estimate.
    charge = meter.settle(hold.id)
    assert (charge.credits, charge.charged, charge.uncollected) == (200, 200, 0)
    assert_books_balance(meter)


def test_balancing_authorize_with_enough_is_a_plain_hold(meter: CreditMeter, acme: str) -> None:
    hold = meter.authorize(acme, "chat", credits=300, balancing=True)

    assert (hold.credits, hold.reserved, hold.requested) == (300, 300, None)


def test_balancing_authorize_with_nothing_there_is_refused(meter: CreditMeter, acme: str) -> None:
    meter.charge(acme, "chat", credits=1_000)

    with pytest.raises(InsufficientCredits) as refused:
        meter.authorize(acme, "chat", credits=10, balancing=True)

    assert (refused.value.required, refused.value.available) == (10, 0)
    assert meter.balance(acme).held == 0
    assert_books_balance(meter)


def test_balancing_authorize_does_not_count_the_overdraft(meter: CreditMeter) -> None:
    meter.put_feature("chat", rates={"tokens": 1})
    meter.create_account("acme", overdraft_limit=500)
    meter.grant("acme", 100, source="purchase")

    hold = meter.authorize("acme", "chat", credits=300, balancing=True)

    assert (hold.credits, hold.reserved, hold.requested) == (100, 100, 300)
    meter.release(hold.id)
    meter.charge("acme", "chat", credits=100)
    with pytest.raises(InsufficientCredits):
        meter.authorize("acme", "chat", credits=300, balancing=True)
    assert_books_balance(meter)


def test_balancing_authorize_is_idempotent_by_key(meter: CreditMeter, acme: str) -> None:
    first = meter.authorize(acme, "chat", credits=1_500, balancing=True, idempotency_key="b1")
    again = meter.authorize(acme, "chat", credits=1_500, balancing=True, idempotency_key="b1")

    assert again == first
    assert (first.credits, first.requested) == (1_000, 1_500)
    with pytest.raises(IdempotencyConflict):
        meter.authorize(acme, "chat", credits=1_500, idempotency_key="b1")


def test_balancing_authorize_in_observe_mode_holds_the_whole_estimate(
    meter: CreditMeter, acme: str
) -> None:
    meter.change_settings({"enforcement": "observe"}, changed_by="test")

    hold = meter.authorize(acme, "chat", credits=1_500, balancing=True)

    assert (hold.credits, hold.reserved, hold.requested) == (1_500, 1_000, None)
    assert hold.would_refuse is not None
