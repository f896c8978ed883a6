"""Meter an Anthropic client: ``metered(Anthropic(), meter, account=…, feature=…)``.

The wrapped client is a copy of the given one whose ``messages.create`` authorizes an
estimate before the request (``InsufficientCredits`` before the SDK is called), settles
the message's own usage after it, and releases the hold if the request raises. A stream
(``stream=True``) keeps its hold while it is read and is settled from the usage of its
``message_start`` and ``message_delta`` events; one that breaks or is closed before its
end is released. ``messages.stream(…)``, the SDK's stream helper, is metered alike: its
``with`` block authorizes on entry (before the request), and on exit settles the
message's final usage, or releases the hold if the block raised or left before the
message ended.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from anthropic import Anthropic, AsyncAnthropic

from creditmeter.integrations._calls import keep_raw_unmetered, metered_async, requested
from creditmeter.integrations._calls import metered as metered_create
from creditmeter.integrations._metering import (
    DEFAULT_OUTPUT_TOKENS,
    Meter,
    MeteredCall,
    Metering,
    Reported,
    TokenCounter,
    Tokens,
    reported,
    texts,
)

Client = TypeVar("Client", Anthropic, AsyncAnthropic)


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
    """A copy of ``client`` whose messages are charged to ``account`` for ``feature``
    (see :class:`~creditmeter.integrations._metering.Metering` for the estimate)."""
    metering = Metering(meter, account, feature, member, count_tokens, default_output_tokens)
    wrapped = client.with_options()
    messages = wrapped.messages
    keep_raw_unmetered(messages)
    meter_create = metered_async if isinstance(wrapped, AsyncAnthropic) else metered_create
    messages.create = meter_create(  # type: ignore[method-assign]
        messages.create, metering, _estimate, MessageUsage
    )
    manager = (
        AsyncMeteredMessageStream if isinstance(wrapped, AsyncAnthropic) else MeteredMessageStream
    )
    messages.stream = _streaming(  # type: ignore[method-assign]
        messages.stream, metering, manager
    )
    return wrapped


def _streaming(
    stream: Callable[..., Any], metering: Metering, manager: Callable[..., Any]
) -> Callable[..., Any]:
    """``messages.stream`` whose context manager is metered (made on entry)."""

    def metered_stream(**params: Any) -> Any:
        return manager(stream, metering, params)

    return metered_stream


def _estimate(metering: Metering, params: dict[str, Any]) -> dict[str, int]:
    prompt = [*texts(params.get("system")), *texts(params.get("messages"))]
    return metering.estimate(prompt, params.get("max_tokens"))


class MessageUsage:
    """A message's usage: from the message itself, or from a stream's ``message_start``
    (input, cache and model) and ``message_delta`` events (output so far)."""

    def __init__(self) -> None:
        self._model: str | None = None
        self._usage: dict[str, int] = {}

    def read(self, event: Any) -> None:
        if event.type == "message":
            self._start(event)
        elif event.type == "message_start":
            self._start(event.message)
        elif event.type == "message_delta":
            self._add(event.usage)

    def reported(self) -> Reported:
        if self._model is None:
            return None
        usage = self._usage
        cached = usage.get("cache_read_input_tokens", 0)
        written = usage.get("cache_creation_input_tokens", 0)
        tokens = Tokens(
            input=usage.get("input_tokens", 0) + cached + written,
            output=usage.get("output_tokens", 0),
            cached=cached,
            cache_write=written,
            reasoning=usage.get("thinking_tokens", 0),
        )
        return tokens, self._model

    def _start(self, message: Any) -> None:
        self._model = message.model
        self._add(message.usage)

    def _add(self, usage: Any) -> None:
        """Counts an event reports replace those reported before (they are totals)."""
        for name in (
            "input_tokens",
            "output_tokens",
            "cache_read_input_tokens",
            "cache_creation_input_tokens",
        ):
            if (count := getattr(usage, name, None)) is not None:
                self._usage[name] = count
        details = getattr(usage, "output_tokens_details", None)
        if details is not None:
            self._usage["thinking_tokens"] = details.thinking_tokens


def _ended(stream: Any) -> MessageUsage | None:
    """The usage of a helper stream's message, if the message ended (its last
    ``message_delta`` gave its stop reason and final counts)."""
    try:
        message = stream.current_message_snapshot
    except AssertionError:  # No event was read.
        return None
    if message is None or message.stop_reason is None:
        return None
    usage = MessageUsage()
    usage.read(message)
    return usage


class MeteredMessageStream:
    """``messages.stream(…)``'s context manager, metered: entering it authorizes the
    estimate and opens the SDK's stream, which it returns; leaving it settles the
    message's usage, or releases the hold if the message did not end."""

    def __init__(
        self, stream: Callable[..., Any], metering: Metering, params: dict[str, Any]
    ) -> None:
        self._open = stream
        self._metering = metering
        self._params = params
        self._manager: Any = None
        self._stream: Any = None
        self._call: MeteredCall | None = None

    def __enter__(self) -> Any:
        call = self._metering.authorize(
            _estimate(self._metering, self._params), requested(self._params)
        )
        try:
            self._manager = self._open(**self._params)
            opened = self._manager.__enter__()
        except BaseException:
            call.release()
            raise
        self._call = call
        self._stream = opened
        return opened

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        call = self._call
        assert call is not None
        try:
            self._manager.__exit__(kind, error, traceback)
        finally:
            usage = None if error is not None else _ended(self._stream)
            if usage is None:
                call.release()
            else:
                call.settle(*reported(usage.reported()))


class AsyncMeteredMessageStream:
    """:class:`MeteredMessageStream` for ``AsyncAnthropic``: ``async with``."""

    def __init__(
        self, stream: Callable[..., Any], metering: Metering, params: dict[str, Any]
    ) -> None:
        self._open = stream
        self._metering = metering
        self._params = params
        self._manager: Any = None
        self._stream: Any = None
        self._call: MeteredCall | None = None

    async def __aenter__(self) -> Any:
        estimate = _estimate(self._metering, self._params)
        call = await self._metering.authorize_async(estimate, requested(self._params))
        try:
            self._manager = self._open(**self._params)
            opened = await self._manager.__aenter__()
        except BaseException:
            await call.release_async()
            raise
        self._call = call
        self._stream = opened
        return opened

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        call = self._call
        assert call is not None
        try:
            await self._manager.__aexit__(kind, error, traceback)
        finally:
            usage = None if error is not None else _ended(self._stream)
            if usage is None:
                await call.release_async()
            else:
                await call.settle_async(*reported(usage.reported()))
