"""Records to JSON data and back: decimals as strings, times in ISO 8601, enums by value."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

from creditmeter.core.records import Hold, UsageRecord
from creditmeter.core.serialization import from_json, to_json
from creditmeter.core.types import HoldStatus

AT = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)

USAGE = UsageRecord(
    id="use_1",
    account_id="acme",
    feature="chat",
    feature_version=1,
    model=None,
    member=None,
    quantities={"tokens": "2.5"},
    credits=3,
    charged=3,
    debited=0,
    uncollected=0,
    refunded=0,
    unlimited=False,
    success=True,
    hold_id=None,
    created_at=AT,
    metadata={},
    provider_cost=Decimal("1E-8"),
)


def test_a_decimal_is_a_string_never_a_float() -> None:
    data = to_json(USAGE)

    assert data["provider_cost"] == "1E-8"
    assert not any(isinstance(value, float) for value in data.values())


def test_a_record_comes_back_equal() -> None:
    data = json.loads(json.dumps(to_json(USAGE)))

    back = from_json(UsageRecord, data)

    assert back == USAGE
    assert back.provider_cost is not None
    assert back.provider_cost.as_tuple() == Decimal("0.00000001").as_tuple()


def test_times_and_enums_as_text() -> None:
    hold = Hold("hold_1", "acme", "chat", 5, 5, HoldStatus.PENDING, AT, AT)

    data = to_json(hold)

    assert data["status"] == "pending"
    assert datetime.fromisoformat(data["created_at"]) == AT
    assert from_json(Hold, data) == hold


def test_other_keys_are_ignored_and_defaults_fill_in() -> None:
    data = {k: v for k, v in to_json(USAGE).items() if k != "unknown_model"}

    assert from_json(UsageRecord, {**data, "account": "acme"}) == USAGE
