"""What every SDK wrapper shares: the verbs it needs, the estimate, the usage it settles
and one call's hold from authorize to settle or release."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final, Protocol

from creditmeter.core.pricing import Feature
from creditmeter.core.records import Charge, Hold

Quantities = Mapping[str, int | str | Decimal]
TokenCounter = Callable[[str], int]

DEFAULT_OUTPUT_TOKENS: Final = 4096
"""The output estimated for a call that sets no output limit."""
CHARACTERS_PER_TOKEN: Final = 4
"""The default token count of a prompt: its characters / 4, rounded up."""

INPUT: Final = "input_tokens"
OUTPUT: Final = "output_tokens"
CACHED: Final = "cached_tokens"
CACHE_WRITE: Final = "cache_write_tokens"
REASONING: Final = "reasoning_tokens"


class Meter(Protocol):
    """The verbs a wrapper uses, which ``CreditMeter`` and ``CreditMeterClient`` share."""

    def authorize(
        self,
        account_id: str,
        feature: str,
        *,
        estimate: Quantities | None = None,
        model: str | None = None,
        member: str | None = None,
    ) -> Hold: ...

    def settle(
        self,
        hold_id: str,
        *,
        usage: Quantities | None = None,
        model: str | None = None,
        member: str | None = None,
    ) -> Charge: ...

    def release(self, hold_id: str) -> Hold: ...

    def features(self) -> list[Feature]: ...


@dataclass(frozen=True)
class Metering:
    """Whom a wrapped client's calls are charged to, and how their estimate is made.

    ``count_tokens`` counts a prompt's tokens (e.g. with tiktoken:
    ``lambda text: len(encoding.encode(text))``); by default a prompt is its characters
    / 4, rounded up. A call that sets no output limit is estimated at
    ``default_output_tokens``.
    """

    meter: Meter
    account: str
    feature: str
    member: str | None = None
    count_tokens: TokenCounter | None = None
    default_output_tokens: int = DEFAULT_OUTPUT_TOKENS

    def estimate(self, prompt: Iterable[str], output_tokens: int | None) -> dict[str, int]:
        text = "".join(prompt)
        counted = (
            self.count_tokens(text)
            if self.count_tokens is not None
            else math.ceil(len(text) / CHARACTERS_PER_TOKEN)
        )
        output = self.default_output_tokens if output_tokens is None else output_tokens
        return {INPUT: counted, OUTPUT: output}

    def authorize(self, estimate: Quantities, model: str | None) -> MeteredCall:
        hold = self.meter.authorize(
            self.account, self.feature, estimate=estimate, model=model, member=self.member
        )
        return MeteredCall(self, hold)

    async def authorize_async(self, estimate: Quantities, model: str | None) -> MeteredCall:
        return await asyncio.to_thread(self.authorize, estimate, model)


@dataclass(frozen=True)
class Tokens:
    """A response's usage: ``input`` counts every prompt token, cached and written to the
    cache included; ``output`` every generated token, reasoning included."""

    input: int
    output: int
    cached: int = 0
    cache_write: int = 0
    reasoning: int = 0

    def quantities(self, priced: Iterable[str]) -> dict[str, int]:
        """The usage to settle: cached, cache-write and reasoning tokens are units of their
        own where the feature prices them, else counted as input or output tokens."""
        units = set(priced)
        usage = {INPUT: self.input, OUTPUT: self.output}
        for unit, part, whole in (
            (CACHED, self.cached, INPUT),
            (CACHE_WRITE, self.cache_write, INPUT),
            (REASONING, self.reasoning, OUTPUT),
        ):
            if part and unit in units:
                usage[unit] = part
                usage[whole] -= part
        return usage


Reported = tuple[Tokens, str] | None
"""The usage and model a response or stream event reports, if it reports them."""
Usage = Callable[[Any], Reported]


def reported(found: Reported) -> tuple[Tokens | None, str | None]:
    """What to settle: no usage and no model when nothing was reported (the estimate)."""
    return (None, None) if found is None else found


class MeteredCall:
    """One model call's hold: settled once from the response's usage, or released."""

    def __init__(self, metering: Metering, hold: Hold) -> None:
        self.metering = metering
        self.hold = hold
        self.charge: Charge | None = None
        self.finished = False

    def settle(self, tokens: Tokens | None, model: str | None) -> None:
        """Charge the response's usage (the estimate when it reported none)."""
        if self.finished:
            return
        self.finished = True
        meter = self.metering.meter
        usage = None if tokens is None else tokens.quantities(self._priced(model))
        self.charge = meter.settle(
            self.hold.id, usage=usage, model=model, member=self.metering.member
        )

    def release(self) -> None:
        """Return the hold: the call failed or was given up before it reported usage."""
        if not self.finished:
            self.finished = True
            self.metering.meter.release(self.hold.id)

    async def settle_async(self, tokens: Tokens | None, model: str | None) -> None:
        await asyncio.to_thread(self.settle, tokens, model)

    async def release_async(self) -> None:
        await asyncio.to_thread(self.release)

    def _priced(self, model: str | None) -> Iterator[str]:
        """The units the feature prices for the model; every token kind for a cost-plus
        feature (the price book prices a kind the model has no price for as input or
        output tokens)."""
        for feature in self.metering.meter.features():
            if feature.key == self.metering.feature:
                if feature.rule.cost_plus:
                    yield from (CACHED, CACHE_WRITE, REASONING)
                yield from feature.rule.rates_for(model)


def texts(value: object) -> Iterator[str]:
    """The text in a prompt: strings, and the ``content`` and ``text`` of messages and
    their parts, at any depth (an image's data is not text and is not counted)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key in ("content", "text"):
            yield from texts(value.get(key))
    elif isinstance(value, Iterable):
        for item in value:
            yield from texts(item)
