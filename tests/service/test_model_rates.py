"""Per-model rates: a dated or aliased model name is charged at its model's rates, and a
model the feature cannot price is refused, or charged at the default rates and flagged
when the feature says so — never silently under-charged."""

from __future__ import annotations

import pytest

from creditmeter import CreditMeter, HoldNotPending, UnknownModel
from creditmeter.core.pricing import UnknownModels
from creditmeter.core.types import HoldStatus

TURN = {"input_tokens": 384, "output_tokens": 250}
"""1,038 credits at gpt-4o's rates below, 519 at the default rates."""


@pytest.fixture
def acme(meter: CreditMeter) -> str:
    meter.put_feature(
        "llm.chat",
        rates={"input_tokens": "0.25", "output_tokens": 1},
        models={
            "gpt-4o": {"input_tokens": "0.5", "output_tokens": 2},
            "claude-sonnet-4": {"input_tokens": "0.6", "output_tokens": 3},
        },
        multiplier="1.5",
    )
    meter.create_account("acme")
    meter.grant("acme", 10_000, source="purchase")
    return "acme"


def changes(meter: CreditMeter, account: str) -> tuple[int, int, int]:
    """What a refusal must leave as it was: the balance, the ledger, the usage."""
    return (
        meter.balance(account).available,
        len(list(meter.iter_transactions(account))),
        len(meter.usage(account, limit=1000).data),
    )


@pytest.mark.parametrize(
    ("model", "credits"),
    [("gpt-4o-2024-08-06", 1_038), ("claude-sonnet-4-20250514", 1_471)],
)
def test_a_dated_model_name_is_charged_at_its_model_s_rates(
    meter: CreditMeter, acme: str, model: str, credits: int
) -> None:
    charge = meter.charge(acme, "llm.chat", usage=TURN, model=model)

    assert charge.credits == credits
    record = meter.usage_record(charge.usage_id)
    assert (record.model, record.unknown_model) == (model, False)
    assert meter.verify() == []


def test_a_hold_for_a_dated_name_reserves_and_settles_at_its_model_s_rates(
    meter: CreditMeter, acme: str
) -> None:
    hold = meter.authorize(acme, "llm.chat", estimate=TURN, model="gpt-4o-2024-08-06")
    assert hold.credits == 1_038

    charge = meter.settle(hold.id, usage=TURN)

    assert charge.credits == 1_038
    assert meter.balance(acme).available == 10_000 - 1_038


@pytest.mark.parametrize("model", ["gpt-4.1", "gpt-4o-mini", "a-model-no-one-has"])
def test_a_model_the_feature_cannot_price_is_refused_and_changes_nothing(
    meter: CreditMeter, acme: str, model: str
) -> None:
    before = changes(meter, acme)

    with pytest.raises(UnknownModel, match=f"'{model}'") as refused:
        meter.charge(acme, "llm.chat", usage=TURN, model=model, idempotency_key="k1")
    with pytest.raises(UnknownModel):
        meter.authorize(acme, "llm.chat", estimate=TURN, model=model)

    assert (refused.value.model, refused.value.feature) == (model, "llm.chat")
    assert changes(meter, acme) == before
    assert meter.verify() == []


def test_a_settle_naming_an_unknown_model_is_refused_and_leaves_the_hold_pending(
    meter: CreditMeter, acme: str
) -> None:
    hold = meter.authorize(acme, "llm.chat", estimate=TURN, model="gpt-4o")

    with pytest.raises(UnknownModel):
        meter.settle(hold.id, usage=TURN, model="gpt-4.1")

    assert meter.hold(hold.id).status is HoldStatus.PENDING
    meter.release(hold.id)
    with pytest.raises(HoldNotPending):
        meter.settle(hold.id, usage=TURN)


def test_a_feature_that_falls_back_charges_the_default_rates_and_flags_the_record(
    meter: CreditMeter, acme: str
) -> None:
    meter.put_feature(
        "llm.fallback",
        rates={"input_tokens": "0.25", "output_tokens": 1},
        models={"gpt-4o": {"input_tokens": "0.5", "output_tokens": 2}},
        multiplier="1.5",
        unknown_models="default_rates",
    )

    unknown = meter.charge(acme, "llm.fallback", usage=TURN, model="gpt-4.1")
    known = meter.charge(acme, "llm.fallback", usage=TURN, model="gpt-4o-2024-08-06")

    assert (unknown.credits, unknown.unknown_model) == (519, True)
    assert (known.credits, known.unknown_model) == (1_038, False)
    assert meter.usage_record(unknown.usage_id).unknown_model is True
    assert meter.usage_record(known.usage_id).unknown_model is False
    [feature] = [f for f in meter.features() if f.key == "llm.fallback"]
    assert feature.rule.unknown_models is UnknownModels.DEFAULT_RATES


def test_a_feature_without_per_model_rates_charges_its_rates_for_any_model_or_none(
    meter: CreditMeter, acme: str
) -> None:
    meter.put_feature("llm.flat", rates={"input_tokens": 1, "output_tokens": 1})

    named = meter.charge(acme, "llm.flat", usage=TURN, model="a-model-no-one-has")
    unnamed = meter.charge(acme, "llm.flat", usage=TURN)

    assert (named.credits, unnamed.credits) == (634, 634)
    assert meter.usage_record(named.usage_id).unknown_model is False
