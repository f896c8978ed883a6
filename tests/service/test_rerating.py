"""Re-rating: past usage of cost-plus features priced under another price-book version,
beside what it was rated at, with the multiplier and credits per USD it was rated with.
The two versions differ as the catalogue does: Mistral's mistral-small-latest went from
$0.10 / $0.30 to $0.15 / $0.60 per million tokens on 2026-03-16."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from creditmeter import CreditMeter, InvalidRequest, NotFound
from creditmeter.core.rerating import RerateLine
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
