"""OpenAI's chat completions format, which LiteLLM speaks too: a call's estimate, the
usage its response or stream reports, and the stream option that makes it report one."""

from __future__ import annotations

from typing import Any

from creditmeter.integrations._metering import Metering, Reported, Tokens, texts


def with_usage(params: dict[str, Any]) -> dict[str, Any]:
    """A chat stream asks for its usage in its last chunk (a responses stream always
    reports it)."""
    if not params.get("stream"):
        return params
    options = dict(params.get("stream_options") or {})
    options.setdefault("include_usage", True)
    return {**params, "stream_options": options}


def chat_estimate(metering: Metering, params: dict[str, Any]) -> dict[str, int]:
    limit = params.get("max_completion_tokens") or params.get("max_tokens")
    choices = params.get("n") or 1
    estimate = metering.estimate(texts(params.get("messages")), limit)
    if limit is None and choices == 1:
        return estimate
    return {**estimate, "output_tokens": estimate["output_tokens"] * choices}


def chat_usage(response: Any) -> Reported:
    """A chat completion's usage, or a stream chunk's (the last one carries it)."""
    usage = getattr(response, "usage", None)
    if usage is None:
        return None
    prompt = usage.prompt_tokens_details
    completion = usage.completion_tokens_details
    tokens = Tokens(
        input=usage.prompt_tokens,
        output=usage.completion_tokens,
        cached=(prompt and prompt.cached_tokens) or 0,
        # LiteLLM's details leave out a count it was not given.
        cache_write=getattr(prompt, "cache_write_tokens", None) or 0,
        reasoning=(completion and completion.reasoning_tokens) or 0,
    )
    return tokens, response.model
