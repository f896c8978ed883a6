from __future__ import annotations

from datetime import timedelta

import pytest

from creditmeter import (
    CreditMeter,
    CreditMeterError,
    IdempotencyConflict,
    InsufficientCredits,
    NotFound,
    UsageEvent,
)
from creditmeter.core.records import Charge
from creditmeter.core.types import HoldStatus
from tests.conftest import Clock


@pytest.fixture
def accounts(meter: CreditMeter) -> list[str]:
    meter.put_feature("chat", rates={"tokens": 1})
    for name in ("acme", "globex"):
        meter.create_account(name)
        meter.grant(name, 100, source="purchase")
    return ["acme", "globex"]


def charges(results: list[Charge | CreditMeterError]) -> list[Charge]:
    return [r for r in results if isinstance(r, Charge)]


def test_each_event_is_charged_or_refused_on_its_own_in_order(
    meter: CreditMeter, accounts: list[str]
) -> None:
    events = [
        UsageEvent("acme", "chat", usage={"tokens": 30}),
        UsageEvent("globex", "chat", usage={"tokens": 90}),
        UsageEvent("acme", "chat", usage={"tokens": 80}),  # 70 left: refused
        UsageEvent("acme", "chat", usage={"tokens": 70}),
        UsageEvent("nobody", "chat", usage={"tokens": 1}),
        UsageEvent("globex", "chat", usage={"tokens": 1}, model=None, member="m"),
    ]
    results = meter.charge_many(events)

    assert [type(r).__name__ for r in results] == [
        "Charge",
        "Charge",
        "InsufficientCredits",
        "Charge",
        "NotFound",
        "Charge",
    ]
    ok = charges(results)
    assert [c.account_id for c in ok] == ["acme", "globex", "acme", "globex"]
    assert [c.available_after for c in ok] == [70, 10, 0, 9]
    refused = results[2]
    assert isinstance(refused, InsufficientCredits)
    assert (refused.required, refused.available) == (80, 70)
    assert isinstance(results[4], NotFound)
    assert meter.balance("acme").available == 0
    assert meter.balance("globex").available == 9
    assert len(meter.usage("acme").data) == 2
    assert meter.verify() == []


def test_a_batch_retried_with_its_keys_changes_nothing_and_answers_the_same(
    meter: CreditMeter, accounts: list[str]
) -> None:
    events = [
        UsageEvent("acme", "chat", usage={"tokens": n}, idempotency_key=f"k{n}")
        for n in (10, 20, 30)
    ]
    first = meter.charge_many(events)
    again = meter.charge_many(events)

    assert first == again
    assert meter.balance("acme").available == 40
    assert len(meter.usage("acme").data) == 3
    assert meter.verify() == []


def test_keys_are_shared_with_charge_and_checked_within_a_batch(
    meter: CreditMeter, accounts: list[str]
) -> None:
    single = meter.charge("acme", "chat", usage={"tokens": 5}, idempotency_key="shared")
    results = meter.charge_many(
        [
            UsageEvent("acme", "chat", usage={"tokens": 5}, idempotency_key="shared"),
            UsageEvent("acme", "chat", usage={"tokens": 7}, idempotency_key="twice"),
            UsageEvent("acme", "chat", usage={"tokens": 7}, idempotency_key="twice"),
            UsageEvent("acme", "chat", usage={"tokens": 9}, idempotency_key="twice"),
        ]
    )

    assert results[0] == single
    assert results[1] == results[2]
    assert isinstance(results[3], IdempotencyConflict)
    assert meter.balance("acme").available == 100 - 5 - 7
    assert meter.verify() == []


def test_the_same_as_charging_one_by_one(meter: CreditMeter, accounts: list[str]) -> None:
    meter.create_account("initech")
    meter.grant("initech", 100, source="purchase")
    amounts = [13, 7, 40, 1, 25, 19]
    batch = charges(meter.charge_many([UsageEvent("acme", "chat", credits=n) for n in amounts]))
    one_by_one = [meter.charge("initech", "chat", credits=n) for n in amounts[:5]]
    assert [c.available_after for c in batch] == [c.available_after for c in one_by_one]
    assert meter.balance("acme").available == meter.balance("initech").available == 14
    assert meter.verify() == []


def test_accounts_that_are_due_are_brought_up_to_date_first(
    meter: CreditMeter, accounts: list[str], clock: Clock
) -> None:
    held = meter.authorize("acme", "chat", credits=80, ttl=timedelta(minutes=1))
    meter.grant("globex", 50, source="promotional", expires_at=clock() + timedelta(minutes=1))
    clock.advance(minutes=2)

    results = meter.charge_many(
        [UsageEvent("acme", "chat", credits=90), UsageEvent("globex", "chat", credits=120)]
    )

    assert [type(r).__name__ for r in results] == ["Charge", "InsufficientCredits"]
    assert meter.hold(held.id).status is HoldStatus.EXPIRED  # its 80 credits free again
    assert meter.balance("acme").available == 10
    refused = results[1]
    assert isinstance(refused, InsufficientCredits)
    assert refused.available == 100  # the promotional 50 expired
    assert meter.verify() == []
