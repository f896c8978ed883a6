"""Rating: exact Decimal arithmetic, one ceiling per usage, validated quantities."""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from creditmeter.core.errors import InvalidRequest, UnknownModel
from creditmeter.core.pricing import (
    CALLS,
    Feature,
    Priced,
    PricingRule,
    UnknownModels,
    decimal_of,
    normalize_usage,
    pool_matches,
    price,
    price_feature,
    rule_from_json,
    rule_to_json,
)

TOKENS = PricingRule(
    rates={"input_tokens": Decimal("0.001"), "output_tokens": Decimal("0.003")},
    models={
        "big": {"input_tokens": Decimal("0.01"), "output_tokens": Decimal("0.03")},
        "cached": {"cached_tokens": Decimal("0.0005")},
    },
)


def test_three_units_at_a_tenth_times_one_and_a_half_cost_one_credit() -> None:
    rule = PricingRule(rates={"unit": Decimal("0.1")}, multiplier=Decimal("1.5"))
    assert price(rule, {"unit": 3}) == 1  # ceil(0.45)


def test_decimal_arithmetic_is_exact_where_float_would_round_up_once_too_often() -> None:
    # In floats 0.1 + 0.2 = 0.30000000000000004, so ten times it would ceil to 4.
    rule = PricingRule(rates={"a": Decimal("0.1"), "b": Decimal("0.2")}, multiplier=Decimal(10))
    assert price(rule, {"a": 1, "b": 1}) == 3


def test_rounding_happens_once_per_usage_not_once_per_unit() -> None:
    rule = PricingRule(rates={"a": Decimal("0.4"), "b": Decimal("0.4")})
    assert price(rule, {"a": 1, "b": 1}) == 1  # ceil(0.8), not ceil(0.4) + ceil(0.4)


def test_multiplier_applies_before_the_ceiling() -> None:
    rule = PricingRule(rates={"unit": Decimal("0.3")}, multiplier=Decimal("3"))
    assert price(rule, {"unit": 1}) == 1  # ceil(0.9), not ceil(0.3) × 3


def test_exact_integer_totals_are_not_rounded_up() -> None:
    rule = PricingRule(rates={"input_tokens": Decimal("0.001")})
    assert price(rule, {"input_tokens": 1000}) == 1
    assert price(rule, {"input_tokens": 1001}) == 2


def test_fractional_quantities_are_priced_exactly() -> None:
    rule = PricingRule(rates={"seconds": Decimal(2)})
    assert price(rule, {"seconds": Decimal("1.5")}) == 3
    assert price(rule, {"seconds": Decimal("1.25")}) == 3  # ceil(2.5)


def test_zero_usage_costs_nothing() -> None:
    assert price(TOKENS, {"input_tokens": 0, "output_tokens": 0}) == 0


def test_unknown_unit_is_refused_naming_it() -> None:
    with pytest.raises(InvalidRequest, match="'images'") as refused:
        price(TOKENS, {"input_tokens": 10, "images": 1})
    assert "input_tokens, output_tokens" in refused.value.message


def test_model_overrides_replace_only_the_units_they_name() -> None:
    usage = {"input_tokens": 1000, "output_tokens": 1000}
    assert price(TOKENS, usage) == 4  # 1 + 3
    assert price(TOKENS, usage, "big") == 40  # 10 + 30
    assert price(TOKENS, {"input_tokens": 1000, "cached_tokens": 2000}, "cached") == 2
    assert TOKENS.rates_for("cached") == {
        "input_tokens": Decimal("0.001"),
        "output_tokens": Decimal("0.003"),
        "cached_tokens": Decimal("0.0005"),
    }


LLM = PricingRule(
    rates={"input_tokens": Decimal("0.25"), "output_tokens": Decimal(1)},
    models={
        "gpt-4o": {"input_tokens": Decimal("0.5"), "output_tokens": Decimal(2)},
        "gpt-4o-mini": {"input_tokens": Decimal("0.03"), "output_tokens": Decimal("0.12")},
        "claude-sonnet-4": {"input_tokens": Decimal("0.6"), "output_tokens": Decimal(3)},
    },
)
TURN = {"input_tokens": 1000, "output_tokens": 1000}


