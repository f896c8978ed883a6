"""System settings: validated changes and the balance warnings they drive."""

from __future__ import annotations

from decimal import Decimal

import pytest

from creditmeter.core.errors import AllowanceState, InvalidRequest
from creditmeter.core.settings import (
    SETTING_NAMES,
    BalanceWarning,
    Settings,
    apply_changes,
    balance_warnings,
    settings_from_json,
    settings_to_json,
)
from creditmeter.core.types import Enforcement

NO_ALLOWANCE = AllowanceState(used=0, limit=0, percentage=None)


def used(percentage: int) -> AllowanceState:
    return AllowanceState(used=percentage * 10, limit=1000, percentage=percentage)


def codes(warnings: list[BalanceWarning]) -> list[str]:
    return [w.code for w in warnings]


def test_defaults() -> None:
    s = Settings()
    assert s.credits_per_usd == Decimal(1000)
    assert s.default_multiplier == Decimal(1)
    assert s.low_balance_threshold == 1000
    assert s.critical_balance_threshold == 100
    assert s.allowance_alerts == (75, 90, 100)
    assert s.enforcement is Enforcement.ENFORCE


def test_apply_changes_returns_new_settings_and_leaves_the_old_as_they_were() -> None:
    old = Settings()
    new = apply_changes(
        old,
        {
            "credits_per_usd": "1250.5",
            "default_multiplier": 2,
            "welcome_bonus": 500,
            "low_balance_threshold": 2000,
            "critical_balance_threshold": 0,
            "allowance_alerts": [100, 50, 90, 50],
            "minimum_purchase": 999,
            "enforcement": "observe",
            "default_hold_ttl_seconds": 60,
            "max_hold_ttl_seconds": 3600,
            "upgrade_url": "https://example.com/upgrade",
        },
    )
    assert new == Settings(
        credits_per_usd=Decimal("1250.5"),
        default_multiplier=Decimal(2),
        welcome_bonus=500,
        low_balance_threshold=2000,
        critical_balance_threshold=0,
        allowance_alerts=(50, 90, 100),
        minimum_purchase=999,
        enforcement=Enforcement.OBSERVE,
        default_hold_ttl_seconds=60,
        max_hold_ttl_seconds=3600,
        upgrade_url="https://example.com/upgrade",
    )
    assert old == Settings()


def test_apply_no_changes_is_identity() -> None:
    assert apply_changes(Settings(), {}) == Settings()


def test_upgrade_url_may_be_cleared() -> None:
    with_url = apply_changes(Settings(), {"upgrade_url": "https://x.test"})
    assert apply_changes(with_url, {"upgrade_url": None}).upgrade_url is None


def test_unknown_settings_are_refused_by_name_and_nothing_applies() -> None:
    with pytest.raises(InvalidRequest, match="unknown settings: colour, volume"):
        apply_changes(Settings(), {"welcome_bonus": 5, "volume": 11, "colour": "red"})


@pytest.mark.parametrize(
    ("changes", "complaint"),
    [
        ({"credits_per_usd": 1000.0}, "credits_per_usd"),
        ({"credits_per_usd": "-1"}, "credits_per_usd"),
        ({"default_multiplier": "many"}, "default_multiplier"),
        ({"default_multiplier": True}, "default_multiplier"),
        ({"welcome_bonus": -1}, "welcome_bonus must be an integer ≥ 0"),
        ({"welcome_bonus": 1.0}, "welcome_bonus must be an integer ≥ 0"),
        ({"welcome_bonus": "100"}, "welcome_bonus must be an integer ≥ 0"),
        ({"low_balance_threshold": True}, "low_balance_threshold"),
        ({"max_hold_ttl_seconds": None}, "max_hold_ttl_seconds"),
        ({"allowance_alerts": [0, 50]}, "allowance_alerts"),
        ({"allowance_alerts": [101]}, "allowance_alerts"),
        ({"allowance_alerts": [True]}, "allowance_alerts"),
        ({"allowance_alerts": [75.0]}, "allowance_alerts"),
        ({"allowance_alerts": "75,90"}, "allowance_alerts"),
        ({"enforcement": "strict"}, "enforcement must be one of enforce, observe, off"),
        ({"upgrade_url": 42}, "upgrade_url"),
    ],
)
def test_invalid_values_are_refused(changes: dict[str, object], complaint: str) -> None:
    with pytest.raises(InvalidRequest, match=complaint):
        apply_changes(Settings(), changes)


