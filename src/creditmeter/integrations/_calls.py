"""An SDK's create method, metered: authorize the estimate, call, settle or release."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from creditmeter.integrations._metering import Metering, reported
from creditmeter.integrations._streams import AsyncMeteredStream, MeteredStream, Reading

Estimate = Callable[[Metering, dict[str, Any]], dict[str, int]]
Prepare = Callable[[dict[str, Any]], dict[str, Any]]
"""The parameters sent to the SDK, from those the caller gave."""
ModelOf = Callable[[dict[str, Any]], str | None]
"""The model a call's hold is made for, from the parameters the caller gave."""


def requested(params: dict[str, Any]) -> str | None:
    """The call's ``model`` parameter."""
    model = params.get("model")
    return model if isinstance(model, str) else None


def metered(
    create: Callable[..., Any],
    metering: Metering,
    estimate: Estimate,
    reading: Callable[[], Reading],
    prepare: Prepare = dict,
    model: ModelOf = requested,
) -> Callable[..., Any]:
    """``create`` behind a hold; ``reading`` finds the usage in a response or a stream."""

    def metered_create(**params: Any) -> Any:
        call = metering.authorize(estimate(metering, params), model(params))
        try:
            result = create(**prepare(params))
        except BaseException:
            call.release()
            raise
        if params.get("stream"):
            return MeteredStream(result, call, reading())
        found = reading()
        found.read(result)
        call.settle(*reported(found.reported()))
        return result

    return metered_create


def metered_async(
    create: Callable[..., Any],
    metering: Metering,
    estimate: Estimate,
    reading: Callable[[], Reading],
    prepare: Prepare = dict,
    model: ModelOf = requested,
) -> Callable[..., Any]:
    """:func:`metered` for an async SDK."""

    async def metered_create(**params: Any) -> Any:
        call = await metering.authorize_async(estimate(metering, params), model(params))
        try:
            result = await create(**prepare(params))
        except BaseException:
            await call.release_async()
            raise
        if params.get("stream"):
            return AsyncMeteredStream(result, call, reading())
        found = reading()
        found.read(result)
        await call.settle_async(*reported(found.reported()))
        return result

    return metered_create


def keep_raw_unmetered(resource: Any) -> None:
    """Bind ``with_raw_response`` and ``with_streaming_response`` (each made once, on
    first use) to the SDK's own ``create``: they answer raw HTTP responses, which the
    wrapper does not read, so they stay unmetered rather than half metered."""
    resource.with_raw_response  # noqa: B018
    resource.with_streaming_response  # noqa: B018
