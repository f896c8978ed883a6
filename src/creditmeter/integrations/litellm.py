"""Meter LiteLLM: ``metered(meter, account=…, feature=…)`` for the SDK, and
:class:`ProxyMetering` (a ``CustomLogger``) for the LiteLLM proxy.

In the SDK, LiteLLM's callbacks only observe a call: an exception a callback raises is
logged and the call goes on, so no callback can refuse one. The SDK is metered by
wrapping its functions instead: ``completion`` and ``acompletion`` authorize an estimate
before the call (``InsufficientCredits`` before LiteLLM is called), settle the response's
own usage after it, and release the hold if the call raises. A stream keeps its hold
while it is read and is settled from its final usage (``stream_options={"include_usage":
True}`` is added when absent); one that breaks or is closed first is released.

The proxy does honour an exception from a callback's ``async_pre_call_hook``: it answers
the request with it. :class:`ProxyMetering` authorizes there (a refusal is an
``HTTPException`` with the API's status and error body), settles from the usage LiteLLM
logs on success, and releases in ``async_post_call_failure_hook``, which the proxy calls
once for a request that fails.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import litellm
from fastapi import HTTPException
from litellm.integrations.custom_logger import CustomLogger

from creditmeter.api.errors import body_of, status_of
from creditmeter.core.errors import CreditMeterError
from creditmeter.integrations._calls import metered as metered_create
from creditmeter.integrations._calls import metered_async
from creditmeter.integrations._chat import chat_estimate, chat_usage, with_usage
from creditmeter.integrations._metering import (
    DEFAULT_OUTPUT_TOKENS,
    Meter,
    MeteredCall,
    Metering,
    TokenCounter,
    reported,
)
from creditmeter.integrations._streams import LastUsage

METERED_CALLS = frozenset({"completion", "acompletion"})
"""The proxy's call types that are metered: chat completions."""


class MeteredLiteLLM:
    """LiteLLM's ``completion`` and ``acompletion``, charged to one account for one
    feature; they take and return what LiteLLM's own do."""

    def __init__(self, metering: Metering) -> None:
        self.metering = metering
        self.completion: Callable[..., Any] = metered_create(
            litellm.completion, metering, chat_estimate, _reading, with_usage, model_name
        )
        self.acompletion: Callable[..., Any] = metered_async(
            litellm.acompletion, metering, chat_estimate, _reading, with_usage, model_name
        )


def metered(
    meter: Meter,
    *,
    account: str,
    feature: str,
    member: str | None = None,
    count_tokens: TokenCounter | None = None,
    default_output_tokens: int = DEFAULT_OUTPUT_TOKENS,
) -> MeteredLiteLLM:
    """LiteLLM's completion functions, charged to ``account`` for ``feature`` (see
    :class:`~creditmeter.integrations._metering.Metering` for the estimate)."""
    return MeteredLiteLLM(
        Metering(meter, account, feature, member, count_tokens, default_output_tokens)
    )


def model_name(params: dict[str, Any]) -> str | None:
    """The model a call is held for: LiteLLM's ``provider/model`` without the provider
    (``openai/gpt-4o`` is ``gpt-4o``); a name LiteLLM cannot place (a proxy's model
    group, say) as it is."""
    model = params.get("model")
    if not isinstance(model, str):
        return None
    try:
        name: str = litellm.get_llm_provider(model)[0]
    except Exception:  # LiteLLM raises its BadRequestError for a name it cannot place.
        return model
    return name


def _reading() -> LastUsage:
    return LastUsage(chat_usage)


AccountOf = Callable[[Any, dict[str, Any]], str]
"""The account a proxy request is charged to, from its key (LiteLLM's
``UserAPIKeyAuth``) and its body: e.g. ``lambda key, data: key.team_id``."""


class ProxyMetering(CustomLogger):
    """A LiteLLM proxy callback that meters every chat completion routed through it.

    ``account`` names the account a request is charged to; the hold is made before the
    model is called and kept, by the request's ``litellm_call_id``, until LiteLLM logs
    the call's success (settled from its usage, a stream's included) or the proxy
    reports the request failed (released). Requests of other kinds pass unmetered.
    """

    def __init__(
        self,
        meter: Meter,
        *,
        feature: str,
        account: AccountOf,
        count_tokens: TokenCounter | None = None,
        default_output_tokens: int = DEFAULT_OUTPUT_TOKENS,
    ) -> None:
        super().__init__()
        self.meter = meter
        self.feature = feature
        self.account = account
        self.count_tokens = count_tokens
        self.default_output_tokens = default_output_tokens
        self.calls: dict[str, MeteredCall] = {}
        """The held calls, by LiteLLM's call id."""

    async def async_pre_call_hook(
        self, user_api_key_dict: Any, cache: Any, data: dict[str, Any], call_type: str
    ) -> dict[str, Any]:
        if call_type not in METERED_CALLS:
            return data
        metering = Metering(
            self.meter,
            self.account(user_api_key_dict, data),
            self.feature,
            count_tokens=self.count_tokens,
            default_output_tokens=self.default_output_tokens,
        )
        try:
            call = await metering.authorize_async(chat_estimate(metering, data), model_name(data))
        except CreditMeterError as error:
            raise HTTPException(status_of(error), detail=body_of(error)) from error
        self.calls[data["litellm_call_id"]] = call
        return data

    async def async_log_success_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        call = self.calls.pop(kwargs.get("litellm_call_id") or "", None)
        if call is not None:
            response = kwargs.get("complete_streaming_response") or response_obj
            await call.settle_async(*reported(chat_usage(response)))

    async def async_post_call_failure_hook(
        self,
        request_data: dict[str, Any],
        original_exception: Exception,
        user_api_key_dict: Any,
        traceback_str: str | None = None,
    ) -> None:
        call = self.calls.pop(request_data.get("litellm_call_id") or "", None)
        if call is not None:
            await call.release_async()
