"""Where a grant, a hold or a period ends, the books come out as if it had ended on time.

Four edges, on both engines: a grant given already expired, a usage refunded to an
account in debt, a hold given back after its allowance's period ended, and an account
nobody touched for a period or more. In each, what the account ends up with does not
depend on when anyone looked.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from creditmeter import CreditMeter, InvalidRequest
from creditmeter.core.types import GrantSource, TransactionType
from tests.conftest import Clock

JAN_31_LATE = datetime(2026, 1, 31, 23, 30, tzinfo=UTC)


def kinds(meter: CreditMeter, account_id: str) -> list[str]:
    """The types of the account's ledger transactions, oldest first."""
    return [t.type.value for t in reversed(list(meter.iter_transactions(account_id)))]


# A grant whose end has passed adds nothing.


def test_a_grant_that_has_already_expired_is_refused_and_repays_no_debt(
    meter: CreditMeter, clock: Clock
) -> None:
    meter.put_feature("chat", rates={"tokens": 1})
    meter.create_account("acme", overdraft_limit=50)
    meter.charge("acme", "chat", credits=50)
    assert meter.balance("acme").debt == 50
    before = kinds(meter, "acme")

    with pytest.raises(InvalidRequest, match="expires_at must be in the future"):
        meter.grant(
            "acme",
            100,
            source="admin",
            effective_at=clock.now - timedelta(days=365),
            expires_at=clock.now - timedelta(days=364),
        )
    with pytest.raises(InvalidRequest, match="expires_at must be in the future"):
        meter.grant("acme", 100, source="admin", expires_at=clock.now)

    balance = meter.balance("acme")
    assert (balance.available, balance.debt) == (-50, 50)
    assert kinds(meter, "acme") == before
    assert meter.grants("acme") == []
    assert meter.verify() == []


def test_a_backdated_grant_still_in_force_counts(meter: CreditMeter, clock: Clock) -> None:
    meter.create_account("acme")
    result = meter.grant(
        "acme",
        100,
        source="admin",
        effective_at=clock.now - timedelta(days=30),
        expires_at=clock.now + timedelta(days=1),
    )
    assert result.available_after == 100


# A refund repays debt first, whichever kind it is.


def test_refunding_a_usage_repays_the_debt_first(meter: CreditMeter, clock: Clock) -> None:
    meter.put_feature("chat", rates={"tokens": 1})
    meter.create_account("acme", overdraft_limit=50)
    meter.grant("acme", 100, source="admin", expires_at=clock.now + timedelta(days=1))
    spent = meter.charge("acme", "chat", credits=100)
    clock.advance(days=2)
    owed = meter.charge("acme", "chat", credits=50)
    assert owed.debited == 50
    assert meter.balance("acme").debt == 50

    meter.refund("acme", usage_id=spent.usage_id)

    balance = meter.balance("acme")
    assert (balance.available, balance.debt) == (50, 0)
    assert kinds(meter, "acme")[-2:] == ["refund", "debt_repayment"]
    [refund_grant] = [g for g in meter.grants("acme") if g.source is GrantSource.REFUND]
    assert (refund_grant.amount, refund_grant.remaining) == (100, 50)
    assert meter.verify() == []


def test_refunding_a_usage_to_a_grant_still_active_repays_the_debt_first(
    meter: CreditMeter,
) -> None:
    meter.put_feature("chat", rates={"tokens": 1})
    meter.put_feature("image", rates={"calls": 1}, pool="image")
    meter.create_account("acme", overdraft_limit=30)
    meter.grant("acme", 100, source="admin", pool="chat")
    spent = meter.charge("acme", "chat", credits=100)
    meter.charge("acme", "image", credits=30)  # no grant of its pool: all of it is debt
    assert meter.balance("acme").debt == 30

    meter.refund("acme", usage_id=spent.usage_id)

    balance = meter.balance("acme")
    assert (balance.available, balance.debt) == (70, 0)
    assert meter.verify() == []


def test_refunding_an_amount_repays_the_debt_first(meter: CreditMeter) -> None:
    meter.put_feature("chat", rates={"tokens": 1})
    meter.create_account("acme", overdraft_limit=50)
    meter.charge("acme", "chat", credits=50)

    meter.refund("acme", amount=80)

    balance = meter.balance("acme")
    assert (balance.available, balance.debt) == (30, 0)
    assert meter.verify() == []


# A hold given back after its allowance's period ended.


@pytest.fixture
def late_hold(meter: CreditMeter, clock: Clock) -> str:
    """An account on 100 credits a month (up to 100 carried over), and a hold of 60 of
    January's allowance taken half an hour before the month ends, for two hours."""
    meter.put_plan("monthly", allowances={"*": 100}, rollover_cap=100)
    meter.put_feature("chat", rates={"tokens": 1})
    clock.now = JAN_31_LATE
    meter.create_account("acme", plan="monthly")
    return meter.authorize("acme", "chat", credits=60, ttl=timedelta(hours=2)).id


