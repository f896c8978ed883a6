"""Packages, checkout and fulfilment exactly once, failures, and refunds' clawback, on
both engines."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

import pytest

from creditmeter import CreditMeter, IdempotencyConflict, InvalidRequest, NotFound
from creditmeter.core.errors import AccountSuspended
from creditmeter.core.payments import InvalidSignature, Purchase, PurchaseKind, PurchaseStatus
from creditmeter.core.types import GrantSource, TransactionType
from creditmeter.payments.signature import sign
from tests.service.payment_events import (
    charge_refunded,
    deliver,
    drain,
    event_body,
    intent,
    session_completed,
    webhook_secret,
)


@pytest.fixture
def shop(meter: CreditMeter) -> CreditMeter:
    """Account ``acme`` with no credits, a feature costing a credit a call, and a pack of
    1,000 credits + 100 bonus for $9.99."""
    meter.put_feature("chat", rates={"calls": 1})
    meter.put_package("starter", credits=1000, bonus_credits=100, price=999, currency="USD")
    meter.create_account("acme")
    return meter


def started(meter: CreditMeter, package: str = "starter") -> Purchase:
    checkout = meter.checkout("acme", package, success_url="https://app.example/paid")
    return meter.purchase(checkout.purchase_id)


def purchase_transactions(meter: CreditMeter) -> int:
    return len(list(meter.iter_transactions("acme", types=(TransactionType.PURCHASE.value,))))


# Packages.


def test_packages_are_listed_in_sort_order_and_inactive_ones_only_on_request(
    meter: CreditMeter,
) -> None:
    meter.put_package("big", credits=5000, price=3999, currency="eur", sort_order=2)
    meter.put_package("small", credits=500, price=499, currency="EUR", sort_order=1, popular=True)
    meter.put_package("old", credits=100, price=99, currency="gbp", active=False)

    assert [p.id for p in meter.packages()] == ["small", "big"]
    assert [p.id for p in meter.packages(include_inactive=True)] == ["old", "small", "big"]
    small = meter.packages()[0]
    assert (small.price.amount, small.price.currency, small.popular) == (499, "eur", True)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"credits": 0}, "credits"),
        ({"bonus_credits": -1}, "bonus_credits"),
        ({"price": 0}, "price"),
        ({"price": 9.99}, "price"),
        ({"currency": "xyz"}, "currency"),
        ({"stripe_price_id": "price 1"}, "stripe_price_id"),
    ],
)
def test_a_bad_package_is_refused_and_changes_nothing(
    meter: CreditMeter, changes: dict[str, object], message: str
) -> None:
    values: dict[str, object] = {"credits": 100, "price": 100, "currency": "usd", **changes}
    with pytest.raises(InvalidRequest, match=message):
        meter.put_package("pack", **values)  # type: ignore[arg-type]
    assert meter.packages(include_inactive=True) == []


def test_boost_packs_derive_from_the_smallest_plan(meter: CreditMeter) -> None:
    meter.put_plan("starter", allowances={"*": 10_000})
    meter.put_plan("pro", allowances={"chat": 30_000, "images": 20_000})
    meter.put_plan("unlimited", allowances={"*": None})

    packs = meter.add_boost_packages(1000, "usd")

    shapes = [(p.id, p.credits, p.bonus_credits, p.price.amount) for p in packs]
    assert shapes == [
        ("boost-half", 5_000, 0, 500),
        ("boost-single", 10_000, 1_000, 1000),
        ("boost-double", 20_000, 3_000, 2000),
    ]
    assert [p.id for p in meter.packages()] == ["boost-half", "boost-single", "boost-double"]
    assert [(p.popular, p.best_value) for p in packs] == [
        (False, False),
        (True, False),
        (False, True),
    ]


def test_boost_packs_need_a_plan_with_a_limited_allowance(meter: CreditMeter) -> None:
    meter.put_plan("unlimited", allowances={"*": None})
    with pytest.raises(InvalidRequest, match="no plan"):
        meter.add_boost_packages(1000, "usd")


# Checkout and fulfilment.


def test_checkout_starts_a_pending_purchase_with_the_price_as_sold(shop: CreditMeter) -> None:
    checkout = shop.checkout("acme", "starter", success_url="https://app.example/paid")
    shop.put_package("starter", credits=2000, price=1999, currency="usd")  # a later change

    purchase = shop.purchase(checkout.purchase_id)
    assert purchase.status is PurchaseStatus.PENDING
    assert (purchase.credits, purchase.bonus_credits, purchase.price.amount) == (1100, 100, 999)
    assert purchase.session_id == checkout.session_id
    assert checkout.purchase_id in str(checkout.url)
    assert shop.balance("acme").available == 0


def test_checkout_with_the_same_idempotency_key_is_the_same_purchase(
    shop: CreditMeter,
) -> None:
    first = shop.checkout("acme", "starter", success_url="https://a/ok", idempotency_key="buy-1")
    again = shop.checkout("acme", "starter", success_url="https://a/ok", idempotency_key="buy-1")
    assert again == first
    assert len(shop.purchases("acme").data) == 1


@pytest.mark.parametrize(
    ("account", "package", "kwargs", "error"),
    [
        ("nobody", "starter", {}, NotFound),
        ("acme", "nothing", {}, NotFound),
        ("acme", "starter", {"ui_mode": "popup"}, InvalidRequest),
        ("acme", "starter", {"success_url": None}, InvalidRequest),
    ],
)
def test_a_checkout_that_cannot_start_changes_nothing(
    shop: CreditMeter,
    account: str,
    package: str,
    kwargs: dict[str, object],
    error: type[Exception],
) -> None:
    options: dict[str, object] = {"success_url": "https://a/ok", **kwargs}
    with pytest.raises(error):
        shop.checkout(account, package, **options)  # type: ignore[arg-type]
    assert shop.purchases("acme").data == ()


def test_inactive_packages_and_suspended_accounts_cannot_buy(shop: CreditMeter) -> None:
    shop.put_package("retired", credits=10, price=100, currency="usd", active=False)
    with pytest.raises(InvalidRequest, match="not for sale"):
        shop.checkout("acme", "retired", success_url="https://a/ok")
    shop.update_account("acme", status="suspended")
    with pytest.raises(AccountSuspended):
        shop.checkout("acme", "starter", success_url="https://a/ok")


def test_the_development_checkout_credits_the_pack_once(shop: CreditMeter) -> None:
    purchase = started(shop)
    shop.payments.complete(purchase)  # type: ignore[attr-defined]
    shop.payments.complete(purchase)  # type: ignore[attr-defined]  # the button, twice
    drain(shop)

    done = shop.purchase(purchase.id)
    assert done.status is PurchaseStatus.FULFILLED
    assert (done.amount_paid, done.transaction_id is not None) == (999, True)
    balance = shop.balance("acme")
    assert (balance.available, balance.purchased_available) == (1100, 1100)
    assert purchase_transactions(shop) == 1
    statuses = sorted(e["status"] for e in shop.payment_events())
    assert statuses == ["applied", "ignored"]
    assert shop.verify() == []


def test_the_purchase_transaction_issues_credits_and_bonus_from_their_accounts(
    shop: CreditMeter,
) -> None:
    purchase = started(shop)
    deliver(shop, "checkout.session.completed", session_completed(purchase))
    drain(shop)

    [txn] = shop.iter_transactions("acme", types=("purchase",))
    legs = {p.ledger_account: p.amount for p in txn.postings}
    assert legs == {"issuance:purchase": -1000, "issuance:bonus": -100, "account:acme": 1100}
    assert txn.purchase_id == purchase.id
    assert txn.by_grant_source() == {GrantSource.PURCHASE: 1100}


@pytest.mark.parametrize(
    "kinds",
    [
        ["checkout.session.completed"] * 3,
        ["payment_intent.succeeded", "checkout.session.completed"],
        ["checkout.session.completed", "payment_intent.succeeded", "payment_intent.succeeded"],
    ],
)
def test_every_event_of_one_payment_credits_it_once(shop: CreditMeter, kinds: list[str]) -> None:
    purchase = started(shop)
    for kind in kinds:
        obj = session_completed(purchase) if kind.startswith("checkout") else intent(purchase)
        deliver(shop, kind, obj)
    drain(shop)

    assert shop.balance("acme").available == 1100
    assert purchase_transactions(shop) == 1
    assert shop.verify() == []


def test_a_repeated_delivery_of_one_event_is_stored_once(shop: CreditMeter) -> None:
    purchase = started(shop)
    obj = session_completed(purchase)
    assert deliver(shop, "checkout.session.completed", obj, event_id="evt_same") is True
    assert deliver(shop, "checkout.session.completed", obj, event_id="evt_same") is False
    assert drain(shop) >= 1
    assert len(shop.payment_events()) == 1
    assert shop.balance("acme").available == 1100


def test_concurrent_deliveries_credit_once(shop: CreditMeter) -> None:
    purchase = started(shop)
    obj = session_completed(purchase)
    errors: list[BaseException] = []

    def run(task: Callable[[], object]) -> None:
        try:
            task()
        except BaseException as error:  # reported below
            errors.append(error)

    deliveries = [
        threading.Thread(
            target=run,
            args=(lambda i=i: deliver(shop, "checkout.session.completed", obj, f"evt_{i % 3}"),),
        )
        for i in range(9)
    ]
    for t in deliveries:
        t.start()
    for t in deliveries:
        t.join()
    workers = [threading.Thread(target=run, args=(lambda: drain(shop),)) for _ in range(3)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()

    assert errors == []
    assert len(shop.payment_events()) == 3
    assert shop.balance("acme").available == 1100
    assert purchase_transactions(shop) == 1
    assert shop.verify() == []


def test_a_mismatched_amount_is_flagged_and_credits_nothing(shop: CreditMeter) -> None:
    purchase = started(shop)
    deliver(shop, "checkout.session.completed", session_completed(purchase, amount=1))
    deliver(shop, "payment_intent.succeeded", intent(purchase) | {"currency": "eur"})
    drain(shop)

    events = shop.payment_events()
    assert [e["status"] for e in events] == ["flagged", "flagged"]
    assert "costs 9.99 USD" in str(events[-1]["note"])
    assert shop.balance("acme").available == 0
    assert shop.purchase(purchase.id).status is PurchaseStatus.PAID
    assert shop.verify() == []


def test_an_event_for_an_unknown_account_is_flagged_and_credits_nothing(
    shop: CreditMeter,
) -> None:
    payment = {
        "id": "pi_link_1",
        "object": "payment_intent",
        "status": "succeeded",
        "amount_received": 999,
        "currency": "usd",
        "metadata": {"account_id": "nobody", "package_id": "starter"},
    }
    deliver(shop, "payment_intent.succeeded", payment)
    drain(shop)

    [event] = shop.payment_events()
    assert event["status"] == "flagged"
    assert "nobody" in str(event["note"])
    assert shop.purchases("acme").data == ()


def test_a_payment_link_naming_account_and_package_is_fulfilled(shop: CreditMeter) -> None:
    payment = {
        "id": "cs_link_1",
        "object": "checkout.session",
        "payment_status": "paid",
        "amount_total": 999,
        "currency": "usd",
        "payment_intent": "pi_link_1",
        "metadata": {"account_id": "acme", "package_id": "starter"},
    }
    deliver(shop, "checkout.session.completed", payment)
    deliver(shop, "checkout.session.completed", payment)  # Stripe retries
    drain(shop)

    [purchase] = shop.purchases("acme").data
    assert (purchase.kind, purchase.status) == (PurchaseKind.EXTERNAL, PurchaseStatus.FULFILLED)
    assert purchase.payment_intent_id == "pi_link_1"
    assert shop.balance("acme").available == 1100
    assert shop.verify() == []


def test_a_payment_link_for_another_amount_is_flagged(shop: CreditMeter) -> None:
    payment = {
        "id": "cs_link_2",
        "object": "checkout.session",
        "payment_status": "paid",
        "amount_total": 100,
        "currency": "usd",
        "metadata": {"account_id": "acme", "package_id": "starter"},
    }
    deliver(shop, "checkout.session.completed", payment)
    drain(shop)
    assert shop.payment_events()[0]["status"] == "flagged"
    assert shop.balance("acme").available == 0


def test_unknown_event_types_are_stored_and_acknowledged(shop: CreditMeter) -> None:
    assert deliver(shop, "customer.created", {"id": "cus_1", "object": "customer"})
    drain(shop)
    [event] = shop.payment_events()
    assert (event["type"], event["status"]) == ("customer.created", "ignored")


def test_an_unpaid_session_waits_for_its_payment(shop: CreditMeter) -> None:
    purchase = started(shop)
    deliver(
        shop,
        "checkout.session.completed",
        session_completed(purchase) | {"payment_status": "unpaid"},
    )
    drain(shop)
    assert shop.purchase(purchase.id).status is PurchaseStatus.PENDING
    deliver(shop, "checkout.session.async_payment_succeeded", session_completed(purchase))
    drain(shop)
    assert shop.purchase(purchase.id).status is PurchaseStatus.FULFILLED


def test_a_failed_payment_fails_the_purchase_and_a_later_success_still_credits(
    shop: CreditMeter,
) -> None:
    purchase = started(shop)
    deliver(shop, "payment_intent.payment_failed", intent(purchase, "requires_payment_method"))
    drain(shop)
    failed = shop.purchase(purchase.id)
    assert failed.status is PurchaseStatus.FAILED
    assert failed.failure_reason == "Your card was declined."

    deliver(shop, "payment_intent.succeeded", intent(purchase))
    drain(shop)
    assert shop.purchase(purchase.id).status is PurchaseStatus.FULFILLED
    assert shop.balance("acme").available == 1100


def test_a_bad_signature_is_refused_and_stores_nothing(shop: CreditMeter) -> None:
    payload = event_body("checkout.session.completed", session_completed(started(shop)))
    with pytest.raises(InvalidSignature):
        shop.receive_payment_event(payload, sign(payload, "whsec_wrong"))
    with pytest.raises(InvalidSignature):
        shop.receive_payment_event(payload, None)
    assert shop.payment_events() == []


# Refunds.


@pytest.fixture
def bought(shop: CreditMeter) -> Purchase:
    """A fulfilled purchase of 1,100 credits for 999 cents."""
    purchase = started(shop)
    deliver(shop, "checkout.session.completed", session_completed(purchase))
    drain(shop)
    return shop.purchase(purchase.id)


def test_a_full_refund_claws_back_every_credit_once(shop: CreditMeter, bought: Purchase) -> None:
    deliver(shop, "charge.refunded", charge_refunded(bought, 999))
    deliver(shop, "charge.refunded", charge_refunded(bought, 999))
    drain(shop)

    refunded = shop.purchase(bought.id)
    assert refunded.status is PurchaseStatus.REFUNDED
    assert (refunded.amount_refunded, refunded.credits_clawed_back) == (999, 1100)
    assert shop.balance("acme").available == 0
    reversals = list(shop.iter_transactions("acme", types=("reversal",)))
    assert [t.amount for t in reversals] == [-1100]
    assert shop.verify() == []


def test_partial_refunds_claw_back_pro_rata_and_add_up_to_everything(
    shop: CreditMeter, bought: Purchase
) -> None:
    deliver(shop, "charge.refunded", charge_refunded(bought, 333))
    drain(shop)
    assert shop.purchase(bought.id).credits_clawed_back == 366  # 1100 × 333 / 999
    deliver(shop, "charge.refunded", charge_refunded(bought, 333))  # a repeat: no change
    deliver(shop, "charge.refunded", charge_refunded(bought, 666))
    drain(shop)
    assert shop.purchase(bought.id).credits_clawed_back == 733
    deliver(shop, "charge.refunded", charge_refunded(bought, 999))
    drain(shop)

    assert shop.purchase(bought.id).credits_clawed_back == 1100
    assert shop.balance("acme").available == 0
    assert shop.verify() == []


def test_spent_credits_are_taken_from_other_credits_first_by_default(
    shop: CreditMeter, bought: Purchase
) -> None:
    shop.charge("acme", "chat", usage={"calls": 1000})  # 100 of the pack left
    shop.grant("acme", 2000, reason="goodwill")
    deliver(shop, "charge.refunded", charge_refunded(bought, 999))
    drain(shop)

    assert shop.purchase(bought.id).clawback_debt == 0
    balance = shop.balance("acme")
    assert (balance.available, balance.debt) == (1000, 0)
    [reversal] = shop.iter_transactions("acme", types=("reversal",))
    assert reversal.by_grant_source() == {GrantSource.PURCHASE: -100, GrantSource.ADMIN: -1000}
    assert shop.verify() == []


def test_spent_credits_beyond_other_credits_become_debt(
    shop: CreditMeter, bought: Purchase
) -> None:
    shop.charge("acme", "chat", usage={"calls": 1000})
    shop.grant("acme", 300, reason="goodwill")
    deliver(shop, "charge.refunded", charge_refunded(bought, 999))
    drain(shop)

    assert shop.purchase(bought.id).clawback_debt == 700
    balance = shop.balance("acme")
    assert (balance.available, balance.debt) == (-700, 700)
    assert shop.verify() == []


def test_spent_credits_are_recorded_as_owed_when_the_setting_says_debt(
    shop: CreditMeter, bought: Purchase
) -> None:
    shop.change_settings({"refund_shortfall": "debt"}, changed_by="ops")
    shop.charge("acme", "chat", usage={"calls": 1000})  # 100 of the pack left
    shop.grant("acme", 500, reason="goodwill")
    deliver(shop, "charge.refunded", charge_refunded(bought, 999))
    drain(shop)

    refunded = shop.purchase(bought.id)
    assert (refunded.credits_clawed_back, refunded.credits_unrecovered) == (1100, 1000)
    assert refunded.clawback_debt == 0
    balance = shop.balance("acme")
    assert (balance.available, balance.debt) == (500, 0)
    [reversal] = shop.iter_transactions("acme", types=("reversal",))
    assert reversal.amount == -100
    assert shop.verify() == []


def test_refund_purchase_refunds_through_the_provider_and_claws_back(
    shop: CreditMeter, bought: Purchase
) -> None:
    partly = shop.refund_purchase(bought.id, amount=500)
    assert (partly.amount_refunded, partly.credits_clawed_back) == (500, 550)
    drain(shop)  # the provider's own charge.refunded event changes nothing more
    assert shop.purchase(bought.id).credits_clawed_back == 550
    with pytest.raises(InvalidRequest, match="1 to 499"):
        shop.refund_purchase(bought.id, amount=500)
    whole = shop.refund_purchase(bought.id)
    assert whole.status is PurchaseStatus.REFUNDED
    assert shop.balance("acme").available == 0
    with pytest.raises(InvalidRequest, match="refunded"):
        shop.refund_purchase(bought.id)
    drain(shop)
    assert shop.verify() == []


def test_a_refund_before_fulfilment_fails_the_purchase(shop: CreditMeter) -> None:
    purchase = started(shop)
    deliver(shop, "charge.refunded", charge_refunded(purchase, 999))
    drain(shop)
    assert shop.purchase(purchase.id).status is PurchaseStatus.FAILED
    assert shop.balance("acme").available == 0


@pytest.mark.parametrize("count", [5, 6])
def test_purchases_page_newest_first(shop: CreditMeter, count: int) -> None:
    ids = [started(shop).id for _ in range(count)]
    first = shop.purchases("acme", limit=3)
    assert [p.id for p in first.data] == ids[::-1][:3]
    rest = shop.purchases("acme", limit=3, cursor=first.next_cursor)
    assert [p.id for p in rest.data] == ids[::-1][3:]
    assert rest.next_cursor is None  # no empty page after a full one


def test_a_refund_retried_with_its_key_refunds_once(shop: CreditMeter, bought: Purchase) -> None:
    first = shop.refund_purchase(bought.id, amount=333, reason="late", idempotency_key="rf-1")
    again = shop.refund_purchase(bought.id, amount=333, reason="late", idempotency_key="rf-1")
    drain(shop)
    assert again == first
    assert (first.amount_refunded, first.credits_clawed_back) == (333, 366)
    assert shop.purchase(bought.id).amount_refunded == 333
    [reversal] = shop.iter_transactions("acme", types=("reversal",))
    assert reversal.description == "late"
    with pytest.raises(IdempotencyConflict):
        shop.refund_purchase(bought.id, amount=100, idempotency_key="rf-1")


def test_an_expired_checkout_fails_its_purchase(shop: CreditMeter) -> None:
    purchase = started(shop)
    expired = session_completed(purchase) | {"status": "expired", "payment_status": "unpaid"}
    deliver(shop, "checkout.session.expired", expired)
    drain(shop)
    failed = shop.purchase(purchase.id)
    assert (failed.status, failed.failure_reason) == (
        PurchaseStatus.FAILED,
        "the checkout expired unpaid",
    )


@pytest.mark.parametrize(
    ("event_id", "kind", "obj", "problem"),
    [
        ("e" * 256, "checkout.session.completed", {}, "an id of 1 to 255"),
        ("evt_1", "t" * 101, {}, "a type of 1 to 100"),
        ("evt_1", "checkout.session.completed", [], "an object"),
        ("evt_1", "checkout.session.completed", {"id": "a\x00b"}, "no NUL"),
    ],
)
def test_a_signed_delivery_that_is_not_a_storable_event_is_refused(
    shop: CreditMeter, event_id: str, kind: str, obj: object, problem: str
) -> None:
    payload = json.dumps(
        {"id": event_id, "object": "event", "type": kind, "data": {"object": obj}}
    ).encode()
    with pytest.raises(InvalidSignature, match=problem):
        shop.receive_payment_event(payload, sign(payload, webhook_secret(shop)))
    assert shop.payment_events() == []
