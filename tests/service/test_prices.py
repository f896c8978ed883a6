"""The price book's model prices, imported from the price catalogue (genai-prices' bundled
snapshot): each import a new version, kept as it was; an import that changes nothing is
no new version."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest

from creditmeter import CreditMeter, InvalidRequest, UnknownModel
from creditmeter.core.audit import Action, ActorKind
from creditmeter.core.models import ModelPrice
from creditmeter.core.types import HoldStatus
from tests.conftest import Clock

GPT_4O = [
    ModelPrice("openai", "gpt-4o", "cached_tokens", Decimal("1.25")),
    ModelPrice("openai", "gpt-4o", "input_tokens", Decimal("2.5")),
    ModelPrice("openai", "gpt-4o", "output_tokens", Decimal(10)),
]


def test_a_sync_imports_the_providers_per_token_prices_as_version_1(
    meter: CreditMeter, clock: Clock
) -> None:
    version = meter.sync_prices(["openai", "anthropic"])

    assert (version.version, version.providers, version.created_at) == (
        1,
        ("anthropic", "openai"),
        clock(),
    )
    assert version.source.startswith("genai-prices ")
    found, gpt = meter.model_prices(provider="openai", model="gpt-4o")
    assert found == version
    assert gpt == GPT_4O
    _, sonnet = meter.model_prices(provider="anthropic", model="claude-sonnet-4-0")
    assert {p.unit: p.usd_per_million for p in sonnet} == {
        "input_tokens": Decimal(3),
        "output_tokens": Decimal(15),
        "cached_tokens": Decimal("0.3"),
        "cache_write_tokens": Decimal("3.75"),
    }
    _, every = meter.model_prices()
    assert len(every) == version.prices
    assert {p.provider for p in every} == {"openai", "anthropic"}


def test_a_sync_that_changes_nothing_keeps_the_latest_version(meter: CreditMeter) -> None:
    first = meter.sync_prices(["openai"])
    again = meter.sync_prices(["openai"])

    assert again == first
    assert meter.price_book_versions() == [first]
    synced = meter.audit_log(actions=(Action.PRICES_SYNCED.value,)).data
    assert [(e.details["version"], e.details["created"]) for e in synced] == [(1, False), (1, True)]
    assert {e.actor.kind for e in synced} == {ActorKind.LIBRARY}


def test_a_provider_s_sync_keeps_the_others_and_every_version_stays_as_it_was(
    meter: CreditMeter, clock: Clock
) -> None:
    first = meter.sync_prices(["anthropic"])
    clock.advance(days=1)

    second = meter.sync_prices(["openai"])

    assert second.version == 2
    _, kept = meter.model_prices(version=1)
    _, both = meter.model_prices(version=2)
    assert {p.provider for p in kept} == {"anthropic"}
    assert {p.provider for p in both} == {"anthropic", "openai"}
    assert [p for p in both if p.provider == "anthropic"] == kept
    assert [v.version for v in meter.price_book_versions()] == [1, 2]
    assert meter.price_book_versions()[0] == first


def test_a_sync_of_every_provider_imports_the_whole_catalogue(meter: CreditMeter) -> None:
    version = meter.sync_prices()

    assert version.providers is None
    _, every = meter.model_prices()
    assert len({p.provider for p in every}) > 20
    assert version.prices == len(every) > 1_000
    assert meter.model_prices(provider="openai", model="gpt-4o")[1] == GPT_4O


def test_an_unknown_provider_is_refused_naming_it_and_writes_nothing(meter: CreditMeter) -> None:
    with pytest.raises(InvalidRequest, match="'openia'") as refused:
        meter.sync_prices(["openai", "openia"])

    assert "openai" in refused.value.message  # the providers it has
    assert meter.price_book_versions() == []
    assert meter.model_prices() == (None, [])
    assert meter.audit_log(actions=(Action.PRICES_SYNCED.value,)).data == ()


# Cost-plus features.

TURN = {"input_tokens": 384, "output_tokens": 250}
"""On gpt-4o ($2.50 and $10 per million): $0.00346."""


@pytest.fixture
def acme(meter: CreditMeter) -> str:
    meter.create_account("acme")
    meter.grant("acme", 10_000, source="purchase")
    return "acme"


def test_a_cost_plus_feature_charges_the_provider_s_cost_in_credits_times_its_multiplier(
    meter: CreditMeter, acme: str
) -> None:
    meter.sync_prices(["anthropic"])
    meter.put_feature("llm.cost", cost_plus=True, multiplier="1.5")
    with pytest.raises(UnknownModel):  # the price book has no openai model yet
        meter.charge(acme, "llm.cost", usage=TURN, model="gpt-4o")
    meter.sync_prices(["openai"])

    charge = meter.charge(acme, "llm.cost", usage=TURN, model="gpt-4o-2024-08-06")

    assert charge.credits == 6  # ceil(0.00346 USD × 1,000 credits per USD × 1.5) = ceil(5.19)
    record = meter.usage_record(charge.usage_id)
    assert record.quantities == TURN
    assert (record.provider_cost, record.price_book_version) == (Decimal("0.00346"), 2)
    meter.change_settings({"credits_per_usd": 100_000}, changed_by="t")
    assert meter.charge(acme, "llm.cost", usage=TURN, model="gpt-4o").credits == 519
    assert meter.verify() == []


def test_a_cost_plus_feature_takes_the_default_multiplier_when_it_gives_none(
    meter: CreditMeter, acme: str
) -> None:
    meter.sync_prices(["openai"])
    meter.change_settings({"default_multiplier": "2"}, changed_by="t")

    feature = meter.put_feature("llm.cost", cost_plus=True)
    flat = meter.put_feature("llm.flat", rates={"tokens": 1})

    assert (feature.rule.multiplier, flat.rule.multiplier) == (Decimal(2), Decimal(1))
    usage = {"input_tokens": 1_000, "cached_tokens": 1_000, "output_tokens": 100}
    hold = meter.authorize(acme, "llm.cost", estimate=usage, model="gpt-4o")
    # (1,000 × 2.5 + 1,000 × 1.25 + 100 × 10) / 10^6 = 0.00475 USD → 4.75 credits × 2
    assert meter.settle(hold.id).credits == 10


def test_what_a_cost_plus_feature_cannot_price_is_refused_and_changes_nothing(
    meter: CreditMeter, acme: str
) -> None:
    meter.put_feature("llm.cost", cost_plus=True)
    with pytest.raises(UnknownModel):  # no price-book version yet
        meter.charge(acme, "llm.cost", usage=TURN, model="gpt-4o")
    meter.sync_prices(["openai"])
    before = meter.balance(acme).available

    with pytest.raises(UnknownModel, match="'a-model-no-one-has'"):
        meter.charge(acme, "llm.cost", usage=TURN, model="a-model-no-one-has")
    with pytest.raises(UnknownModel):
        meter.charge(acme, "llm.cost", usage=TURN)
    with pytest.raises(InvalidRequest, match="'images'"):
        meter.charge(acme, "llm.cost", usage={"images": 1}, model="gpt-4o")
    with pytest.raises(InvalidRequest, match="cost-plus"):
        meter.charge(acme, "llm.cost", usage=TURN, model="gpt-4o", provider_cost=Decimal(1))
    hold = meter.authorize(acme, "llm.cost", estimate=TURN, model="gpt-4o")
    with pytest.raises(InvalidRequest, match="cost-plus"):
        meter.settle(hold.id, provider_cost=Decimal(1))
    assert meter.hold(hold.id).status is HoldStatus.PENDING
    meter.release(hold.id)
    with pytest.raises(InvalidRequest, match="no rates"):
        meter.put_feature("llm.both", rates={"tokens": 1}, cost_plus=True)

    assert meter.balance(acme).available == before
    assert meter.usage(acme).data == ()


# Tiered (long-context) prices.

SONNET_4_5_TIERS = {
    "input_tokens": Decimal(3),
    "input_tokens>200000": Decimal(6),
    "output_tokens": Decimal(15),
    "output_tokens>200000": Decimal("22.5"),
    "cached_tokens": Decimal("0.3"),
    "cached_tokens>200000": Decimal("0.6"),
    "cache_write_tokens": Decimal("3.75"),
    "cache_write_tokens>200000": Decimal("7.5"),
}


def test_a_price_tiered_by_prompt_size_is_imported_with_each_tier_as_a_unit(
    meter: CreditMeter,
) -> None:
    meter.sync_prices(["anthropic"])

    _, sonnet = meter.model_prices(provider="anthropic", model="claude-sonnet-4-5")
    assert {p.unit: p.usd_per_million for p in sonnet} == SONNET_4_5_TIERS


@pytest.mark.parametrize(
    ("usage", "cost"),
    [
        pytest.param(
            {"input_tokens": 100_000, "cached_tokens": 50_000, "output_tokens": 1_000},
            Decimal("0.33"),
            id="base-tier",
        ),
        pytest.param(
            {"input_tokens": 200_000, "cached_tokens": 50_000, "output_tokens": 1_000},
            Decimal("1.2525"),
            id="over-200k-every-token-at-the-tier",
        ),
    ],
)
def test_a_long_prompt_is_charged_at_its_tier_as_the_catalogue_prices_it(
    meter: CreditMeter, clock: Clock, acme: str, usage: dict[str, int], cost: Decimal
) -> None:
    from genai_prices import Usage, calc_price

    meter.sync_prices(["anthropic"])
    meter.put_feature("llm.cost", cost_plus=True)
    charge = meter.charge(acme, "llm.cost", usage=usage, model="claude-sonnet-4-5")

    record = meter.usage_record(charge.usage_id)
    assert record.provider_cost == cost
    assert charge.credits == math.ceil(cost * 1_000)
    prompt = usage["input_tokens"] + usage["cached_tokens"]
    catalogue = calc_price(
        Usage(
            input_tokens=prompt,
            cache_read_tokens=usage["cached_tokens"],
            output_tokens=usage["output_tokens"],
        ),
        "claude-sonnet-4-5",
        provider_id="anthropic",
        genai_request_timestamp=clock(),
    )
    assert catalogue.total_price == cost


def test_a_tier_is_not_a_unit_a_usage_may_give(meter: CreditMeter, acme: str) -> None:
    meter.sync_prices(["anthropic"])
    meter.put_feature("llm.cost", cost_plus=True)
    with pytest.raises(InvalidRequest, match="no price") as refused:
        meter.charge(acme, "llm.cost", usage={"input_tokens>200000": 1}, model="claude-sonnet-4-5")
    assert ">" not in refused.value.message.split("priced:")[1]


def test_token_kinds_a_model_has_no_price_for_cost_its_input_or_output_price(
    meter: CreditMeter, acme: str
) -> None:
    meter.sync_prices(["openai"])
    meter.put_feature("llm.cost", cost_plus=True)
    usage = {
        "input_tokens": 600,
        "cached_tokens": 400,
        "cache_write_tokens": 200,
        "output_tokens": 400,
        "reasoning_tokens": 100,
    }
    charge = meter.charge(acme, "llm.cost", usage=usage, model="gpt-4o")

    record = meter.usage_record(charge.usage_id)
    assert record.quantities == usage
    # gpt-4o prices cache reads ($1.25) but not cache writes (input, $2.50) nor
    # reasoning (output, $10).
    cost = (600 * Decimal("2.5") + 400 * Decimal("1.25") + 200 * Decimal("2.5") + 500 * 10) / 10**6
    assert record.provider_cost == cost
