"""The LiteLLM integration, with the real litellm package: the SDK wrapper over the OpenAI
provider's real client on a mock transport (plain, streaming and failing calls, sync and
async), and the proxy callback driven as the proxy drives it.

The proxy itself needs LiteLLM's ``proxy`` extra (Redis, Prisma, …), which is not
installed; its callback is called as ``ProxyLogging`` calls it — ``async_pre_call_hook``
with the request's body and key, whose exception the proxy answers the request with,
and ``async_post_call_failure_hook`` for a request that failed — while its success event
comes from LiteLLM's own logging of a real ``acompletion``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx2
import litellm
import openai
import pytest
from fastapi import HTTPException
from litellm.caching.dual_cache import DualCache
from litellm.exceptions import InternalServerError
from litellm.proxy._types import UserAPIKeyAuth

from creditmeter import CreditMeter, InsufficientCredits
from creditmeter.integrations._metering import Meter
from creditmeter.integrations.litellm import ProxyMetering, metered, model_name
from tests.integrations.conftest import ACCOUNT, CHAT, CREDITS, PLAIN, Provider, sse, streamed

MODEL = "gpt-4o-2024-08-06"
USAGE = {
    "prompt_tokens": 1000,
    "completion_tokens": 500,
    "total_tokens": 1500,
    "prompt_tokens_details": {"cached_tokens": 400},
    "completion_tokens_details": {"reasoning_tokens": 100},
}
CHARGED = 600 + 400 * 2 + 200 + 300
"""USAGE on CHAT: 600 input and 400 output tokens, 400 cached at 0.5, 100 reasoning at 3."""
SETTLED = {"input_tokens": 600, "cached_tokens": 400, "output_tokens": 400, "reasoning_tokens": 100}
MESSAGES = [{"role": "user", "content": "x" * 40}]
"""Ten tokens by the default estimate."""
HELD = 10 + 100 * 2
"""The hold of a call with MESSAGES and ``max_tokens=100`` on CHAT."""

litellm.suppress_debug_info = True
pytestmark = [
    # What LiteLLM itself does with pydantic, warned of by pydantic.
    pytest.mark.filterwarnings("ignore:.*using the `ReadOnly` qualifier:UserWarning"),
    pytest.mark.filterwarnings(
        "ignore:Accessing the 'model_.*fields' attribute on the instance:DeprecationWarning"
    ),
]


@pytest.fixture(autouse=True)
def event_loop_for_litellm() -> Iterator[None]:
    """The main thread's event loop, closed after the test: LiteLLM's timing of a
    synchronous call asks for one (``asyncio.get_event_loop()``) and leaves it open."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield
    loop.close()
    asyncio.set_event_loop(None)


def completion() -> httpx2.Response:
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
            }
        ],
        "usage": USAGE,
    }
    return httpx2.Response(200, json=body)


def chunk(
    content: str | None = None, usage: dict[str, Any] | None = None, finish: str | None = None
) -> dict[str, Any]:
    delta = {"index": 0, "delta": {"content": content}, "finish_reason": finish}
    choices = [] if content is None else [delta]
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


STREAM = sse(chunk("Hel"), chunk("lo", finish="stop"), chunk(usage=USAGE))
BROKEN = sse(chunk("Hel"), {"error": {"message": "overloaded"}}, done=False)
FAILED = httpx2.Response(500, json={"error": {"message": "down"}})


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
    assert (record.credits, record.quantities) == (credits, usage)
    assert (record.model or "").startswith("gpt-4o")
    assert meter.pending_holds() == 0


def assert_untouched(meter: CreditMeter) -> None:
    balance = meter.balance(ACCOUNT)
    assert (balance.available, balance.held) == (CREDITS, 0)
    assert not meter.usage(ACCOUNT).data
    assert meter.pending_holds() == 0


def test_the_provider_prefix_is_not_part_of_the_model_held_for() -> None:
    assert model_name({"model": "openai/gpt-4o"}) == "gpt-4o"
    assert model_name({"model": "claude-sonnet-4-20250514"}) == "claude-sonnet-4-20250514"
    assert model_name({"model": "team-default"}) == "team-default"
    assert model_name({}) is None


