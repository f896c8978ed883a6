"""The delivery retry schedule: growing delays over about three days, each lengthened by
a jitter drawn from the random source given."""

from __future__ import annotations

import random
from datetime import timedelta

from creditmeter.core.retries import DELIVERY, RetrySchedule


def test_deliveries_are_tried_fifteen_times_over_about_three_days() -> None:
    assert DELIVERY.attempts == 15
    assert timedelta(days=3) <= DELIVERY.span <= timedelta(days=3, hours=6)
    assert list(DELIVERY.delays) == sorted(DELIVERY.delays)
    assert DELIVERY.delays[0] == timedelta(seconds=5)


def test_the_jitter_lengthens_each_delay_by_at_most_its_fraction() -> None:
    rng = random.Random(1)
    for attempt, base in enumerate(DELIVERY.delays, start=1):
        delay = DELIVERY.delay(attempt, rng)
        assert delay is not None
        assert base <= delay <= base * 1.2


def test_the_same_seed_draws_the_same_delays() -> None:
    def drawn(seed: int) -> list[timedelta | None]:
        rng = random.Random(seed)
        return [DELIVERY.delay(n, rng) for n in range(1, DELIVERY.attempts)]

    assert drawn(7) == drawn(7)
    assert drawn(7) != drawn(8), "the jitter spreads retries that failed together"


def test_there_is_no_delay_after_the_last_attempt() -> None:
    rng = random.Random(0)
    assert DELIVERY.delay(DELIVERY.attempts, rng) is None
    assert DELIVERY.delay(0, rng) is None


def test_without_jitter_a_delay_is_the_schedule_s() -> None:
    schedule = RetrySchedule(delays=(timedelta(seconds=1), timedelta(seconds=2)), jitter=0)
    assert schedule.delay(2, random.Random(0)) == timedelta(seconds=2)
