"""Re-rating: past usage of cost-plus features priced under another price-book version,
beside what it was rated at, with the multiplier and credits per USD it was rated with.
The two versions differ as the catalogue does: Mistral's mistral-small-latest went from
$0.10 / $0.30 to $0.15 / $0.60 per million tokens on 2026-03-16."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from creditmeter import AlreadyRerated, CreditMeter, IdempotencyConflict, InvalidRequest, NotFound
from creditmeter.core.rerating import RerateBooking, RerateLine
from tests.conftest import Clock

SMALL = "mistral-small-latest"
TURN = {"input_tokens": 384, "output_tokens": 250}
"""On gpt-4o ($2.50 and $10 per million): $0.00346."""


@pytest.fixture
def rated(meter: CreditMeter, clock: Clock) -> CreditMeter:
    """A day of usage rated under version 1; version 2 with the dearer Mistral prices."""
    for account in ("acme", "beta"):
        meter.create_account(account)
        meter.grant(account, 10_000, source="purchase")
    assert meter.sync_prices(["mistral", "openai"]).version == 1
    meter.put_feature("llm.cost", cost_plus=True, multiplier="1.5")
    meter.put_feature("llm.flat", rates={"tokens": 1})
    # (100,000 × 0.1 + 20,000 × 0.3) / 10^6 = $0.016 → 0.016 × 1,000 × 1.5 = 24 credits
    meter.charge(
        "acme", "llm.cost", model=SMALL, usage={"input_tokens": 100_000, "output_tokens": 20_000}
    )
    meter.charge("acme", "llm.flat", usage={"tokens": 7})
    meter.charge("beta", "llm.cost", model="gpt-4o-2024-08-06", usage=TURN)  # ceil(5.19) = 6
    # (10,000 × 0.1 + 1,000 × 0.3) / 10^6 = $0.0013 → ceil(1.95) = 2
    meter.charge(
        "beta", "llm.cost", model=SMALL, usage={"input_tokens": 10_000, "output_tokens": 1_000}
    )
    clock.advance(days=7)
    assert meter.sync_prices(["mistral"]).version == 2
    # Rated later with other settings: neither changes what the first day re-rates at.
    meter.put_feature("llm.cost", cost_plus=True, multiplier="3")
    meter.change_settings({"credits_per_usd": 100_000}, changed_by="t")
    meter.charge("acme", "llm.cost", model=SMALL, usage={"input_tokens": 1_000})
    return meter


def test_a_report_rates_the_window_s_usage_under_the_other_version(
    rated: CreditMeter, clock: Clock
) -> None:
    day = clock() - timedelta(days=7)

    report = rated.rerate(since=day, until=day + timedelta(days=1), to_version=2)

    # acme: (100,000 × 0.15 + 20,000 × 0.6) / 10^6 = $0.027 → ceil(40.5) = 41
    # beta: gpt-4o as it was; (10,000 × 0.15 + 1,000 × 0.6) / 10^6 = $0.0021 → ceil(3.15) = 4
    assert report.accounts == [
        RerateLine("acme", 1, 24, 41, Decimal("0.016"), Decimal("0.027")),
        RerateLine("beta", 2, 8, 10, Decimal("0.00476"), Decimal("0.00556")),
    ]
    assert report.models == [
        RerateLine("gpt-4o-2024-08-06", 1, 6, 6, Decimal("0.00346"), Decimal("0.00346")),
        RerateLine(SMALL, 2, 26, 45, Decimal("0.0173"), Decimal("0.0291")),
    ]
    assert report.total == RerateLine("total", 3, 32, 51, Decimal("0.02076"), Decimal("0.03256"))
    assert report.total.difference == 19
    assert (report.version, report.hand_rated, report.unpriced) == (2, 1, 0)


def test_under_its_own_version_the_usage_re_rates_at_what_it_was_rated(
    rated: CreditMeter, clock: Clock
) -> None:
    day = clock() - timedelta(days=7)

    report = rated.rerate(since=day, until=day + timedelta(days=1), to_version=1, account="acme")

    assert report.accounts == [RerateLine("acme", 1, 24, 24, Decimal("0.016"), Decimal("0.016"))]
    assert (report.total.difference, report.hand_rated) == (0, 1)


def test_usage_of_a_model_that_the_version_has_no_price_for_is_counted_apart(
    meter: CreditMeter,
) -> None:
    meter.create_account("acme")
    meter.grant("acme", 1_000, source="purchase")
    meter.sync_prices(["mistral"])
    meter.sync_prices(["openai"])
    meter.put_feature("llm.cost", cost_plus=True)
    charge = meter.charge("acme", "llm.cost", model="gpt-4o", usage=TURN)
    at = meter.usage_record(charge.usage_id).created_at

    report = meter.rerate(since=at, until=at + timedelta(seconds=1), to_version=1)

    assert (report.total, report.unpriced, report.hand_rated) == (RerateLine("total"), 1, 0)


def test_a_report_of_an_unknown_version_account_or_an_empty_window_is_refused(
    rated: CreditMeter, clock: Clock
) -> None:
    with pytest.raises(NotFound):
        rated.rerate(since=clock() - timedelta(days=1), until=clock(), to_version=3)
    with pytest.raises(NotFound):
        rated.rerate(since=clock(), until=clock() + timedelta(days=1), to_version=1, account="x")
    with pytest.raises(InvalidRequest):
        rated.rerate(since=clock(), until=clock(), to_version=1)


# Booking the difference.


def test_applying_books_each_account_s_under_charge_as_one_adjustment(
    rated: CreditMeter, clock: Clock
) -> None:
    day = clock() - timedelta(days=7)
    window: dict[str, Any] = {"since": day, "until": day + timedelta(days=1), "to_version": 2}
    report = rated.rerate(**window)
    before = {a: rated.balance(a).available for a in ("acme", "beta")}

    booking = rated.apply_rerate(**window, idempotency_key="rr-1")

    assert [(t.account_id, t.type.value, t.amount) for t in booking.transactions] == [
        ("acme", "adjustment", -17),
        ("beta", "adjustment", -2),
    ]
    assert booking.difference == report.total.difference == 19
    assert {a: rated.balance(a).available for a in ("acme", "beta")} == {
        "acme": before["acme"] - 17,
        "beta": before["beta"] - 2,
    }
    acme = booking.transactions[0]
    assert {p.ledger_account: p.amount for p in acme.postings} == {
        "account:acme": -17,
        "consumption": 17,
    }
    assert (acme.metadata["version"], acme.metadata["rated_versions"]) == (2, [1])
    assert (acme.metadata["since"], acme.metadata["until"]) == (
        day.isoformat(),
        (day + timedelta(days=1)).isoformat(),
    )
    assert rated.transactions("acme", types=("adjustment",)).data == (acme,)
    # The usage records keep what they were rated at: the report is the same afterwards.
    assert rated.rerate(**window) == report
    assert rated.verify() == []


def test_an_over_charge_is_given_back_as_a_refund_grant(rated: CreditMeter, clock: Clock) -> None:
    # acme's later usage, rated under version 2 at 45 credits, is 30 under version 1.
    window: dict[str, Any] = {
        "since": clock() - timedelta(hours=1),
        "until": clock() + timedelta(hours=1),
    }
    before = rated.balance("acme").available

    booking = rated.apply_rerate(**window, to_version=1)

    assert [(t.account_id, t.amount) for t in booking.transactions] == [("acme", 15)]
    assert rated.balance("acme").available == before + 15
    given = [g for g in rated.grants("acme") if g.reference == f"rerate:{booking.id}"]
    assert [(g.source.value, g.pool, g.amount) for g in given] == [("refund", "*", 15)]
    assert {p.ledger_account: p.amount for p in booking.transactions[0].postings} == {
        "consumption": -15,
        "account:acme": 15,
    }
    assert rated.verify() == []


def test_an_under_charge_beyond_the_account_s_credits_is_taken_on_as_debt(
    meter: CreditMeter, clock: Clock
) -> None:
    meter.create_account("thin")
    meter.grant("thin", 30, source="purchase")
    meter.sync_prices(["mistral"])
    meter.put_feature("llm.cost", cost_plus=True, multiplier="1.5")
    usage = {"input_tokens": 100_000, "output_tokens": 20_000}
    meter.charge("thin", "llm.cost", model=SMALL, usage=usage)  # 24 credits
    day = clock()
    clock.advance(days=7)
    meter.sync_prices(["mistral"])

    booking = meter.apply_rerate(since=day, until=day + timedelta(days=1), to_version=2)

    (txn,) = booking.transactions
    assert (txn.amount, txn.metadata["debt"]) == (-17, 11)
    assert (meter.balance("thin").available, meter.balance("thin").debt) == (-11, 11)
    assert meter.verify() == []
    # Credits that come later repay the debt first.
    meter.grant("thin", 20, source="purchase")
    assert (meter.balance("thin").available, meter.balance("thin").debt) == (9, 0)
    assert meter.verify() == []


def test_a_rerating_is_booked_once_by_key_and_by_window(rated: CreditMeter, clock: Clock) -> None:
    day = clock() - timedelta(days=7)
    window: dict[str, Any] = {"since": day, "until": day + timedelta(days=1), "to_version": 2}
    first = rated.apply_rerate(**window, idempotency_key="rr-1")

    assert rated.apply_rerate(**window, idempotency_key="rr-1") == first
    with pytest.raises(AlreadyRerated, match="re-rated under price book version 2"):
        rated.apply_rerate(**window)
    with pytest.raises(AlreadyRerated, match="'acme'"):
        rated.apply_rerate(
            since=day + timedelta(hours=12),
            until=clock() + timedelta(hours=1),
            to_version=1,
            account="acme",
        )
    with pytest.raises(IdempotencyConflict):
        rated.apply_rerate(**window | {"to_version": 1}, idempotency_key="rr-1")

    booked = rated.transactions("beta", types=("adjustment",)).data
    assert [t.id for t in booked] == [first.transactions[1].id]
    assert rated.verify() == []


def test_a_rerating_that_changes_nothing_books_nothing(rated: CreditMeter, clock: Clock) -> None:
    day = clock() - timedelta(days=7)

    booking = rated.apply_rerate(since=day, until=day + timedelta(days=1), to_version=1)

    assert (booking.transactions, booking.difference) == ((), 0)
    assert rated.transactions("acme", types=("adjustment",)).data == ()


def test_concurrent_bookings_of_one_window_book_it_once(
    rated: CreditMeter, clock: Clock, migrated_url: str
) -> None:
    day = clock() - timedelta(days=7)
    window: dict[str, Any] = {"since": day, "until": day + timedelta(days=1), "to_version": 2}
    start = threading.Barrier(4)

    def book(_: int) -> RerateBooking | AlreadyRerated:
        # Each writer its own meter (its own engine and connections), as API workers are.
        with CreditMeter(migrated_url, clock=clock) as writer:
            start.wait()
            try:
                return writer.apply_rerate(**window)
            except AlreadyRerated as refused:
                return refused

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(book, range(4)))

    booked = [o for o in outcomes if isinstance(o, RerateBooking)]
    assert len(booked) == 1
    assert sum(isinstance(o, AlreadyRerated) for o in outcomes) == 3
    assert len(rated.transactions("acme", types=("adjustment",)).data) == 1
    assert len(rated.transactions("beta", types=("adjustment",)).data) == 1
    assert rated.verify() == []


def test_concurrent_retries_of_one_key_return_one_booking(
    rated: CreditMeter, clock: Clock, migrated_url: str
) -> None:
    day = clock() - timedelta(days=7)
    window: dict[str, Any] = {"since": day, "until": day + timedelta(days=1), "to_version": 2}
    start = threading.Barrier(3)

    def book(_: int) -> RerateBooking:
        with CreditMeter(migrated_url, clock=clock) as writer:
            start.wait()
            return writer.apply_rerate(**window, idempotency_key="rr-1")

    with ThreadPoolExecutor(3) as pool:
        outcomes = list(pool.map(book, range(3)))

    assert len({o.id for o in outcomes}) == 1
    assert len(rated.transactions("acme", types=("adjustment",)).data) == 1
    assert rated.verify() == []
