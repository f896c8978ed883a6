from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from creditmeter import InsufficientCredits
from creditmeter.cli import views
from creditmeter.core.errors import AllowanceState
from creditmeter.core.payments import (
    Money,
    Package,
    Purchase,
    PurchaseKind,
    PurchaseStatus,
)
from creditmeter.core.pricing import PricingRule
from creditmeter.core.records import Posting, Transaction
from creditmeter.core.types import GrantSource, TransactionType

AT = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def usage(*legs: Posting) -> Transaction:
    amount = sum(leg.amount for leg in legs if leg.ledger_account == "account:acme")
    return Transaction(
        id="txn_1",
        account_id="acme",
        type=TransactionType.USAGE,
        amount=amount,
        balance_before=5_000,
        balance_after=5_000 + amount,
        description="Image generation: 5000 credits",
        created_at=AT,
        postings=legs,
    )


SPLIT = usage(
    Posting("account:acme", -2_000, "grt_a", GrantSource.ALLOWANCE),
    Posting("account:acme", -3_000, "grt_p", GrantSource.PURCHASE),
    Posting("consumption", 5_000),
)


def test_figures_have_thousands_separators() -> None:
    assert views.figure(2250) == "2,250"
    assert views.signed(-5000) == "-5,000"
    assert views.signed(20_000) == "+20,000"
    assert views.counted(1, "violation") == "1 violation"
    assert views.counted(1200, "transaction") == "1,200 transactions"


def test_a_split_charge_names_the_grants_it_drew() -> None:
    assert views.drawn(SPLIT) == "2,000 from allowance + 3,000 from purchase"
    assert views.postings(SPLIT) == "2,000 from allowance + 3,000 from purchase → consumption"


def test_debt_and_empty_postings_read_plainly() -> None:
    owed = usage(Posting("account:acme", -40), Posting("consumption", 40))
    assert views.postings(owed) == "40 as debt → consumption"
    assert views.postings(usage()) == "no postings: nothing drawn"


def test_ledger_puts_postings_under_the_amount_column() -> None:
    header, line, postings = views.ledger([SPLIT], indent=0, times=False)
    assert header.split() == ["type", "amount", "before", "after", "what"]
    assert line.startswith("usage  -5,000   5,000  →      0  Image generation")
    assert postings == " " * len("usage  ") + views.postings(SPLIT)


def test_refusal_lists_its_fields_by_name() -> None:
    refused = InsufficientCredits(
        required=9_000,
        available=7_500,
        allowance=AllowanceState(used=20_000, limit=20_000, percentage=100),
        purchased_available=7_500,
    )
    assert views.refusal(refused, indent=0) == [
        "required             9,000",
        "available            7,500",
        "allowance            20,000 of 20,000 used (100 %)",
        "purchased_available  7,500",
    ]


def test_allowance_states() -> None:
    assert views.allowance(AllowanceState(used=250, limit=None, percentage=None)) == (
        "unlimited (250 used this period)"
    )
    assert views.allowance(AllowanceState(used=0, limit=0, percentage=None)) == "none"


def test_pricing_shows_the_arithmetic() -> None:
    rule = PricingRule(
        rates={"input_tokens": Decimal("0.25"), "output_tokens": Decimal(1)},
        models={"gpt-4o": {"input_tokens": Decimal("0.5"), "output_tokens": Decimal(2)}},
        multiplier=Decimal("1.5"),
    )
    usage = {"input_tokens": 1_000, "output_tokens": 500}
    assert views.pricing(rule, usage, "gpt-4o") == "ceil(1.5 × (1,000 × 0.5 + 500 × 2))"
    assert views.pricing(rule, usage, None) == "ceil(1.5 × (1,000 × 0.25 + 500 × 1))"
    assert views.rule(rule) == [
        "input_tokens 0.25, output_tokens 1, × 1.5 multiplier",
        "  gpt-4o  input_tokens 0.5, output_tokens 2",
    ]


def test_a_cost_plus_rule_says_it_is_priced_from_the_provider_s_cost() -> None:
    rule = PricingRule(rates={}, multiplier=Decimal("1.3"), cost_plus=True)
    assert views.rule(rule) == [
        "cost-plus: the provider's cost × credits per USD, × 1.3 multiplier"
    ]