def test_a_completion_is_settled_from_its_usage_with_each_priced_token_kind(
    meter: CreditMeter, wrapped_meter: Meter, account: str
) -> None:
    provider = Provider(completion())
    llm = metered(wrapped_meter, account=account, feature=CHAT)
    reply = llm.completion(
        model="openai/gpt-4o", messages=MESSAGES, max_tokens=100, client=client(provider)
    )
    assert reply.choices[0].message.content == "Hello"
    assert_charged(meter, CHARGED, SETTLED)
    assert meter.usage(ACCOUNT).data[0].model == MODEL
    assert meter.hold(meter.usage(ACCOUNT).data[0].hold_id or "").credits == HELD


def test_litellm_s_mock_response_is_settled_from_the_usage_it_reports(
    meter: CreditMeter, account: str
) -> None:
    llm = metered(meter, account=account, feature=PLAIN)
    llm.completion(model="gpt-4o", messages=MESSAGES, mock_response="Hi")
    [record] = meter.usage(ACCOUNT).data
    assert record.model == "gpt-4o"
    assert record.quantities == {"input_tokens": 10, "output_tokens": 20}


def test_a_refused_or_failed_completion_costs_nothing(
    meter: CreditMeter, wrapped_meter: Meter, account: str
) -> None:
    provider = Provider(FAILED)
    llm = metered(wrapped_meter, account=account, feature=CHAT)
    params: dict[str, Any] = {"model": "openai/gpt-4o", "messages": MESSAGES}
    with pytest.raises(InsufficientCredits):
        llm.completion(**params, max_tokens=CREDITS, client=client(provider))
    assert provider.requests == []
    with pytest.raises(InternalServerError):
        llm.completion(**params, max_tokens=100, client=client(provider), num_retries=0)
    assert_untouched(meter)


def test_a_stream_asks_for_its_usage_and_is_settled_from_it_or_released(
    meter: CreditMeter, wrapped_meter: Meter, account: str
) -> None:
    provider = Provider(streamed(BROKEN), streamed(STREAM), streamed(STREAM))
    llm = metered(wrapped_meter, account=account, feature=CHAT)
    params: dict[str, Any] = {
        "model": "openai/gpt-4o",
        "messages": MESSAGES,
        "max_tokens": 100,
        "stream": True,
        "client": client(provider),
    }
    with pytest.raises(openai.APIError, match="overloaded"):
        for _ in llm.completion(**params):
            pass
    assert_untouched(meter)
    with llm.completion(**params) as stream:
        next(stream)
        assert meter.balance(ACCOUNT).held == HELD
    assert_untouched(meter)
    chunks = list(llm.completion(**params))
    assert (
        "".join(part.delta.content or "" for chunk in chunks for part in chunk.choices) == "Hello"
    )
    assert_charged(meter, CHARGED, SETTLED)
    assert provider.requests[0]["stream_options"] == {"include_usage": True}


def test_acompletion_holds_settles_and_releases_alike(
    meter: CreditMeter, wrapped_meter: Meter, account: str
) -> None:
    provider = Provider(completion(), streamed(BROKEN), streamed(STREAM), FAILED)
    llm = metered(wrapped_meter, account=account, feature=CHAT)
    params: dict[str, Any] = {
        "model": "openai/gpt-4o",
        "messages": MESSAGES,
        "max_tokens": 100,
        "client": async_client(provider),
        "num_retries": 0,
    }

    async def calls() -> None:
        await llm.acompletion(**params)
        assert meter.balance(ACCOUNT).available == CREDITS - CHARGED
        with pytest.raises(openai.APIError, match="overloaded"):
            async for _ in await llm.acompletion(**params, stream=True):
                pass
        assert meter.balance(ACCOUNT).held == 0
        async for _ in await llm.acompletion(**params, stream=True):
            assert meter.balance(ACCOUNT).held == HELD
        with pytest.raises(InternalServerError):
            await llm.acompletion(**params)
        with pytest.raises(InsufficientCredits):
            await llm.acompletion(**{**params, "max_tokens": CREDITS})

    asyncio.run(calls())
    assert meter.balance(ACCOUNT).available == CREDITS - 2 * CHARGED
    assert (meter.balance(ACCOUNT).held, meter.pending_holds()) == (0, 0)
    assert len(provider.requests) == 4