def test_json_round_trip() -> None:
    s = apply_changes(
        Settings(),
        {"credits_per_usd": "333.33", "allowance_alerts": [80], "enforcement": "off"},
    )
    as_json = settings_to_json(s)
    assert as_json["credits_per_usd"] == "333.33"
    assert as_json["allowance_alerts"] == [80]
    assert as_json["enforcement"] == "off"
    assert set(as_json) == SETTING_NAMES
    assert settings_from_json(as_json) == s


def test_no_warning_for_a_healthy_balance() -> None:
    assert balance_warnings(Settings(), 1001, used(74)) == []
    assert balance_warnings(Settings(), 5000, NO_ALLOWANCE) == []


def test_low_balance_at_and_below_the_low_threshold() -> None:
    s = Settings()
    assert codes(balance_warnings(s, 1000, NO_ALLOWANCE)) == ["balance_low"]
    assert codes(balance_warnings(s, 101, NO_ALLOWANCE)) == ["balance_low"]
    assert balance_warnings(s, 1000, NO_ALLOWANCE)[0].message == (
        "balance is low: 1000 credits left"
    )


def test_critical_balance_replaces_low() -> None:
    s = Settings()
    assert codes(balance_warnings(s, 100, NO_ALLOWANCE)) == ["balance_critical"]
    assert codes(balance_warnings(s, 0, NO_ALLOWANCE)) == ["balance_critical"]
    assert codes(balance_warnings(s, -50, NO_ALLOWANCE)) == ["balance_critical"]
    assert balance_warnings(s, 7, NO_ALLOWANCE)[0].message == "balance is critical: 7 credits left"


def test_thresholds_follow_the_settings() -> None:
    s = apply_changes(Settings(), {"low_balance_threshold": 50, "critical_balance_threshold": 5})
    assert balance_warnings(s, 51, NO_ALLOWANCE) == []
    assert codes(balance_warnings(s, 50, NO_ALLOWANCE)) == ["balance_low"]
    assert codes(balance_warnings(s, 5, NO_ALLOWANCE)) == ["balance_critical"]


@pytest.mark.parametrize(
    ("percentage", "expected"),
    [
        (0, []),
        (74, []),
        (75, ["allowance_75"]),
        (89, ["allowance_75"]),
        (90, ["allowance_90"]),
        (99, ["allowance_90"]),
        (100, ["allowance_100"]),
        (250, ["allowance_100"]),
    ],
)
def test_the_highest_allowance_alert_crossed_is_reported(
    percentage: int, expected: list[str]
) -> None:
    assert codes(balance_warnings(Settings(), 10_000, used(percentage))) == expected


def test_allowance_alert_message() -> None:
    (warning,) = balance_warnings(Settings(), 10_000, used(91))
    assert warning == BalanceWarning("allowance_90", "90 % of monthly allowance used")


def test_allowance_and_balance_warnings_together() -> None:
    assert codes(balance_warnings(Settings(), 20, used(100))) == [
        "allowance_100",
        "balance_critical",
    ]


def test_allowance_alerts_follow_the_settings() -> None:
    s = apply_changes(Settings(), {"allowance_alerts": [50]})
    assert codes(balance_warnings(s, 10_000, used(60))) == ["allowance_50"]
    assert codes(balance_warnings(s, 10_000, used(100))) == ["allowance_50"]
    silent = apply_changes(Settings(), {"allowance_alerts": []})
    assert balance_warnings(silent, 10_000, used(100)) == []
