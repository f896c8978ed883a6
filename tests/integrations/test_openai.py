"""The OpenAI wrapper, with the real SDK over a mock transport: what it holds, settles and
releases for plain, streaming and failing calls, sync and async."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import httpx2
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from creditmeter import CreditMeter, InsufficientCredits
from creditmeter.integrations._metering import Meter
from creditmeter.integrations.openai import metered
from tests.integrations.conftest import ACCOUNT, CHAT, CREDITS, PLAIN, Provider, sse, streamed

MODEL = "gpt-4o-2024-08-06"
USAGE = {
    "prompt_tokens": 1000,
    "completion_tokens": 500,
    "total_tokens": 1500,
    "prompt_tokens_details": {"cached_tokens": 400, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 100, "audio_tokens": 0},
}
CHARGED = 600 + 400 * 2 + 200 + 300
"""USAGE on CHAT: 600 input and 400 output tokens, 400 cached at 0.5, 100 reasoning at 3."""
MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "x" * 40}]
"""Ten tokens by the default estimate."""


def completion(**fields: Any) -> httpx2.Response:
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello"},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": USAGE,
        **fields,
    }
    return httpx2.Response(200, json=body)


def chunk(content: str | None = None, usage: dict[str, Any] | None = None) -> dict[str, Any]:
    choices = [] if content is None else [{"index": 0, "delta": {"content": content}}]
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": MODEL,
        "choices": choices,
    }
    if usage is not None:
        body["usage"] = usage
    return body


STREAM = sse(chunk("Hel"), chunk("lo"), chunk(usage=USAGE))


def client(provider: Provider) -> openai.OpenAI:
    http = httpx2.Client(transport=provider.transport())
    return openai.OpenAI(api_key="sk-test", http_client=http, max_retries=0)


def async_client(provider: Provider) -> openai.AsyncOpenAI:
    http = httpx2.AsyncClient(transport=provider.async_transport())
    return openai.AsyncOpenAI(api_key="sk-test", http_client=http, max_retries=0)


def assert_charged(meter: CreditMeter, credits: int, usage: dict[str, int]) -> None:
    balance = meter.balance(ACCOUNT)
    assert (balance.available, balance.held) == (CREDITS - credits, 0)
    [record] = meter.usage(ACCOUNT).data
    assert (record.model, record.credits, record.success) == (MODEL, credits, True)
    assert record.quantities == usage
    assert meter.pending_holds() == 0


def assert_untouched(meter: CreditMeter) -> None:
    balance = meter.balance(ACCOUNT)
    assert (balance.available, balance.held) == (CREDITS, 0)
    assert not meter.usage(ACCOUNT).data
    assert meter.pending_holds() == 0


def test_a_completion_is_settled_from_its_usage_with_each_priced_token_kind(
    meter: CreditMeter, wrapped_meter: Meter, account: str
) -> None:
    provider = Provider(completion())
    wrapped = metered(client(provider), wrapped_meter, account=account, feature=CHAT)
    response = wrapped.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=100)
    assert response.choices[0].message.content == "Hello"
    assert_charged(
        meter,
        CHARGED,
        {"input_tokens": 600, "cached_tokens": 400, "output_tokens": 400, "reasoning_tokens": 100},
    )
    [hold] = [meter.hold(meter.usage(ACCOUNT).data[0].hold_id or "")]
    assert hold.credits == 10 + 100 * 2


def test_the_hold_covers_every_choice_asked_for_and_names_the_member(
    meter: CreditMeter, wrapped_meter: Meter, account: str
) -> None:
    meter.add_member(ACCOUNT, "ann")
    provider = Provider(completion())
    wrapped = metered(client(provider), wrapped_meter, account=account, feature=CHAT, member="ann")
    wrapped.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=100, n=3)
    [record] = meter.usage(ACCOUNT).data
    assert record.member == "ann"
    assert meter.hold(record.hold_id or "").credits == 10 + 3 * 100 * 2


def test_token_kinds_a_feature_does_not_price_count_as_input_and_output(
    meter: CreditMeter, wrapped_meter: Meter, account: str
) -> None:
    provider = Provider(completion())
    wrapped = metered(client(provider), wrapped_meter, account=account, feature=PLAIN)
    wrapped.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert_charged(meter, 1000 + 500 * 2, {"input_tokens": 1000, "output_tokens": 500})


def test_a_cost_plus_feature_is_settled_with_each_token_kind_at_the_model_s_price(
    meter: CreditMeter, wrapped_meter: Meter, account: str
) -> None:
    meter.sync_prices(["openai"])
    meter.put_feature("llm.cost", cost_plus=True)
    provider = Provider(completion())
    wrapped = metered(client(provider), wrapped_meter, account=account, feature="llm.cost")
    wrapped.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=100)
    [record] = meter.usage(ACCOUNT).data
    assert record.quantities == {
        "input_tokens": 600,
        "cached_tokens": 400,
        "output_tokens": 400,
        "reasoning_tokens": 100,
    }
    # gpt-4o-2024-08-06: $2.50 input, $1.25 cached, $10 output (reasoning is output).
    assert record.provider_cost == Decimal("0.007")
    assert record.credits == 7


def test_a_call_the_account_cannot_pay_for_never_reaches_the_provider(
    meter: CreditMeter, wrapped_meter: Meter, account: str
) -> None:
    provider = Provider(completion())
    wrapped = metered(client(provider), wrapped_meter, account=account, feature=CHAT)
    with pytest.raises(InsufficientCredits):
        wrapped.chat.completions.create(
            model="gpt-4o",
            messages=MESSAGES,
            max_completion_tokens=CREDITS,
        )
    assert provider.requests == []
    assert_untouched(meter)


def test_a_failed_call_releases_its_hold(
    meter: CreditMeter, wrapped_meter: Meter, account: str
) -> None:
    provider = Provider(httpx2.Response(500, json={"error": {"message": "down"}}))
    wrapped = metered(client(provider), wrapped_meter, account=account, feature=CHAT)
    with pytest.raises(openai.InternalServerError):
        wrapped.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert_untouched(meter)


def test_a_stream_holds_while_read_and_settles_from_its_last_chunk(
    meter: CreditMeter, wrapped_meter: Meter, account: str
) -> None:
    provider = Provider(streamed(STREAM))
    wrapped = metered(client(provider), wrapped_meter, account=account, feature=CHAT)
    stream = wrapped.chat.completions.create(
        model="gpt-4o",
        messages=MESSAGES,
        max_tokens=100,
        stream=True,
    )
    assert provider.requests[0]["stream_options"] == {"include_usage": True}
    assert next(stream).choices[0].delta.content == "Hel"
    assert meter.balance(ACCOUNT).held == 210
    assert [c.choices[0].delta.content for c in stream if c.choices] == ["lo"]
    assert_charged(
        meter,
        CHARGED,
        {"input_tokens": 600, "cached_tokens": 400, "output_tokens": 400, "reasoning_tokens": 100},
    )


def test_a_stream_that_breaks_or_is_closed_early_is_released(
    meter: CreditMeter, wrapped_meter: Meter, account: str
) -> None:
    broken = sse(chunk("Hel"), {"error": {"message": "overloaded"}}, done=False)
    provider = Provider(streamed(broken), streamed(STREAM))
    wrapped = metered(client(provider), wrapped_meter, account=account, feature=CHAT)
    params: dict[str, Any] = {"model": "gpt-4o", "messages": MESSAGES, "stream": True}
    with pytest.raises(openai.APIError, match="overloaded"):
        for _ in wrapped.chat.completions.create(**params):
            pass
    assert_untouched(meter)
    with wrapped.chat.completions.create(**params) as stream:
        next(stream)
        assert meter.balance(ACCOUNT).held > 0
    assert_untouched(meter)


def test_a_responses_call_is_settled_from_its_usage(
    meter: CreditMeter, wrapped_meter: Meter, account: str
) -> None:
    usage = {
        "input_tokens": 1000,
        "input_tokens_details": {"cached_tokens": 400},
        "output_tokens": 500,
        "output_tokens_details": {"reasoning_tokens": 100},
        "total_tokens": 1500,
    }
    body = {
        "id": "resp_1",
        "object": "response",
        "created_at": 1,
        "model": MODEL,
        "status": "completed",
        "output": [],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": usage,
    }
    completed = {"type": "response.completed", "sequence_number": 1, "response": body}
    provider = Provider(httpx2.Response(200, json=body), streamed(sse(completed, done=False)))
    wrapped = metered(client(provider), wrapped_meter, account=account, feature=PLAIN)
    wrapped.responses.create(model="gpt-4o", input="x" * 40, max_output_tokens=100)
    assert_charged(meter, 1000 + 500 * 2, {"input_tokens": 1000, "output_tokens": 500})
    for _ in wrapped.responses.create(model="gpt-4o", input="x" * 40, stream=True):
        pass
    assert "stream_options" not in provider.requests[1]
    assert meter.balance(ACCOUNT).available == CREDITS - 2 * (1000 + 500 * 2)


def test_the_async_client_holds_settles_and_releases_alike(
    meter: CreditMeter, wrapped_meter: Meter, account: str
) -> None:
    broken = sse(chunk("Hel"), {"error": {"message": "overloaded"}}, done=False)
    provider = Provider(completion(), streamed(broken), streamed(STREAM))
    wrapped = metered(async_client(provider), wrapped_meter, account=account, feature=CHAT)
    params: dict[str, Any] = {"model": "gpt-4o", "messages": MESSAGES}

    async def calls() -> None:
        await wrapped.chat.completions.create(**params)
        assert meter.balance(ACCOUNT).available == CREDITS - CHARGED
        with pytest.raises(openai.APIError, match="overloaded"):
            async for _ in await wrapped.chat.completions.create(**params, stream=True):
                pass
        assert meter.balance(ACCOUNT).held == 0
        stream = await wrapped.chat.completions.create(**params, stream=True)
        async with stream:
            assert (await anext(stream)).choices[0].delta.content == "Hel"
            assert meter.balance(ACCOUNT).held > 0
            async for _ in stream:
                pass
        with pytest.raises(InsufficientCredits):
            await wrapped.chat.completions.create(**params, max_tokens=CREDITS)

    asyncio.run(calls())
    assert meter.balance(ACCOUNT).available == CREDITS - 2 * CHARGED
    assert meter.pending_holds() == 0
    assert len(provider.requests) == 3


def test_raw_responses_are_the_sdks_own_and_not_metered(
    meter: CreditMeter, wrapped_meter: Meter, account: str
) -> None:
    provider = Provider(completion(), streamed(STREAM))
    wrapped = metered(client(provider), wrapped_meter, account=account, feature=CHAT)
    raw = wrapped.chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES)
    assert raw.parse().model == MODEL
    with wrapped.chat.completions.with_streaming_response.create(
        model="gpt-4o", messages=MESSAGES, stream=True
    ) as streaming:
        assert [c.model for c in streaming.parse()] == [MODEL] * 3
    assert_untouched(meter)
