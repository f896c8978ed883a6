"""Events queued with the change that causes them: threshold alerts once per crossing
(also under 1,000 concurrent charges), and the rest of the catalogue, on both engines."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from creditmeter import CreditMeter, UsageEvent
from creditmeter.events import catalogue
from creditmeter.payments.dev import DECLINING_CARD, WORKING_CARD
from creditmeter.store.tables import outbox
from tests.conftest import Clock
from tests.service.payment_events import charge_refunded, deliver, drain, session_completed


def events(meter: CreditMeter, *types: str) -> list[tuple[str, dict[str, Any]]]:
    """The events queued so far (delivered or not), oldest first, of ``types`` if given;
    each checked against its schema."""
    query = (
        sa.select(outbox.c.topic, outbox.c.payload)
        .where(outbox.c.topic.startswith("event."))
        .order_by(outbox.c.created_at, outbox.c.id)
    )
    with meter.db.read() as conn:
        found = [(t.removeprefix("event."), dict(p)) for t, p in conn.execute(query).all()]
    for event_type, data in found:  # every event queued is as the catalogue documents it
        catalogue.validate(event_type, json.dumps(data))
    return [(t, p) for t, p in found if not types or t in types]


BALANCE = ("balance.low", "balance.critical", "balance.recovered")


@pytest.fixture
def acme(meter: CreditMeter) -> CreditMeter:
    """``acme`` with 1,500 admin credits; low at 1,000, critical at 100."""
    meter.put_feature("chat", rates={"calls": 1})
    meter.create_account("acme")
    meter.grant("acme", 1500)
    return meter


def test_the_charge_that_crosses_the_line_tells_once(acme: CreditMeter) -> None:
    acme.charge("acme", "chat", usage={"calls": 499})
    assert events(acme, *BALANCE) == []
    acme.charge("acme", "chat", usage={"calls": 1})  # 1,000 left: low
    acme.charge("acme", "chat", usage={"calls": 100})
    assert events(acme, *BALANCE) == [
        ("balance.low", {"account_id": "acme", "available": 1000, "threshold": 1000})
    ]
    acme.charge("acme", "chat", usage={"calls": 850})  # 50 left: critical
    acme.charge("acme", "chat", usage={"calls": 10})
    assert [t for t, _ in events(acme, *BALANCE)] == ["balance.low", "balance.critical"]
    assert events(acme, "balance.critical")[0][1]["available"] == 50


def test_recovery_after_a_grant_needs_the_margin_and_rearms(acme: CreditMeter) -> None:
    acme.charge("acme", "chat", usage={"calls": 600})  # 900: low
    acme.grant("acme", 200)  # 1,100: above the line, not above the margin
    assert [t for t, _ in events(acme, *BALANCE)] == ["balance.low"]
    acme.grant("acme", 1)  # 1,101: recovered
    assert [t for t, _ in events(acme, *BALANCE)] == ["balance.low", "balance.recovered"]
    assert events(acme, "balance.recovered")[0][1] == {
        "account_id": "acme",
        "available": 1101,
        "threshold": 1000,
    }
    acme.charge("acme", "chat", usage={"calls": 101})  # 1,000: low again
    assert [t for t, _ in events(acme, *BALANCE)] == [
        "balance.low",
        "balance.recovered",
        "balance.low",
    ]


def test_a_hold_released_at_the_line_does_not_flap(acme: CreditMeter) -> None:
    for _ in range(3):
        hold = acme.authorize("acme", "chat", credits=600)  # 900 available while held
        acme.release(hold.id)  # 1,500 again: above the margin
    assert [t for t, _ in events(acme, *BALANCE)] == ["balance.low", "balance.recovered"] * 3
    acme.charge("acme", "chat", usage={"calls": 450})  # 1,050
    for _ in range(3):
        hold = acme.authorize("acme", "chat", credits=100)  # 950
        acme.release(hold.id)  # 1,050: within the margin, still low
    assert [t for t, _ in events(acme, *BALANCE)][6:] == ["balance.low"]


def test_a_purchase_recovers_the_balance(meter: CreditMeter) -> None:
    meter.put_feature("chat", rates={"calls": 1})
    meter.put_package("starter", credits=1000, bonus_credits=100, price=999, currency="USD")
    meter.create_account("acme")
    meter.grant("acme", 50)
    meter.charge("acme", "chat", usage={"calls": 1})
    checkout = meter.checkout("acme", "starter", success_url="https://app.example/paid")
    purchase = meter.purchase(checkout.purchase_id)
    deliver(meter, "checkout.session.completed", session_completed(purchase))
    drain(meter)
    assert meter.balance("acme").available == 1149
    assert [t for t, _ in events(meter, *BALANCE)] == [
        "balance.low",
        "balance.critical",
        "balance.recovered",
    ]
    assert [t for t, _ in events(meter, "purchase.fulfilled")] == ["purchase.fulfilled"]


def test_a_refund_takes_the_balance_back_down(meter: CreditMeter) -> None:
    meter.put_package("starter", credits=1000, bonus_credits=100, price=999, currency="USD")
    meter.create_account("acme")
    checkout = meter.checkout("acme", "starter", success_url="https://app.example/paid")
    purchase = meter.purchase(checkout.purchase_id)
    deliver(meter, "checkout.session.completed", session_completed(purchase))
    drain(meter)
    deliver(meter, "charge.refunded", charge_refunded(meter.purchase(purchase.id), 999))
    drain(meter)
    assert [t for t, _ in events(meter, *BALANCE, "purchase.refunded")] == [
        "purchase.refunded",
        "balance.low",
        "balance.critical",
    ]
    assert events(meter, "purchase.refunded")[0][1]["credits"] == 1100


def test_an_unlimited_plan_hears_nothing_of_its_balance(meter: CreditMeter) -> None:
    meter.put_feature("chat", rates={"calls": 1})
    meter.put_plan("max", allowances={"*": None})
    meter.create_account("acme", plan="max")
    meter.charge("acme", "chat", usage={"calls": 5})
    assert events(meter, *BALANCE, "allowance.threshold") == []


def test_allowance_percentages_once_a_period_and_again_the_next(
    meter: CreditMeter, clock: Clock
) -> None:
    clock.now = datetime(2026, 3, 10, tzinfo=UTC)
    meter.change_settings(
        {"low_balance_threshold": 0, "critical_balance_threshold": 0}, changed_by="t"
    )
    meter.put_feature("chat", rates={"calls": 1})
    meter.put_plan("pro", allowances={"*": 1000})
    meter.create_account("acme", plan="pro")
    meter.grant("acme", 5000)  # bought credits: the allowance goes first
    meter.charge("acme", "chat", usage={"calls": 740})
    meter.charge("acme", "chat", usage={"calls": 160})  # 90 %: 75 and 90 at once
    meter.charge("acme", "chat", usage={"calls": 50})
    meter.charge("acme", "chat", usage={"calls": 100})  # 100 % (and into the bought credits)
    meter.charge("acme", "chat", usage={"calls": 100})
    told = events(meter, "allowance.threshold")
    assert [p["percentage"] for _, p in told] == [75, 90, 100]
    assert told[1][1] == {
        "account_id": "acme",
        "percentage": 90,
        "used": 900,
        "limit": 1000,
        "period_start": "2026-03-01T00:00:00Z",
        "period_end": "2026-04-01T00:00:00Z",
    }

    clock.now = datetime(2026, 4, 2, tzinfo=UTC)
    meter.charge("acme", "chat", usage={"calls": 800})
    meter.charge("acme", "chat", usage={"calls": 200})
    told = events(meter, "allowance.threshold")
    assert [p["percentage"] for _, p in told] == [75, 90, 100, 75, 90, 100]
    renewed = events(meter, "period.renewed")
    assert renewed == [
        (
            "period.renewed",
            {
                "account_id": "acme",
                "plan": "pro",
                "period_start": "2026-04-01T00:00:00Z",
                "period_end": "2026-05-01T00:00:00Z",
                "allowance": 1000,
            },
        )
    ]


CHARGES = 1000


def test_a_thousand_concurrent_charges_tell_low_once(acme: CreditMeter) -> None:
    """1,000 charges of one credit in 16 threads take 1,500 credits to 500: exactly one
    ``balance.low`` (and no ``balance.critical``), on both engines."""

    def charge(i: int) -> None:
        acme.charge("acme", "chat", usage={"calls": 1}, idempotency_key=f"c{i}")

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(charge, range(CHARGES)))
    assert acme.balance("acme").available == 500
    assert events(acme, *BALANCE) == [
        ("balance.low", {"account_id": "acme", "available": 1000, "threshold": 1000})
    ]
    assert acme.verify() == []


def test_a_thousand_concurrent_batched_charges_tell_low_once(acme: CreditMeter) -> None:
    def batch(start: int) -> None:
        acme.charge_many(
            [
                UsageEvent(
                    account_id="acme", feature="chat", usage={"calls": 1}, idempotency_key=f"b{i}"
                )
                for i in range(start, start + 10)
            ]
        )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(batch, range(0, CHARGES, 10)))
    assert acme.balance("acme").available == 500
    assert [t for t, _ in events(acme, *BALANCE)] == ["balance.low"]


# The rest of the catalogue.


def test_an_expired_hold_is_told(acme: CreditMeter, clock: Clock) -> None:
    hold = acme.authorize("acme", "chat", credits=30, ttl=timedelta(seconds=60))
    clock.advance(seconds=61)
    acme.sweep()
    assert events(acme, "hold.expired") == [
        ("hold.expired", {"account_id": "acme", "hold_id": hold.id, "credits": 30})
    ]
    acme.sweep()
    assert len(events(acme, "hold.expired")) == 1


def test_suspension_and_reactivation_are_told(acme: CreditMeter) -> None:
    acme.update_account("acme", status="suspended")
    acme.update_account("acme", name="Acme")  # no status change: nothing
    acme.update_account("acme", status="active")
    assert events(acme, "account.suspended", "account.reactivated") == [
        ("account.suspended", {"account_id": "acme", "status": "suspended", "previous": "active"}),
        (
            "account.reactivated",
            {"account_id": "acme", "status": "active", "previous": "suspended"},
        ),
    ]


def test_a_grant_is_told_and_warned_of_once_before_it_expires(
    acme: CreditMeter, clock: Clock
) -> None:
    ends = clock() + timedelta(days=10)
    result = acme.grant("acme", 200, source="promotional", expires_at=ends, reason="launch")
    [(_, created)] = events(acme, "grant.created")[1:]  # the fixture's grant first
    assert created["grant_id"] == result.grant_id
    assert (created["amount"], created["source"], created["reason"]) == (
        200,
        "promotional",
        "launch",
    )
    acme.sweep()
    assert events(acme, "grant.expiring") == []  # 10 days ahead: not yet
    clock.advance(days=3, seconds=1)
    acme.sweep()
    acme.sweep()
    [(_, expiring)] = events(acme, "grant.expiring")
    assert expiring["grant_id"] == result.grant_id
    assert expiring["remaining"] == 200
    clock.advance(days=1)
    acme.change_settings({"grant_expiring_days": 0}, changed_by="t")
    acme.sweep()
    assert len(events(acme, "grant.expiring")) == 1  # a grant is warned of once


def test_recharges_are_told(meter: CreditMeter, clock: Clock) -> None:
    meter.put_feature("chat", rates={"calls": 1})
    meter.put_package("refill", credits=500, price=500, currency="usd")
    meter.create_account("acme")
    meter.grant("acme", 1000)
    meter.set_auto_recharge(
        "acme", enabled=True, threshold=300, package="refill", payment_method=WORKING_CARD
    )
    meter.charge("acme", "chat", usage={"calls": 800})
    drain(meter)
    [(_, succeeded)] = events(meter, "recharge.succeeded")
    assert (succeeded["credits"], succeeded["price"]) == (500, {"amount": 500, "currency": "usd"})

    meter.set_auto_recharge(
        "acme", enabled=True, threshold=800, package="refill", payment_method=DECLINING_CARD
    )
    meter.charge("acme", "chat", usage={"calls": 1})
    drain(meter)
    [(_, failed)] = events(meter, "recharge.failed")
    assert failed["consecutive_failures"] == 1
    assert failed["auto_recharge_disabled"] is False
    for _ in range(2):
        clock.advance(seconds=3601)
        meter.charge("acme", "chat", usage={"calls": 1})
        drain(meter)
    failures = [p["consecutive_failures"] for _, p in events(meter, "recharge.failed")]
    assert failures == [1, 2, 3]
    assert events(meter, "recharge.failed")[-1][1]["auto_recharge_disabled"] is True
    [(_, disabled)] = events(meter, "auto_recharge.disabled")
    assert disabled["reason"].startswith("disabled after 3 failed recharges")