@pytest.mark.parametrize(
    ("model", "credits"),
    [
        ("gpt-4o", 2500),
        ("gpt-4o-2024-08-06", 2500),  # dated
        ("gpt-4o-mini-2024-07-18", 150),  # dated, and not gpt-4o's rates
        ("claude-sonnet-4-20250514", 3600),  # dated
        ("claude-sonnet-4-0", 3600),  # aliased
    ],
)
def test_a_dated_or_aliased_name_is_priced_at_its_model_s_rates(model: str, credits: int) -> None:
    feature = Feature("llm.chat", "LLM chat", "llm", LLM)
    assert price_feature(feature, TURN, model) == Priced(credits)


@pytest.mark.parametrize("model", ["gpt-4.1", "o3-mini", "not-a-model"])
def test_a_model_the_feature_cannot_price_is_refused_naming_it(model: str) -> None:
    feature = Feature("llm.chat", "LLM chat", "llm", LLM)
    with pytest.raises(UnknownModel, match=f"'{model}'") as refused:
        price_feature(feature, TURN, model)
    assert (refused.value.model, refused.value.feature) == (model, "llm.chat")
    assert refused.value.code == "unknown_model"


def test_a_feature_that_says_so_prices_an_unknown_model_at_its_default_rates_flagged() -> None:
    rule = PricingRule(LLM.rates, LLM.models, unknown_models=UnknownModels.DEFAULT_RATES)
    feature = Feature("llm.chat", "LLM chat", "llm", rule)
    assert price_feature(feature, TURN, "gpt-4.1") == Priced(1250, unknown_model=True)
    assert price_feature(feature, TURN, "gpt-4o-2024-08-06") == Priced(2500)


def test_a_feature_without_per_model_rates_prices_any_model_or_none_at_its_rates() -> None:
    feature = Feature("llm.chat", "LLM chat", "llm", PricingRule(LLM.rates))
    assert price_feature(feature, TURN, "not-a-model") == Priced(1250)
    assert price_feature(feature, TURN, None) == Priced(1250)
    with_models = Feature("llm.chat", "LLM chat", "llm", LLM)
    assert price_feature(with_models, TURN, None) == Priced(1250)


def test_unknown_models_is_kept_in_the_rule_s_json_and_checked() -> None:
    data = {"rates": {"calls": 1}, "models": {"m": {"calls": 2}}, "unknown_models": "default_rates"}
    rule = rule_from_json(data)
    assert rule.unknown_models is UnknownModels.DEFAULT_RATES
    assert rule_from_json(rule_to_json(rule)) == rule
    assert rule_from_json({"rates": {"calls": 1}}).unknown_models is UnknownModels.REFUSE
    with pytest.raises(InvalidRequest, match="unknown_models must be"):
        rule_from_json({"rates": {"calls": 1}, "unknown_models": "guess"})


def test_a_unit_only_a_model_prices_is_refused_for_other_models() -> None:
    with pytest.raises(InvalidRequest, match="cached_tokens"):
        price(TOKENS, {"cached_tokens": 10}, "big")
    with pytest.raises(InvalidRequest, match="cached_tokens"):
        price(TOKENS, {"cached_tokens": 10})


def test_an_unknown_model_uses_the_base_rates() -> None:
    assert TOKENS.rates_for("unheard-of") == TOKENS.rates
    assert TOKENS.rates_for(None) == TOKENS.rates
    assert price(TOKENS, {"output_tokens": 1000}, "unheard-of") == 3


def test_empty_usage_is_one_call() -> None:
    assert normalize_usage({}) == {CALLS: 1}
    assert normalize_usage(None) == {CALLS: 1}
    fixed = PricingRule(rates={CALLS: Decimal(5)})
    assert price(fixed, normalize_usage(None)) == 5


def test_normalize_usage_keeps_integers_and_decimal_fractions() -> None:
    normalized = normalize_usage({"tokens": 12, "seconds": "1.50", "images": Decimal("2.0")})
    assert normalized == {"tokens": 12, "seconds": Decimal("1.5"), "images": 2}
    assert type(normalized["tokens"]) is int
    assert type(normalized["images"]) is int
    assert type(normalized["seconds"]) is Decimal


@pytest.mark.parametrize(
    "quantity",
    [0.5, 1.0, True, -1, "-0.1", "NaN", "Infinity", "ten", None, [1]],
    ids=repr,
)
def test_invalid_quantities_are_refused(quantity: object) -> None:
    with pytest.raises(InvalidRequest, match=r"usage\.tokens"):
        normalize_usage({"tokens": quantity})


