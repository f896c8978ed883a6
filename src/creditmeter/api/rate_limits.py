"""Rate limits: a token bucket for each API key, and one for each client address that
comes without a valid key; a request over its limit is answered 429 with ``Retry-After``.

Each server process keeps its own buckets, in memory: with several workers, a client
gets up to the limit from each. The buckets follow pyrate-limiter's token bucket, whose
stores for Redis and PostgreSQL would share them between processes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from pyrate_limiter import Rate, TokenBucket
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from creditmeter.api.auth import authenticated
from creditmeter.api.errors import error_body
from creditmeter.core.keys import Role

PERIODS: Final = {"second": 1_000, "minute": 60_000, "hour": 3_600_000}
_LIMIT = re.compile(r"\s*(\d+)\s*/\s*(second|minute|hour)\s*")
OFF: Final = "off"

MAX_BUCKETS: Final = 100_000
"""Buckets kept at most; past that, the full ones are forgotten (a full bucket is what a
new one is), and if none is full, all of them."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)


def parse(text: str) -> Rate | None:
    """``"20/second"``: 20 requests a second, in bursts of up to 20 (a bucket of 20
    tokens, refilled at that pace); ``"off"`` (or nothing): no limit."""
    if text.strip().lower() in (OFF, ""):
        return None
    found = _LIMIT.fullmatch(text.lower())
    if found is None or int(found[1]) == 0:
        raise ValueError(f"a rate limit is N/second, N/minute, N/hour or {OFF}, not {text!r}")
    return Rate(int(found[1]), PERIODS[found[2]])


@dataclass(frozen=True)
class Limits:
    """The rate of each kind of caller; ``None``: not limited."""

    account_key: Rate | None
    staff_key: Rate | None
    """Service, admin and superadmin keys."""
    address: Rate | None
    """A client address, for requests without a valid key."""


class Limiter:
    """Token buckets by caller, on ``clock``'s time."""

    def __init__(self, limits: Limits, clock: Callable[[], datetime]) -> None:
        self.limits = limits
        self.clock = clock
        self._algorithm = TokenBucket()
        self._buckets: dict[str, tuple[float, ...]] = {}

    def take(self, caller: str, rate: Rate) -> int:
        """Takes a token from ``caller``'s bucket: 0 if there was one, else the
        milliseconds until there is."""
        now = (self.clock() - _EPOCH) // _MILLISECOND
        state = self._buckets.get(caller)
        if state is None:
            if len(self._buckets) >= MAX_BUCKETS:
                self._forget_full(now)
            state = self._algorithm.initial([rate])
        state, decision = self._algorithm.step([rate], state, now, 1)
        self._buckets[caller] = state
        if decision.allowed:
            return 0
        return max(decision.retry_after_ms or 0, 1)

    def _forget_full(self, now: int) -> None:
        full = [caller for caller, state in self._buckets.items() if state[0] <= now * 1000]
        for caller in full:
            del self._buckets[caller]
        if not full:
            self._buckets.clear()


class RateLimits:
    """Plain ASGI middleware: each request takes a token from its key's bucket, or, without
    a valid key, from its client address's; without one it is answered 429."""

    def __init__(self, app: ASGIApp, *, limiter: Limiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limits = self.limiter.limits
        key = await authenticated(scope)
        if key is not None:
            caller = f"key:{key.id}"
            rate = limits.account_key if key.role is Role.ACCOUNT else limits.staff_key
        else:
            client = scope.get("client")
            caller = f"address:{client[0] if client else ''}"
            rate = limits.address
        wait = 0 if rate is None else self.limiter.take(caller, rate)
        if not wait:
            await self.app(scope, receive, send)
            return
        seconds = math.ceil(wait / 1000)
        refusal = JSONResponse(
            error_body(
                "rate_limited",
                f"too many requests; retry in {seconds} s",
                retry_after=seconds,
            ),
            429,
            headers={"Retry-After": str(seconds)},
        )
        await refusal(scope, receive, send)
