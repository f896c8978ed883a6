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


def test_the_litellm_script_charges_each_call_and_refuses_an_empty_account(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run("litellm_chat.py", capsys) == [
        "Credits are prepaid.",
        "Credits are prepaid.",
        "charged: 90 for {'input_tokens': 10, 'output_tokens': 20} on gpt-4o-mini",
        "charged: 27 for {'input_tokens': 11, 'output_tokens': 4} on gpt-4o-mini",
        "refused: insufficient_credits, 16389 needed, 10 available",
    ]


def test_the_webhook_receiver_applies_a_redelivered_event_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run("webhook_receiver.py", capsys) == [
        "purchase.fulfilled: 1000 credits for acme",
        "deliveries: 2",
    ]
