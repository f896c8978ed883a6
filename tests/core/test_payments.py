"""Money, packages, boost packs and the clawback of refunds: pure, no database."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from creditmeter.core.errors import InvalidRequest
from creditmeter.core.payments import Money, boost_packs, clawback_target, money, package


def test_money_is_minor_units_and_a_lower_case_currency() -> None:
    assert money(999, "USD") == Money(999, "usd")
    assert money(500, "jpy") == Money(500, "jpy")


@pytest.mark.parametrize(
    ("amount", "currency", "message"),
    [
        (0, "usd", "1 to"),
        (-5, "usd", "1 to"),
        (10**13, "usd", "1 to"),
        (9.99, "usd", "whole number"),
        ("999", "usd", "whole number"),
        (True, "usd", "whole number"),
        (999, "usdollar", "currency"),
        (999, None, "currency"),
    ],
)
def test_bad_money_is_refused(amount: object, currency: object, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        money(amount, currency)


def test_a_package_counts_its_bonus_in_its_credits() -> None:
    pack = package(
        "starter",
        name="Starter",
        credits=1000,
        bonus_credits=100,
        price=money(999, "usd"),
        popular=True,
        best_value=False,
        active=True,
        sort_order=0,
        stripe_price_id="price_123",
    )
    assert pack.total_credits == 1100


@pytest.mark.parametrize(
    ("credits", "bonus", "sort_order"),
    [(0, 0, 0), (10, -1, 0), (10**15, 1, 0), (10, 0, "first")],
)
def test_a_bad_package_is_refused(credits: int, bonus: int, sort_order: object) -> None:
    with pytest.raises(InvalidRequest):
        package(
            "p",
            name="p",
            credits=credits,
            bonus_credits=bonus,
            price=money(100, "usd"),
            popular=False,
            best_value=False,
            active=True,
            sort_order=sort_order,  # type: ignore[arg-type]
            stripe_price_id=None,
        )


def test_boost_packs_are_half_single_and_double_with_their_bonus() -> None:
    half, single, double = boost_packs(10_000, money(2000, "eur"))
    assert (half.credits, half.bonus_credits, half.price) == (5_000, 0, Money(1000, "eur"))
    assert (single.credits, single.bonus_credits, single.price) == (
        10_000,
        1_000,
        Money(2000, "eur"),
    )
    assert (double.credits, double.bonus_credits, double.price) == (
        20_000,
        3_000,
        Money(4000, "eur"),
    )
    assert [p.sort_order for p in (half, single, double)] == [0, 1, 2]


def test_boost_packs_round_down_odd_amounts() -> None:
    half, _, _ = boost_packs(999, money(1001, "usd"))
    assert (half.credits, half.price.amount) == (499, 500)


@pytest.mark.parametrize(
    ("credits", "paid", "refunded", "expected"),
    [
        (1100, 999, 0, 0),
        (1100, 999, 999, 1100),
        (1100, 999, 333, 366),
        (1100, 999, 5000, 1100),
        (1100, 0, 100, 0),
        (1, 100, 99, 0),
    ],
)
def test_clawback_is_pro_rata_rounded_down(
    credits: int, paid: int, refunded: int, expected: int
) -> None:
    assert clawback_target(credits, paid, refunded) == expected


@given(
    credits=st.integers(1, 10**12),
    paid=st.integers(1, 10**9),
    refunds=st.lists(st.integers(1, 10**9), max_size=5),
)
def test_clawback_of_successive_refunds_never_decreases_and_ends_at_all(
    credits: int, paid: int, refunds: list[int]
) -> None:
    total, taken = 0, 0
    for refund in refunds:
        total += refund
        target = clawback_target(credits, paid, total)
        assert taken <= target <= credits
        taken = target
    assert clawback_target(credits, paid, paid) == credits