def test_money_is_written_from_minor_units_with_integer_arithmetic() -> None:
    assert views.money(999, "usd") == "9.99 USD"
    assert views.money(5, "eur") == "0.05 EUR"
    assert views.money(123_456_789, "gbp") == "1,234,567.89 GBP"
    assert views.money(1_500, "jpy") == "1,500 JPY"
    assert views.money(1_500, "JPY") == "1,500 JPY"
    assert views.money(12_345, "kwd") == "12.345 KWD"
    assert views.money(-250, "usd") == "-2.50 USD"
    assert views.money(10**12 + 1, "usd") == "10,000,000,000.01 USD"


def test_packages_show_price_bonus_and_badges() -> None:
    packs = [
        Package("small", "Small", 5_000, 0, Money(999, "usd"), sort_order=1),
        Package("big", "Big", 25_000, 5_000, Money(4_499, "usd"), best_value=True),
        Package("old", "Old", 1_000, 0, Money(500, "jpy"), active=False, stripe_price_id="price_1"),
    ]
    header, small, big, old = views.packages(packs)
    assert header.split() == ["id", "name", "credits", "bonus", "price", "sort", "notes"]
    assert small.split() == ["small", "Small", "5,000", "0", "9.99", "USD", "1"]
    assert big.split()[2:] == ["25,000", "5,000", "44.99", "USD", "0", "best", "value"]
    assert old.endswith("500 JPY     0  not for sale, stripe price_1")


def test_purchases_show_amounts_paid_and_refunded_and_why_one_failed() -> None:
    bought = Purchase(
        id="pur_1",
        account_id="acme",
        package_id="small",
        kind=PurchaseKind.CHECKOUT,
        status=PurchaseStatus.REFUNDED,
        credits=5_000,
        bonus_credits=0,
        price=Money(999, "usd"),
        provider="dev",
        created_at=AT,
        amount_paid=999,
        amount_refunded=999,
    )
    failed = Purchase(
        id="pur_2",
        account_id="acme",
        package_id="small",
        kind=PurchaseKind.AUTO_RECHARGE,
        status=PurchaseStatus.FAILED,
        credits=5_000,
        bonus_credits=0,
        price=Money(999, "usd"),
        provider="dev",
        created_at=AT,
        failure_reason="Your card was declined.",
    )
    header, refunded, declined = views.purchases([bought, failed])
    assert header.split()[:7] == ["id", "kind", "status", "credits", "price", "paid", "refunded"]
    assert refunded.split() == [
        "pur_1",
        "checkout",
        "refunded",
        "5,000",
        "9.99",
        "USD",
        "9.99",
        "USD",
        "9.99",
        "USD",
        "2026-03-10",
        "12:00",
    ]
    assert declined.split()[1:3] == ["auto_recharge", "failed"]
    assert declined.endswith(
        "9.99 USD         -         -  2026-03-10 12:00  Your card was declined."
    )


def test_payment_events_show_what_handling_each_did() -> None:
    events = [
        {
            "id": "evt_2",
            "provider": "stripe",
            "type": "checkout.session.completed",
            "status": "flagged",
            "note": "paid 5.00 USD, package 'small' costs 9.99 USD",
            "purchase_id": None,
            "received_at": AT,
            "handled_at": AT,
        },
        {
            "id": "evt_1",
            "provider": "stripe",
            "type": "customer.created",
            "status": "received",
            "note": None,
            "purchase_id": "pur_1",
            "received_at": AT,
            "handled_at": None,
        },
    ]
    header, flagged, received = views.payment_events(events)
    assert header.split() == ["received", "(UTC)", "id", "type", "status", "purchase", "note"]
    assert flagged.startswith("2026-03-10 12:00:00  evt_2  checkout.session.completed  flagged")
    assert flagged.endswith("-         paid 5.00 USD, package 'small' costs 9.99 USD")
    assert received.split()[2:] == ["evt_1", "customer.created", "received", "pur_1"]
