"""When a failed delivery is tried again: a schedule of growing delays, each lengthened by
a random jitter so that deliveries that failed together (a receiver that was down) do not
all come back at the same instant.

The random source is an input, like the clock: a test passes a seeded
:class:`random.Random` and knows every delay.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta
from typing import Final


@dataclass(frozen=True)
class RetrySchedule:
    delays: tuple[timedelta, ...]
    """The wait after the 1st, 2nd … failed attempt; after the last, the job is given up."""
    jitter: float = 0.2
    """Each wait is lengthened by up to this fraction of itself, at random."""

    @property
    def attempts(self) -> int:
        """Attempts in all: the first and one after each delay."""
        return len(self.delays) + 1

    @property
    def span(self) -> timedelta:
        """From the first attempt to the last, without jitter."""
        return sum(self.delays, timedelta(0))

    def delay(self, attempts: int, rng: random.Random) -> timedelta | None:
        """How long to wait after the ``attempts``-th failed attempt; ``None`` when that
        was the last."""
        if not 1 <= attempts <= len(self.delays):
            return None
        base = self.delays[attempts - 1]
        extra = base.total_seconds() * self.jitter * rng.random()
        return base + timedelta(seconds=round(extra, 3))


def _s(seconds: int) -> timedelta:
    return timedelta(seconds=seconds)


DELIVERY: Final = RetrySchedule(
    delays=(
        _s(5),
        _s(30),
        _s(2 * 60),
        _s(10 * 60),
        _s(30 * 60),
        _s(3600),
        _s(2 * 3600),
        _s(4 * 3600),
        _s(8 * 3600),
        _s(12 * 3600),
        _s(12 * 3600),
        _s(12 * 3600),
        _s(12 * 3600),
        _s(12 * 3600),
    )
)
"""Webhook and email deliveries: 15 attempts over about three days (3 days 4 hours before
jitter), so a receiver or mail server down over a weekend still gets everything."""
