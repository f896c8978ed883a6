"""The one spelling of a usage."""

from __future__ import annotations

from dataclasses import fields
from decimal import Decimal

from creditmeter.core.usage import UsageEvent, UsageFields


def test_charge_takes_every_field_of_a_usage() -> None:
    after_front = [f.name for f in fields(UsageEvent)][2:]
    assert list(UsageFields.__annotations__) == after_front


def test_the_params_keep_the_names_and_the_none_of_stored_keys() -> None:
    event = UsageEvent("acme", "chat", credits=5, provider_cost=Decimal("0.5"), idempotency_key="k")
    assert event.params() == {
        "account": "acme",
        "feature": "chat",
        "usage": None,
        "credits": 5,
        "model": None,
        "member": None,
        "metadata": None,
        "provider_cost": Decimal("0.5"),
    }


def test_the_fields_rebuild_the_usage() -> None:
    event = UsageEvent("acme", "chat", usage={"tokens": 3}, member="ann", idempotency_key="k")
    assert UsageEvent(event.account_id, event.feature, **event.fields()) == event
