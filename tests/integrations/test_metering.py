"""What the wrappers share, without a database: the estimate, the usage they settle, and
their place at the top of the layers."""

from __future__ import annotations

from pathlib import Path

from creditmeter.client import CreditMeterClient
from creditmeter.integrations._metering import Metering, Tokens, texts

SRC = Path(__file__).parents[2] / "src" / "creditmeter"
MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 999}},
        ],
    },
]


def test_the_prompt_is_the_text_of_messages_and_parts_and_not_image_data() -> None:
    assert list(texts(MESSAGES)) == ["Be brief.", "What is this?"]


def test_the_default_estimate_is_characters_over_four_rounded_up() -> None:
    with CreditMeterClient("http://meter.test", "unused") as meter:  # never called
        metering = Metering(meter, "acme", "llm.chat")
    assert metering.estimate(texts(MESSAGES), 100) == {"input_tokens": 6, "output_tokens": 100}
    assert metering.estimate([], None) == {"input_tokens": 0, "output_tokens": 4096}
    counted = Metering(metering.meter, "acme", "llm.chat", count_tokens=lambda text: 42)
    assert counted.estimate(["anything"], 1) == {"input_tokens": 42, "output_tokens": 1}


def test_token_kinds_are_their_own_units_only_where_priced() -> None:
    tokens = Tokens(input=1000, output=500, cached=400, cache_write=100, reasoning=50)
    assert tokens.quantities(["input_tokens", "output_tokens"]) == {
        "input_tokens": 1000,
        "output_tokens": 500,
    }
    assert tokens.quantities(["cached_tokens", "cache_write_tokens", "reasoning_tokens"]) == {
        "input_tokens": 500,
        "cached_tokens": 400,
        "cache_write_tokens": 100,
        "output_tokens": 450,
        "reasoning_tokens": 50,
    }
    assert Tokens(input=10, output=5).quantities(["cached_tokens"]) == {
        "input_tokens": 10,
        "output_tokens": 5,
    }


def test_nothing_outside_the_integrations_imports_them() -> None:
    importers = [
        path.relative_to(SRC)
        for path in SRC.rglob("*.py")
        if "integrations" not in path.parts and "creditmeter.integrations" in path.read_text()
    ]
    assert importers == []