def test_a_hold_released_after_the_period_end_rolls_over_as_if_never_taken(
    meter: CreditMeter, clock: Clock, late_hold: str
) -> None:
    clock.now = JAN_31_LATE + timedelta(hours=1)
    assert meter.balance("acme").available == 140  # 40 carried over while 60 were held

    meter.release(late_hold)

    balance = meter.balance("acme")
    assert (balance.available, balance.held) == (200, 0)
    rollovers = [t for t in meter.iter_transactions("acme") if t.type is TransactionType.ROLLOVER]
    assert sorted(t.by_grant_source()[GrantSource.ROLLOVER] for t in rollovers) == [40, 60]
    assert all(t.created_at == datetime(2026, 2, 1, tzinfo=UTC) for t in rollovers)
    assert meter.verify() == []


def test_a_hold_that_expires_after_the_period_end_rolls_over_as_if_never_taken(
    meter: CreditMeter, clock: Clock, late_hold: str
) -> None:
    clock.now = JAN_31_LATE + timedelta(hours=3)
    balance = meter.balance("acme")
    assert (balance.available, balance.held) == (200, 0)
    assert meter.hold(late_hold).status.value == "expired"
    assert meter.verify() == []


@pytest.mark.parametrize(("used", "available"), [(60, 140), (20, 180), (0, 200)])
def test_a_hold_settled_after_the_period_end_rolls_over_what_it_did_not_use(
    meter: CreditMeter, clock: Clock, late_hold: str, used: int, available: int
) -> None:
    clock.now = JAN_31_LATE + timedelta(hours=1)
    meter.settle(late_hold, credits=used)
    assert meter.balance("acme").available == available
    assert meter.verify() == []


def test_a_hold_given_back_late_rolls_over_only_what_the_cap_still_allows(
    meter: CreditMeter, clock: Clock
) -> None:
    meter.put_plan("monthly", allowances={"*": 100}, rollover_cap=50)
    meter.put_feature("chat", rates={"tokens": 1})
    clock.now = JAN_31_LATE
    meter.create_account("acme", plan="monthly")
    meter.charge("acme", "chat", credits=10)
    hold = meter.authorize("acme", "chat", credits=60, ttl=timedelta(hours=2))
    clock.advance(hours=1)
    assert meter.balance("acme").available == 130  # the 30 free of January carried

    meter.release(hold.id)

    # As if the hold had never been: 90 unused, 50 of them carried, 40 expired.
    assert meter.balance("acme").available == 150
    expired = [t for t in meter.iter_transactions("acme") if t.type is TransactionType.EXPIRY]
    assert sum(t.amount for t in expired) == -40
    assert meter.verify() == []


@pytest.mark.parametrize("looked_in_february", [False, True])
def test_a_hold_given_back_after_the_next_period_also_ended_rolls_and_expires(
    meter: CreditMeter, clock: Clock, late_hold: str, looked_in_february: bool
) -> None:
    if looked_in_february:
        clock.now = JAN_31_LATE + timedelta(hours=1)
        assert meter.balance("acme").available == 140
    clock.now = datetime(2026, 3, 1, 12, tzinfo=UTC)

    # January's 100 unused carried into February and expired with it; February's 100
    # unused carried into March: March has its 100 and 100 carried.
    assert meter.balance("acme").available == 200
    assert meter.hold(late_hold).status.value == "expired"
    by_kind = {
        kind: sum(t.amount for t in meter.iter_transactions("acme") if t.type.value == kind)
        for kind in ("allocation", "rollover", "expiry")
    }
    assert by_kind == {"allocation": 300, "rollover": 0, "expiry": -100}
    assert meter.verify() == []


# Period ends do not depend on who looked.


def test_reading_a_balance_changes_nothing_that_follows(meter: CreditMeter, clock: Clock) -> None:
    meter.put_plan("monthly", allowances={"*": 100}, rollover_cap=50)
    meter.put_feature("chat", rates={"tokens": 1})
    clock.now = datetime(2026, 1, 5, tzinfo=UTC)
    meter.create_account("untouched", plan="monthly")
    meter.create_account("read", plan="monthly")
    meter.charge("untouched", "chat", credits=10)
    meter.charge("read", "chat", credits=10)

    clock.now = datetime(2026, 2, 10, tzinfo=UTC)
    assert meter.balance("read").available == 150
    clock.now = datetime(2026, 3, 1, tzinfo=UTC)

    # March: its 100, and 50 of February's unused 100 carried over.
    assert meter.balance("untouched").available == meter.balance("read").available == 150
    totals = [
        {kind: sum(t.amount for t in txns if t.type.value == kind) for kind in kinds(meter, a)}
        for a in ("untouched", "read")
        for txns in [list(meter.iter_transactions(a))]
    ]
    assert totals[0] == totals[1]
    assert meter.verify() == []


def test_an_account_idle_for_a_year_gets_every_period_it_missed(
    meter: CreditMeter, clock: Clock
) -> None:
    meter.put_plan("monthly", allowances={"*": 100}, rollover_cap=50)
    clock.now = datetime(2026, 1, 5, tzinfo=UTC)
    meter.create_account("acme", plan="monthly")

    clock.now = datetime(2027, 1, 20, tzinfo=UTC)
    assert meter.balance("acme").available == 150
    allocations = [
        t for t in meter.iter_transactions("acme") if t.type is TransactionType.ALLOCATION
    ]
    assert len(allocations) == 13
    assert meter.verify() == []