@pytest.fixture
def proxy_metering(wrapped_meter: Meter) -> Iterator[ProxyMetering]:
    """The callback, registered with LiteLLM as the proxy's config registers it."""
    callback = ProxyMetering(wrapped_meter, feature=CHAT, account=lambda key, data: key.team_id)
    litellm.callbacks = [callback]
    yield callback
    litellm.logging_callback_manager.remove_callback_from_all_lists(callback)


KEY = UserAPIKeyAuth(api_key="sk-team", team_id=ACCOUNT)


def request(**fields: Any) -> dict[str, Any]:
    """A request's body as the proxy hands it to the pre-call hook."""
    return {
        "model": "gpt-4o",
        "messages": MESSAGES,
        "max_tokens": 100,
        "litellm_call_id": fields.pop("call_id", "call-1"),
        **fields,
    }


async def settled(meter: CreditMeter, callback: ProxyMetering) -> None:
    """Wait for LiteLLM's success logging, queued to a worker task of its own, to settle
    the hold (polled; no figure of speed is asserted)."""
    for _ in range(2000):
        if not callback.calls and meter.pending_holds() == 0:
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the success event was not logged")


def test_the_proxy_refuses_before_the_model_is_called_with_the_402_body(
    meter: CreditMeter, account: str, proxy_metering: ProxyMetering
) -> None:
    data = request(max_tokens=CREDITS)
    with pytest.raises(HTTPException) as refused:
        asyncio.run(proxy_metering.async_pre_call_hook(KEY, DualCache(), data, "acompletion"))
    assert refused.value.status_code == 402
    assert isinstance(refused.value.detail, dict)
    assert refused.value.detail["error"]["type"] == "insufficient_credits"
    assert_untouched(meter)
    assert proxy_metering.calls == {}


def test_the_proxy_settles_a_completion_and_a_stream_from_the_usage_litellm_logs(
    meter: CreditMeter, account: str, proxy_metering: ProxyMetering
) -> None:
    provider = Provider(completion(), streamed(STREAM))
    http = async_client(provider)

    async def requests() -> None:
        data = request()
        await proxy_metering.async_pre_call_hook(KEY, DualCache(), data, "acompletion")
        assert meter.balance(ACCOUNT).held == HELD
        await litellm.acompletion(**data, client=http)
        await settled(meter, proxy_metering)
        streaming = request(call_id="call-2", stream=True)
        await proxy_metering.async_pre_call_hook(KEY, DualCache(), streaming, "acompletion")
        async for _ in await litellm.acompletion(**streaming, client=http):
            pass
        await settled(meter, proxy_metering)

    asyncio.run(requests())
    assert meter.balance(ACCOUNT).available == CREDITS - 2 * CHARGED
    assert (meter.balance(ACCOUNT).held, meter.pending_holds()) == (0, 0)
    assert [record.quantities for record in meter.usage(ACCOUNT).data] == [SETTLED, SETTLED]


def test_the_proxy_releases_a_failed_request_and_lets_other_calls_pass(
    meter: CreditMeter, account: str, proxy_metering: ProxyMetering
) -> None:
    provider = Provider(FAILED)

    async def requests() -> None:
        data = request()
        await proxy_metering.async_pre_call_hook(KEY, DualCache(), data, "acompletion")
        try:
            await litellm.acompletion(**data, client=async_client(provider), num_retries=0)
        except InternalServerError as error:
            await proxy_metering.async_post_call_failure_hook(data, error, KEY)
        embedding = {"model": "text-embedding-3-small", "input": "x", "litellm_call_id": "e"}
        hook = proxy_metering.async_pre_call_hook
        assert await hook(KEY, DualCache(), embedding, "aembedding") == embedding

    asyncio.run(requests())
    assert_untouched(meter)
    assert proxy_metering.calls == {}
