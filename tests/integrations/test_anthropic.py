"""The Anthropic wrapper, with the real SDK over a mock transport: what it holds, settles
and releases for plain, streaming and failing calls, sync and async."""

from __future__ import annotations

import asyncio
from typing import Any

import anthropic
import httpx2
import pytest
from anthropic.types import MessageParam

from creditmeter import CreditMeter, InsufficientCredits
from creditmeter.integrations._metering import Meter
from creditmeter.integrations.anthropic import metered
from tests.integrations.conftest import ACCOUNT, CHAT, CREDITS, PLAIN, Provider, sse, streamed

MODEL = "claude-sonnet-4-20250514"
MESSAGES: list[MessageParam] = [{"role": "user", "content": "x" * 32}]
SYSTEM = "Be brief"
"""With MESSAGES, ten tokens by the default estimate."""
USAGE = {
    "input_tokens": 600,
    "cache_read_input_tokens": 300,
    "cache_creation_input_tokens": 100,
    "output_tokens": 500,
    "output_tokens_details": {"thinking_tokens": 100},
}
CHARGED = 600 + 300 // 2 + 100 * 2 + 400 * 2 + 100 * 3
"""USAGE on CHAT: 600 input, 300 cached at 0.5, 100 written to the cache at 2, 400 output
and 100 thinking tokens at 3."""
SETTLED = {
    "input_tokens": 600,
    "cached_tokens": 300,
    "cache_write_tokens": 100,
    "output_tokens": 400,
    "reasoning_tokens": 100,
}


