"""Auto-recharge with the development provider, on both engines: started by the charge
that crosses the threshold, one at a time, within the monthly cap, disabled after
consecutive failures."""

from __future__ import annotations

import pytest

from creditmeter import CreditMeter, InvalidRequest, NotFound
from creditmeter.core.payments import PurchaseKind, PurchaseStatus
from creditmeter.payments.dev import DECLINING_CARD, WORKING_CARD
from tests.conftest import Clock
from tests.service.payment_events import drain


@pytest.fixture
def shop(meter: CreditMeter) -> CreditMeter:
    """``acme`` with 1,000 admin credits, auto-recharge of a 500-credit pack ($5) below
    300 credits."""
    meter.put_feature("chat", rates={"calls": 1})
    meter.put_package("refill", credits=500, price=500, currency="usd")
    meter.create_account("acme")
    meter.grant("acme", 1000)
    meter.set_auto_recharge(
        "acme", enabled=True, threshold=300, package="refill", payment_method=WORKING_CARD
    )
    return meter


def recharges(meter: CreditMeter) -> list[tuple[PurchaseStatus, int]]:
    return [
        (p.status, p.credits)
        for p in reversed(meter.purchases("acme").data)
        if p.kind is PurchaseKind.AUTO_RECHARGE
    ]


def test_a_charge_below_the_threshold_recharges_once(shop: CreditMeter) -> None:
    shop.charge("acme", "chat", usage={"calls": 600})
    assert recharges(shop) == []  # 400 left: above the threshold
    shop.charge("acme", "chat", usage={"calls": 200})
    assert recharges(shop) == [(PurchaseStatus.PENDING, 500)]  # queued with the charge
    shop.charge("acme", "chat", usage={"calls": 100})  # still low: one in flight already
    assert len(recharges(shop)) == 1

    drain(shop)

    assert recharges(shop) == [(PurchaseStatus.FULFILLED, 500)]
    assert shop.balance("acme").available == 600
    assert shop.auto_recharge("acme").pending_purchase_id is None
    assert shop.verify() == []


def test_a_hold_and_a_settle_can_start_it_too(shop: CreditMeter) -> None:
    hold = shop.authorize("acme", "chat", credits=800)
    assert len(recharges(shop)) == 1
    drain(shop)
    shop.settle(hold.id, credits=800)
    assert shop.balance("acme").available == 700
    assert shop.verify() == []


def test_the_monthly_cap_is_never_exceeded(shop: CreditMeter, clock: Clock) -> None:
    shop.set_auto_recharge(
        "acme",
        enabled=True,
        threshold=300,
        package="refill",
        payment_method=WORKING_CARD,
        monthly_cap=1000,
    )
    for _ in range(4):
        shop.charge("acme", "chat", usage={"calls": 500})
        drain(shop)
    assert recharges(shop) == [(PurchaseStatus.FULFILLED, 500)] * 2  # $10 cap, $5 each

    clock.now = clock.now.replace(month=clock.now.month + 1, day=1)
    shop.grant("acme", 1000)
    shop.charge("acme", "chat", usage={"calls": 1000})
    drain(shop)
    assert len(recharges(shop)) == 3  # a new month
    assert shop.verify() == []


def test_consecutive_failures_disable_it_with_the_reason(shop: CreditMeter, clock: Clock) -> None:
    shop.change_settings(
        {"auto_recharge_max_failures": 3, "auto_recharge_retry_seconds": 60}, changed_by="ops"
    )
    shop.set_auto_recharge(
        "acme", enabled=True, threshold=300, package="refill", payment_method=DECLINING_CARD
    )
    shop.charge("acme", "chat", usage={"calls": 800})
    drain(shop)
    assert recharges(shop) == [(PurchaseStatus.FAILED, 500)]
    shop.charge("acme", "chat", usage={"calls": 1})
    assert len(recharges(shop)) == 1  # not before the retry delay

    for _ in range(2):
        clock.advance(seconds=61)
        shop.charge("acme", "chat", usage={"calls": 1})
        drain(shop)

    config = shop.auto_recharge("acme")
    assert recharges(shop) == [(PurchaseStatus.FAILED, 500)] * 3
    assert not config.enabled
    assert config.consecutive_failures == 3
    assert "declined" in str(config.disabled_reason)
    clock.advance(seconds=61)
    shop.charge("acme", "chat", usage={"calls": 1})
    assert len(recharges(shop)) == 3  # disabled: no more attempts
    assert shop.balance("acme").available == 1000 - 804
    assert shop.verify() == []


def test_a_success_resets_the_failure_count(shop: CreditMeter, clock: Clock) -> None:
    shop.change_settings({"auto_recharge_retry_seconds": 0}, changed_by="ops")
    shop.set_auto_recharge(
        "acme", enabled=True, threshold=300, package="refill", payment_method=DECLINING_CARD
    )
    shop.charge("acme", "chat", usage={"calls": 800})
    drain(shop)
    assert shop.auto_recharge("acme").consecutive_failures == 1
    shop.set_auto_recharge(
        "acme", enabled=True, threshold=300, package="refill", payment_method=WORKING_CARD
    )
    shop.charge("acme", "chat", usage={"calls": 1})
    drain(shop)
    assert shop.auto_recharge("acme").consecutive_failures == 0
    assert shop.balance("acme").available == 699


def test_disabling_stops_a_recharge_that_has_not_run(shop: CreditMeter) -> None:
    shop.charge("acme", "chat", usage={"calls": 800})
    shop.set_auto_recharge("acme", enabled=False, threshold=300)
    drain(shop)
    assert recharges(shop) == [(PurchaseStatus.FAILED, 500)]
    assert shop.balance("acme").available == 200


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"enabled": True, "threshold": 100, "package": "refill"}, "payment method"),
        ({"enabled": True, "threshold": 100, "payment_method": "pm_1"}, "package"),
        (
            {"enabled": True, "threshold": -1, "package": "refill", "payment_method": "x"},
            "threshold",
        ),
        ({"enabled": False, "threshold": 0, "package": "nothing"}, "nothing"),
        (
            {
                "enabled": True,
                "threshold": 1,
                "package": "refill",
                "payment_method": "x",
                "monthly_cap": 499,
            },
            "monthly cap",
        ),
    ],
)
def test_bad_settings_are_refused(
    meter: CreditMeter, settings: dict[str, object], message: str
) -> None:
    meter.put_package("refill", credits=500, price=500, currency="usd")
    meter.create_account("acme")
    with pytest.raises((InvalidRequest, NotFound), match=message):
        meter.set_auto_recharge("acme", **settings)  # type: ignore[arg-type]
    assert not meter.auto_recharge("acme").enabled
