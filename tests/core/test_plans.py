"""Plans: allowed features, unlimited pools, upgrades and validation."""

from __future__ import annotations

from typing import Literal

import pytest

from creditmeter.core.errors import InvalidRequest
from creditmeter.core.plans import Plan, plan_from_json, plan_to_json
from creditmeter.core.types import Credits, PeriodKind, PoolName


def plan(
    allowances: dict[PoolName, Credits | None],
    features: frozenset[str] | Literal["*"] = "*",
    key: str = "p",
) -> Plan:
    return Plan(key=key, name=key, allowances=allowances, features=features)


def test_allows_listed_features_only() -> None:
    starter = plan({"*": 100}, frozenset({"chat", "summarize"}))
    assert starter.allows("chat")
    assert starter.allows("summarize")
    assert not starter.allows("image.generate")


def test_star_allows_every_feature() -> None:
    assert plan({"*": 100}).allows("anything.at.all")


def test_a_plan_listing_no_features_allows_none() -> None:
    assert not plan({"*": 100}, frozenset()).allows("chat")


def test_is_unlimited_for_a_pool_with_a_null_allowance() -> None:
    pro = plan({"llm": None, "images": 50})
    assert pro.is_unlimited("llm")
    assert not pro.is_unlimited("images")
    assert not pro.is_unlimited("audio")


def test_is_unlimited_for_every_pool_through_a_null_star_allowance() -> None:
    everything = plan({"*": None})
    assert everything.is_unlimited("llm")
    assert everything.is_unlimited("images")


def test_a_pool_with_its_own_limit_is_limited_even_under_an_unlimited_star() -> None:
    mixed = plan({"*": None, "images": 10})
    assert not mixed.is_unlimited("images")
    assert mixed.is_unlimited("llm")


def test_a_limited_star_allowance_is_not_unlimited() -> None:
    assert not plan({"*": 1000}).is_unlimited("llm")
    assert not plan({}).is_unlimited("llm")


def test_limited_allowances_leaves_out_unlimited_pools() -> None:
    assert plan({"*": 100, "llm": None, "images": 0}).limited_allowances() == {
        "*": 100,
        "images": 0,
    }


@pytest.mark.parametrize(
    ("old", "new", "upgrade"),
    [
        ({"*": 100}, {"*": 100}, True),
        ({"*": 100}, {"*": 200}, True),
        ({"*": 200}, {"*": 100}, False),
        ({"*": 100}, {"*": None}, True),
        ({"*": None}, {"*": 100_000}, False),
        ({"*": None}, {"*": None}, True),
        ({"*": 100}, {"*": 100, "images": 10}, True),
        ({"*": 100, "images": 10}, {"*": 1000}, False),
        ({"llm": 100, "images": 10}, {"llm": 50, "images": 500}, False),
        ({}, {"*": 1}, True),
        ({"*": 1}, {}, False),
    ],
)
def test_is_upgrade_from_when_no_pool_gets_less(
    old: dict[PoolName, Credits | None], new: dict[PoolName, Credits | None], upgrade: bool
) -> None:
    assert plan(new, key="new").is_upgrade_from(plan(old, key="old")) is upgrade


def test_plan_from_json_with_every_field() -> None:
    parsed = plan_from_json(
        "pro",
        {
            "name": "Pro",
            "allowances": {"*": 5000, "images": None},
            "features": ["chat", "image.generate"],
            "period": "anniversary_month",
            "rollover_cap": 1000,
        },
    )
    assert parsed == Plan(
        key="pro",
        name="Pro",
        allowances={"*": 5000, "images": None},
        features=frozenset({"chat", "image.generate"}),
        period=PeriodKind.ANNIVERSARY_MONTH,
        rollover_cap=1000,
    )
    assert plan_from_json("pro", plan_to_json(parsed)) == parsed
    assert plan_to_json(parsed)["features"] == ["chat", "image.generate"]


def test_plan_from_json_defaults() -> None:
    parsed = plan_from_json("free", {})
    assert parsed == Plan(
        key="free",
        name="free",
        allowances={},
        features="*",
        period=PeriodKind.CALENDAR_MONTH,
        rollover_cap=0,
    )
    assert plan_to_json(parsed) == {
        "name": "free",
        "allowances": {},
        "features": "*",
        "period": "calendar_month",
        "rollover_cap": 0,
    }


def test_plan_from_json_accepts_every_period_kind() -> None:
    for kind in PeriodKind:
        assert plan_from_json("p", {"period": kind.value}).period is kind


@pytest.mark.parametrize(
    ("data", "complaint"),
    [
        ({"allowances": [100]}, "allowances must map"),
        ({"allowances": {"*": 1.5}}, "pool '\\*' must be an integer or null"),
        ({"allowances": {"*": "100"}}, "must be an integer or null"),
        ({"allowances": {"*": True}}, "must be an integer or null"),
        ({"allowances": {"llm": -1}}, "pool 'llm' must be ≥ 0"),
        ({"features": "chat"}, "features must be a list"),
        ({"features": ["chat", 3]}, "features must be a list"),
        ({"features": None}, "features must be a list"),
        ({"period": "weekly"}, "period must be one of calendar_month"),
        ({"rollover_cap": -1}, "rollover_cap"),
        ({"rollover_cap": True}, "rollover_cap"),
        ({"rollover_cap": 10.0}, "rollover_cap"),
    ],
)
def test_plan_from_json_refuses_malformed_plans(data: dict[str, object], complaint: str) -> None:
    with pytest.raises(InvalidRequest, match=complaint):
        plan_from_json("p", data)
