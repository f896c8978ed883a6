"""Meter an OpenAI client: ``metered(OpenAI(), meter, account=…, feature=…)``.

The wrapped client is a copy of the given one whose ``chat.completions.create`` and
``responses.create`` authorize an estimate before the request (``InsufficientCredits``
before the SDK is called), settle the response's own usage after it, and release the
hold if the request raises. A stream keeps its hold while it is read and is settled from
its final usage (``stream_options={"include_usage": True}`` is added to a chat stream that
does not ask for it); a stream that breaks or is closed before its usage is released.
"""

from __future__ import annotations

from typing import Any, TypeVar

from openai import AsyncOpenAI, OpenAI

from creditmeter.integrations._calls import keep_raw_unmetered, metered_async
from creditmeter.integrations._calls import metered as metered_create
from creditmeter.integrations._chat import chat_estimate, chat_usage, with_usage
from creditmeter.integrations._metering import (
    DEFAULT_OUTPUT_TOKENS,
    Meter,
    Metering,
    Reported,
    TokenCounter,
    Tokens,
    texts,
)
from creditmeter.integrations._streams import LastUsage

Client = TypeVar("Client", OpenAI, AsyncOpenAI)


def metered(
    client: Client,
    meter: Meter,
    *,
    account: str,
    feature: str,
    member: str | None = None,
    count_tokens: TokenCounter | None = None,
    default_output_tokens: int = DEFAULT_OUTPUT_TOKENS,
) -> Client:
    """A copy of ``client`` whose model calls are charged to ``account`` for ``feature``
    (see :class:`~creditmeter.integrations._metering.Metering` for the estimate)."""
    metering = Metering(meter, account, feature, member, count_tokens, default_output_tokens)
    wrapped = client.with_options()
    completions, responses = wrapped.chat.completions, wrapped.responses
    for resource in (completions, responses):
        keep_raw_unmetered(resource)
    meter_create = metered_async if isinstance(wrapped, AsyncOpenAI) else metered_create
    completions.create = meter_create(  # type: ignore[method-assign]
        completions.create, metering, chat_estimate, lambda: LastUsage(chat_usage), with_usage
    )
    responses.create = meter_create(  # type: ignore[method-assign]
        responses.create, metering, _responses_estimate, lambda: LastUsage(_responses_usage)
    )
    return wrapped


def _responses_estimate(metering: Metering, params: dict[str, Any]) -> dict[str, int]:
    prompt = [*texts(params.get("instructions")), *texts(params.get("input"))]
    return metering.estimate(prompt, params.get("max_output_tokens"))


def _responses_usage(result: Any) -> Reported:
    """A response's usage, or that of the ``response.completed`` (or ``.incomplete``)
    event that ends a stream."""
    response = getattr(result, "response", result)
    usage = getattr(response, "usage", None)
    if usage is None:
        return None
    tokens = Tokens(
        input=usage.input_tokens,
        output=usage.output_tokens,
        cached=usage.input_tokens_details.cached_tokens or 0,
        reasoning=usage.output_tokens_details.reasoning_tokens or 0,
    )
    return tokens, response.model