def message(**fields: Any) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [{"type": "text", "text": "Hello"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": USAGE,
        **fields,
    }


def events(*, broken: bool = False) -> bytes:
    start_usage = {**USAGE, "output_tokens": 1}
    del start_usage["output_tokens_details"]
    start = message(content=[], stop_reason=None, usage=start_usage)
    text = {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    delta = {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": "Hi"},
    }
    if broken:
        error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        ending: list[tuple[str, dict[str, Any]]] = [("error", error)]
    else:
        ending = [
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {
                        "output_tokens": 500,
                        "output_tokens_details": {"thinking_tokens": 100},
                    },
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
    return sse(
        ("message_start", {"type": "message_start", "message": start}),
        ("content_block_start", text),
        ("content_block_delta", delta),
        *ending,
        done=False,
    )


def client(provider: Provider) -> anthropic.Anthropic:
    http = httpx2.Client(transport=provider.transport())
    return anthropic.Anthropic(api_key="sk-test", http_client=http, max_retries=0)


def async_client(provider: Provider) -> anthropic.AsyncAnthropic:
    http = httpx2.AsyncClient(transport=provider.async_transport())
    return anthropic.AsyncAnthropic(api_key="sk-test", http_client=http, max_retries=0)


def assert_charged(meter: CreditMeter, credits: int, usage: dict[str, int]) -> None:
    balance = meter.balance(ACCOUNT)
    assert (balance.available, balance.held) == (CREDITS - credits, 0)
    [record] = meter.usage(ACCOUNT).data
    assert (record.model, record.credits, record.quantities) == (MODEL, credits, usage)
    assert meter.pending_holds() == 0


def assert_untouched(meter: CreditMeter) -> None:
    balance = meter.balance(ACCOUNT)
    assert (balance.available, balance.held) == (CREDITS, 0)
    assert not meter.usage(ACCOUNT).data
    assert meter.pending_holds() == 0


def test_a_message_is_settled_from_its_usage_with_cache_and_thinking_tokens(
    meter: CreditMeter, wrapped_meter: Meter, account: str
) -> None:
    provider = Provider(httpx2.Response(200, json=message()))
    wrapped = metered(client(provider), wrapped_meter, account=account, feature=CHAT)
    reply = wrapped.messages.create(
        model="claude-sonnet-4", system=SYSTEM, messages=MESSAGES, max_tokens=100
    )
    assert reply.content[0].type == "text"
    assert_charged(meter, CHARGED, SETTLED)
    hold = meter.hold(meter.usage(ACCOUNT).data[0].hold_id or "")
    assert hold.credits == 10 + 100 * 2


def test_cache_and_thinking_tokens_count_as_input_and_output_where_not_priced(
    meter: CreditMeter, wrapped_meter: Meter, account: str
) -> None:
    provider = Provider(httpx2.Response(200, json=message()))
    wrapped = metered(client(provider), wrapped_meter, account=account, feature=PLAIN)
    wrapped.messages.create(model="claude-sonnet-4", messages=MESSAGES, max_tokens=100)
    assert_charged(meter, 1000 + 500 * 2, {"input_tokens": 1000, "output_tokens": 500})


def test_a_refused_or_failed_message_costs_nothing(
    meter: CreditMeter, wrapped_meter: Meter, account: str
) -> None:
    failure = {"type": "error", "error": {"type": "api_error", "message": "down"}}
    provider = Provider(httpx2.Response(500, json=failure))
    wrapped = metered(client(provider), wrapped_meter, account=account, feature=CHAT)
    with pytest.raises(InsufficientCredits):
        wrapped.messages.create(model="claude-sonnet-4", messages=MESSAGES, max_tokens=CREDITS)
    assert provider.requests == []
    with pytest.raises(anthropic.InternalServerError):
        wrapped.messages.create(model="claude-sonnet-4", messages=MESSAGES, max_tokens=100)
    assert_untouched(meter)


def test_a_stream_is_settled_from_its_start_and_delta_usage_or_released(
    meter: CreditMeter, wrapped_meter: Meter, account: str
) -> None:
    provider = Provider(streamed(events(broken=True)), streamed(events()), streamed(events()))
    wrapped = metered(client(provider), wrapped_meter, account=account, feature=CHAT)
    params: dict[str, Any] = {
        "model": "claude-sonnet-4",
        "system": SYSTEM,
        "messages": MESSAGES,
        "max_tokens": 100,
        "stream": True,
    }
    with pytest.raises(anthropic.APIStatusError, match="Overloaded"):
        for _ in wrapped.messages.create(**params):
            pass
    assert_untouched(meter)
    with wrapped.messages.create(**params) as stream:
        assert next(stream).type == "message_start"
        assert meter.balance(ACCOUNT).held == 10 + 200
    assert_untouched(meter)
    kinds = [event.type for event in wrapped.messages.create(**params)]
    assert kinds[-2:] == ["message_delta", "message_stop"]
    assert_charged(meter, CHARGED, SETTLED)


def test_the_async_client_holds_settles_and_releases_alike(
    meter: CreditMeter, wrapped_meter: Meter, account: str
) -> None:
    provider = Provider(
        httpx2.Response(200, json=message()), streamed(events(broken=True)), streamed(events())
    )
    wrapped = metered(async_client(provider), wrapped_meter, account=account, feature=CHAT)
    params: dict[str, Any] = {
        "model": "claude-sonnet-4",
        "system": SYSTEM,
        "messages": MESSAGES,
        "max_tokens": 100,
    }

    async def calls() -> None:
        await wrapped.messages.create(**params)
        assert meter.balance(ACCOUNT).available == CREDITS - CHARGED
        with pytest.raises(anthropic.APIStatusError, match="Overloaded"):
            async for _ in await wrapped.messages.create(**params, stream=True):
                pass
        assert meter.balance(ACCOUNT).held == 0
        async for _ in await wrapped.messages.create(**params, stream=True):
            assert meter.balance(ACCOUNT).held == 10 + 200
        with pytest.raises(InsufficientCredits):
            await wrapped.messages.create(**{**params, "max_tokens": CREDITS})

    asyncio.run(calls())
    assert meter.balance(ACCOUNT).available == CREDITS - 2 * CHARGED
    assert meter.pending_holds() == 0
    assert len(provider.requests) == 3


def read_through(manager: Any) -> None:
    with manager as stream:
        stream.until_done()


async def read_through_async(manager: Any) -> None:
    async with manager as stream:
        await stream.until_done()


def test_the_stream_helper_settles_an_ended_message_and_releases_any_other(
    meter: CreditMeter, wrapped_meter: Meter, account: str
) -> None:
    provider = Provider(streamed(events(broken=True)), streamed(events()), streamed(events()))
    wrapped = metered(client(provider), wrapped_meter, account=account, feature=CHAT)
    params: dict[str, Any] = {
        "model": "claude-sonnet-4",
        "system": SYSTEM,
        "messages": MESSAGES,
        "max_tokens": 100,
    }
    with pytest.raises(InsufficientCredits):
        read_through(wrapped.messages.stream(**{**params, "max_tokens": CREDITS}))
    assert provider.requests == []
    with pytest.raises(anthropic.APIStatusError, match="Overloaded"):
        read_through(wrapped.messages.stream(**params))
    assert_untouched(meter)
    with wrapped.messages.stream(**params) as stream:
        assert next(iter(stream)).type == "message_start"
        assert meter.balance(ACCOUNT).held == 10 + 200
    assert_untouched(meter)
    with wrapped.messages.stream(**params) as stream:
        assert "".join(stream.text_stream) == "Hi"
        assert stream.get_final_message().usage.output_tokens == 500
    assert_charged(meter, CHARGED, SETTLED)


def test_the_async_stream_helper_settles_and_releases_alike(
    meter: CreditMeter, wrapped_meter: Meter, account: str
) -> None:
    provider = Provider(streamed(events(broken=True)), streamed(events()), streamed(events()))
    wrapped = metered(async_client(provider), wrapped_meter, account=account, feature=CHAT)
    params: dict[str, Any] = {"model": "claude-sonnet-4", "messages": MESSAGES, "max_tokens": 100}

    async def calls() -> None:
        with pytest.raises(InsufficientCredits):
            await read_through_async(wrapped.messages.stream(**{**params, "max_tokens": CREDITS}))
        with pytest.raises(anthropic.APIStatusError, match="Overloaded"):
            await read_through_async(wrapped.messages.stream(**params))
        async with wrapped.messages.stream(**params) as stream:
            async for event in stream:
                assert event.type == "message_start"
                break
        assert_untouched(meter)
        async with wrapped.messages.stream(**params) as stream:
            assert meter.balance(ACCOUNT).held == 8 + 100 * 2
            message = await stream.get_final_message()
            assert message.stop_reason == "end_turn"

    asyncio.run(calls())
    assert_charged(meter, CHARGED, SETTLED)
    assert len(provider.requests) == 3