def test_decimal_of_accepts_ints_decimals_and_decimal_strings() -> None:
    assert decimal_of(3, "x") == Decimal(3)
    assert decimal_of("0.0015", "x") == Decimal("0.0015")
    assert decimal_of(Decimal("2.5"), "x") == Decimal("2.5")
    assert decimal_of(0, "x") == Decimal(0)


@pytest.mark.parametrize("value", [0.1, False, "abc", "-1", Decimal("-0.5"), "sNaN", "-Infinity"])
def test_decimal_of_refuses_floats_bools_garbage_and_negatives(value: object) -> None:
    with pytest.raises(InvalidRequest, match="rate"):
        decimal_of(value, "rate")


def test_rule_from_json_parses_rates_models_and_multiplier() -> None:
    rule = rule_from_json(
        {
            "rates": {"input_tokens": "0.001"},
            "models": {"big": {"input_tokens": "0.01"}},
            "multiplier": "1.25",
        }
    )
    assert rule == PricingRule(
        rates={"input_tokens": Decimal("0.001")},
        models={"big": {"input_tokens": Decimal("0.01")}},
        multiplier=Decimal("1.25"),
    )
    assert rule_from_json(rule_to_json(rule)) == rule
    assert rule_to_json(rule) == {
        "rates": {"input_tokens": "0.001"},
        "models": {"big": {"input_tokens": "0.01"}},
        "multiplier": "1.25",
        "unknown_models": "refuse",
        "cost_plus": False,
    }


def test_rule_from_json_defaults_the_multiplier_to_one() -> None:
    assert rule_from_json({"rates": {CALLS: 2}}).multiplier == Decimal(1)


def test_a_rule_with_only_model_rates_is_accepted() -> None:
    rule = rule_from_json({"models": {"big": {"images": 4}}})
    assert rule.rates == {}
    assert price(rule, {"images": 2}, "big") == 8


@pytest.mark.parametrize(
    ("data", "complaint"),
    [
        ({}, "at least one rate"),
        ({"rates": {}, "models": {}}, "at least one rate"),
        ({"rates": ["calls"]}, "rates must map"),
        ({"rates": {"calls": 0.5}}, r"rates\.calls"),
        ({"rates": {"calls": "-1"}}, r"rates\.calls"),
        ({"rates": {"calls": 1}, "models": ["big"]}, "models must map"),
        ({"rates": {"calls": 1}, "models": {"big": {"calls": 1.5}}}, r"models\.big\.calls"),
        ({"rates": {"calls": 1}, "multiplier": 1.5}, "multiplier"),
        ({"rates": {"calls": 1}, "multiplier": "-2"}, "multiplier"),
    ],
)
def test_rule_from_json_refuses_malformed_rules(data: dict[str, object], complaint: str) -> None:
    with pytest.raises(InvalidRequest, match=complaint):
        rule_from_json(data)


def test_pool_matches_its_own_pool_and_the_any_pool_only() -> None:
    assert pool_matches("llm", "llm")
    assert pool_matches("*", "llm")
    assert not pool_matches("images", "llm")
    assert not pool_matches("llm", "*")


rates = st.decimals(min_value=0, max_value=100, places=6, allow_nan=False, allow_infinity=False)
quantities = st.one_of(
    st.integers(min_value=0, max_value=10**9),
    st.decimals(min_value=0, max_value=10**6, places=3, allow_nan=False, allow_infinity=False),
)


@given(
    usage=st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), quantities, max_size=4),
    rate_of=st.fixed_dictionaries(dict.fromkeys("abcd", rates)),
    multiplier=st.decimals(
        min_value=0, max_value=10, places=4, allow_nan=False, allow_infinity=False
    ),
)
def test_price_is_the_exact_ceiling_of_the_rational_total(
    usage: dict[str, int | Decimal],
    rate_of: dict[str, Decimal],
    multiplier: Decimal,
) -> None:
    rule = PricingRule(rates=rate_of, multiplier=multiplier)
    exact = Fraction(multiplier) * sum(
        (Fraction(q) * Fraction(rate_of[u]) for u, q in usage.items()), Fraction(0)
    )
    assert price(rule, usage) == math.ceil(exact)
