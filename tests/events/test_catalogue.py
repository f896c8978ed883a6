"""The event catalogue in docs/notifications.md is the code's: every event type is
documented with its model's schema, and every example validates."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from creditmeter.core.webhooks import EVENT_TYPES
from creditmeter.events import catalogue

PAGE = Path(__file__).parents[2] / "docs" / "notifications.md"
SECTION = re.compile(r"^#### `([a-z_.]+)`\n(.*?)(?=^#|\Z)", re.MULTILINE | re.DOTALL)
JSON_BLOCK = re.compile(r"^```json\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def documented() -> dict[str, list[str]]:
    """Each documented event type's JSON blocks: its schema, then its example."""
    text = PAGE.read_text()
    events = text[text.index("## Events\n") : text.index("## Payload and signature")]
    return {t: JSON_BLOCK.findall(body) for t, body in SECTION.findall(events)}


def test_every_event_type_is_documented_and_nothing_else() -> None:
    assert sorted(documented()) == sorted(EVENT_TYPES)


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_the_documented_schema_is_the_models(event_type: str) -> None:
    schema, _ = documented()[event_type]
    assert json.loads(schema) == catalogue.schema(event_type)


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_the_documented_example_validates(event_type: str) -> None:
    _, example = documented()[event_type]
    catalogue.validate(event_type, example)


def test_a_payload_off_the_schema_is_refused() -> None:
    with pytest.raises(ValueError, match="available"):
        catalogue.validate("balance.low", '{"account_id": "a", "available": "1", "threshold": 1}')
    with pytest.raises(ValueError, match="extra"):
        catalogue.validate(
            "hold.expired", '{"account_id": "a", "hold_id": "h", "credits": 1, "x": 1}'
        )
