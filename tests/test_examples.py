"""The examples run offline, as written, and print what they promise."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"


def run(name: str, capsys: pytest.CaptureFixture[str]) -> list[str]:
    runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    return capsys.readouterr().out.splitlines()


def test_the_chat_app_answers_and_refuses_with_the_402_body(
    capsys: pytest.CaptureFixture[str],
) -> None:
    answered, refused = run("chat_app.py", capsys)
    assert answered == "200 {'reply': 'You asked: What is a credit?', 'available': 972}"
    assert refused.startswith("402 {'error': {'type': 'insufficient_credits'")


def test_the_anthropic_stream_holds_then_charges_its_usage(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run("anthropic_stream.py", capsys) == [
        "held: 1505",
        "Credits are prepaid.",
        "charged: 60 for {'input_tokens': 20, 'output_tokens': 6, 'cached_tokens': 100} "
        "on claude-sonnet-4-20250514",
    ]


def test_the_webhook_receiver_applies_a_redelivered_event_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run("webhook_receiver.py", capsys) == [
        "purchase.fulfilled: 1000 credits for acme",
        "deliveries: 2",
    ]
