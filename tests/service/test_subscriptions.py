"""Subscriptions at the payment provider, on both engines: they set the plan, and each
paid invoice renews a billing-cycle plan's allowance once."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from creditmeter import CreditMeter
from creditmeter.core.types import TransactionType
from tests.conftest import Clock
from tests.service.payment_events import deliver, drain


@pytest.fixture
def subscribed(meter: CreditMeter) -> CreditMeter:
    """``acme`` on no plan with a customer at the provider; plans ``basic`` (1,000) and
    ``pro`` (5,000) renewed by paid invoices, and ``monthly`` (2,000) by calendar month."""
    meter.put_plan("basic", allowances={"*": 1000}, period="billing_cycle")
    meter.put_plan("pro", allowances={"*": 5000}, period="billing_cycle")
    meter.put_plan("monthly", allowances={"*": 2000})
    meter.create_account("acme")
    meter.put_package("starter", credits=100, price=100, currency="usd")
    meter.checkout("acme", "starter", ui_mode="elements")  # makes the provider's customer
    return meter


def subscription(plan: str, status: str = "active", **extra: Any) -> dict[str, Any]:
    return {
        "id": "sub_1",
        "object": "subscription",
        "customer": "cus_dev_acme",
        "status": status,
        "items": {"data": [{"price": {"id": "price_1", "lookup_key": plan}}]},
        **extra,
    }


def invoice(
    invoice_id: str, start: datetime, days: int = 30, plan: str = "basic"
) -> dict[str, Any]:
    end = start + timedelta(days=days)
    return {
        "id": invoice_id,
        "object": "invoice",
        "customer": "cus_dev_acme",
        "subscription": "sub_1",
        "status": "paid",
        "lines": {
            "data": [
                {
                    "period": {"start": int(start.timestamp()), "end": int(end.timestamp())},
                    "price": {"lookup_key": plan},
                }
            ]
        },
    }


def allocations(meter: CreditMeter) -> list[int]:
    found = meter.iter_transactions("acme", types=(TransactionType.ALLOCATION.value,))
    return [t.amount for t in reversed(list(found))]


def test_a_new_subscription_sets_the_plan_and_its_paid_invoice_issues_the_allowance(
    subscribed: CreditMeter, clock: Clock
) -> None:
    deliver(subscribed, "customer.subscription.created", subscription("basic", "incomplete"))
    drain(subscribed)
    assert subscribed.account("acme").plan is None  # not paid yet

    deliver(subscribed, "invoice.paid", invoice("in_1", clock.now))
    deliver(subscribed, "invoice.paid", invoice("in_1", clock.now))
    deliver(subscribed, "customer.subscription.updated", subscription("basic"))
    drain(subscribed)

    account = subscribed.account("acme")
    assert account.plan == "basic"
    assert (account.period_start, account.period_end) == (clock.now, clock.now + timedelta(days=30))
    assert subscribed.balance("acme").available == 1000
    assert allocations(subscribed) == [1000]
    assert subscribed.verify() == []


def test_each_paid_invoice_renews_once_and_the_unused_allowance_expires(
    subscribed: CreditMeter, clock: Clock
) -> None:
    deliver(subscribed, "customer.subscription.created", subscription("basic"))
    deliver(subscribed, "invoice.paid", invoice("in_1", clock.now))
    drain(subscribed)
    subscribed.put_feature("chat", rates={"calls": 1})
    subscribed.charge("acme", "chat", usage={"calls": 400})

    next_start = clock.now + timedelta(days=30)
    clock.now = next_start
    deliver(subscribed, "invoice.paid", invoice("in_2", next_start))
    deliver(subscribed, "invoice.paid", invoice("in_2", next_start))
    drain(subscribed)

    assert subscribed.balance("acme").available == 1000
    assert allocations(subscribed) == [1000, 1000]
    expired = subscribed.iter_transactions("acme", types=(TransactionType.EXPIRY.value,))
    assert [t.amount for t in expired] == [-600]
    assert subscribed.verify() == []


def test_an_old_invoice_arriving_late_changes_nothing(
    subscribed: CreditMeter, clock: Clock
) -> None:
    deliver(subscribed, "invoice.paid", invoice("in_2", clock.now))
    drain(subscribed)
    deliver(subscribed, "invoice.paid", invoice("in_1", clock.now - timedelta(days=30)))
    drain(subscribed)
    assert allocations(subscribed) == [1000]
    notes = {e["note"] for e in subscribed.payment_events()}
    assert "this period's allowance is issued already" in notes


def test_an_upgrade_applies_now_and_a_cancellation_ends_the_plan(
    subscribed: CreditMeter, clock: Clock
) -> None:
    deliver(subscribed, "customer.subscription.created", subscription("basic"))
    deliver(subscribed, "invoice.paid", invoice("in_1", clock.now))
    drain(subscribed)

    deliver(subscribed, "customer.subscription.updated", subscription("pro"))
    drain(subscribed)
    assert subscribed.account("acme").plan == "pro"
    assert subscribed.balance("acme").available == 5000  # topped up to the new allowance

    deliver(subscribed, "customer.subscription.deleted", subscription("pro", "canceled"))
    drain(subscribed)
    assert subscribed.account("acme").plan is None
    assert subscribed.verify() == []


def test_a_downgrade_waits_for_the_next_period(subscribed: CreditMeter) -> None:
    subscribed.change_plan("acme", "pro")
    deliver(subscribed, "customer.subscription.updated", subscription("basic"))
    drain(subscribed)
    account = subscribed.account("acme")
    assert (account.plan, account.pending_plan) == ("pro", "basic")


def test_subscriptions_naming_no_known_plan_or_account_are_flagged(
    subscribed: CreditMeter,
) -> None:
    deliver(subscribed, "customer.subscription.updated", subscription("platinum"))
    deliver(
        subscribed,
        "customer.subscription.updated",
        subscription("basic") | {"customer": "cus_someone_else"},
    )
    drain(subscribed)
    notes = [(e["status"], e["note"]) for e in subscribed.payment_events()]
    assert [status for status, _ in notes] == ["flagged", "flagged"]
    assert subscribed.account("acme").plan is None


def test_a_calendar_plan_still_rolls_by_itself(subscribed: CreditMeter, clock: Clock) -> None:
    subscribed.change_plan("acme", "monthly")
    assert subscribed.balance("acme").available == 2000
    clock.advance(days=40)
    assert allocations(subscribed) == [2000, 2000]
