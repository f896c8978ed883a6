"""Allowance periods: calendar months, anniversary months and 30-day cycles."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from creditmeter.core.periods import Period, period_containing
from creditmeter.core.types import PeriodKind

CALENDAR = PeriodKind.CALENDAR_MONTH
ANNIVERSARY = PeriodKind.ANNIVERSARY_MONTH
THIRTY = PeriodKind.EVERY_30_DAYS


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


ANCHOR = utc(2025, 7, 19, 8, 30)


def test_calendar_month_runs_from_the_first_to_the_first() -> None:
    assert period_containing(CALENDAR, ANCHOR, utc(2026, 3, 10, 12)) == Period(
        utc(2026, 3, 1), utc(2026, 4, 1)
    )


def test_calendar_month_december_ends_on_the_first_of_january() -> None:
    december = period_containing(CALENDAR, ANCHOR, utc(2026, 12, 31, 23, 59, 59, 999_999))
    assert december == Period(utc(2026, 12, 1), utc(2027, 1, 1))
    january = period_containing(CALENDAR, ANCHOR, utc(2027, 1, 1))
    assert january == Period(utc(2027, 1, 1), utc(2027, 2, 1))


def test_calendar_month_february_of_a_leap_year() -> None:
    assert period_containing(CALENDAR, ANCHOR, utc(2028, 2, 29, 23)) == Period(
        utc(2028, 2, 1), utc(2028, 3, 1)
    )


def test_calendar_month_boundaries_are_inclusive_start_exclusive_end() -> None:
    march = period_containing(CALENDAR, ANCHOR, utc(2026, 3, 1))
    assert march.start == utc(2026, 3, 1)
    assert utc(2026, 3, 1) in march
    assert utc(2026, 4, 1) not in march
    assert utc(2026, 4, 1) - timedelta(microseconds=1) in march
    assert period_containing(CALENDAR, ANCHOR, utc(2026, 4, 1)).start == utc(2026, 4, 1)


def test_calendar_month_is_the_utc_month_of_the_instant() -> None:
    # 01:00 on 1 April at UTC+2 is 23:00 on 31 March in UTC.
    at = datetime(2026, 4, 1, 1, 0, tzinfo=timezone(timedelta(hours=2)))
    assert period_containing(CALENDAR, ANCHOR, at) == Period(utc(2026, 3, 1), utc(2026, 4, 1))


def test_anniversary_month_on_the_31st_clamps_to_february_28_and_returns_to_the_31st() -> None:
    anchor = utc(2026, 1, 31, 10)
    assert period_containing(ANNIVERSARY, anchor, utc(2026, 1, 31, 10)) == Period(
        utc(2026, 1, 31, 10), utc(2026, 2, 28, 10)
    )
    assert period_containing(ANNIVERSARY, anchor, utc(2026, 2, 15)) == Period(
        utc(2026, 1, 31, 10), utc(2026, 2, 28, 10)
    )
    assert period_containing(ANNIVERSARY, anchor, utc(2026, 3, 15)) == Period(
        utc(2026, 2, 28, 10), utc(2026, 3, 31, 10)
    )
    assert period_containing(ANNIVERSARY, anchor, utc(2026, 4, 2)) == Period(
        utc(2026, 3, 31, 10), utc(2026, 4, 30, 10)
    )
    assert period_containing(ANNIVERSARY, anchor, utc(2026, 5, 31, 9, 59)) == Period(
        utc(2026, 4, 30, 10), utc(2026, 5, 31, 10)
    )


def test_anniversary_month_on_the_31st_clamps_to_february_29_in_a_leap_year() -> None:
    anchor = utc(2027, 12, 31)
    assert period_containing(ANNIVERSARY, anchor, utc(2028, 2, 10)) == Period(
        utc(2028, 1, 31), utc(2028, 2, 29)
    )
    assert period_containing(ANNIVERSARY, anchor, utc(2028, 2, 29)) == Period(
        utc(2028, 2, 29), utc(2028, 3, 31)
    )


def test_anniversary_month_crosses_the_year() -> None:
    anchor = utc(2025, 3, 15, 6)
    assert period_containing(ANNIVERSARY, anchor, utc(2026, 12, 20)) == Period(
        utc(2026, 12, 15, 6), utc(2027, 1, 15, 6)
    )
    assert period_containing(ANNIVERSARY, anchor, utc(2027, 1, 10)) == Period(
        utc(2026, 12, 15, 6), utc(2027, 1, 15, 6)
    )


def test_anniversary_month_boundaries_are_inclusive_start_exclusive_end() -> None:
    anchor = utc(2026, 1, 15, 12)
    period = period_containing(ANNIVERSARY, anchor, utc(2026, 2, 15, 12))
    assert period == Period(utc(2026, 2, 15, 12), utc(2026, 3, 15, 12))
    before = period_containing(ANNIVERSARY, anchor, utc(2026, 2, 15, 11, 59, 59, 999_999))
    assert before == Period(utc(2026, 1, 15, 12), utc(2026, 2, 15, 12))


def test_anniversary_month_of_an_instant_given_in_another_time_zone() -> None:
    # 20:00 on 31 January at UTC−5 is 01:00 on 1 February in UTC: the second period.
    anchor = utc(2026, 1, 1)
    at = datetime(2026, 1, 31, 20, 0, tzinfo=timezone(timedelta(hours=-5)))
    period = period_containing(ANNIVERSARY, anchor, at)
    assert at in period
    assert period == Period(utc(2026, 2, 1), utc(2026, 3, 1))


def test_thirty_day_cycles_count_from_the_anchor() -> None:
    anchor = utc(2026, 1, 1, 9)
    assert period_containing(THIRTY, anchor, utc(2026, 1, 5)) == Period(anchor, utc(2026, 1, 31, 9))
    assert period_containing(THIRTY, anchor, utc(2026, 3, 10, 12)) == Period(
        utc(2026, 3, 2, 9), utc(2026, 4, 1, 9)
    )


def test_thirty_day_cycle_boundaries_are_inclusive_start_exclusive_end() -> None:
    anchor = utc(2026, 1, 1, 9)
    end = anchor + timedelta(days=30)
    assert period_containing(THIRTY, anchor, end - timedelta(microseconds=1)).end == end
    assert period_containing(THIRTY, anchor, end) == Period(end, end + timedelta(days=30))


def test_thirty_day_cycles_before_the_anchor() -> None:
    anchor = utc(2026, 1, 31)
    assert period_containing(THIRTY, anchor, utc(2026, 1, 30)) == Period(
        utc(2026, 1, 1), utc(2026, 1, 31)
    )


def test_a_period_contains_its_start_and_not_its_end() -> None:
    period = Period(utc(2026, 1, 1), utc(2026, 2, 1))
    assert period.start in period
    assert period.end not in period
    assert utc(2025, 12, 31, 23, 59, 59) not in period


# Hypothesis takes naive bounds and attaches the time zone itself.
instants = st.datetimes(
    min_value=datetime(2000, 1, 1),  # noqa: DTZ001
    max_value=datetime(2099, 12, 31),  # noqa: DTZ001
    timezones=st.just(UTC),
)
kinds = st.sampled_from(list(PeriodKind))


@given(kind=kinds, anchor=instants, at=instants)
def test_the_period_containing_an_instant_contains_it(
    kind: PeriodKind, anchor: datetime, at: datetime
) -> None:
    period = period_containing(kind, anchor, at)
    assert period.start <= at < period.end
    assert at in period
    assert timedelta(days=28) <= period.end - period.start <= timedelta(days=31)


@given(kind=kinds, anchor=instants, at=instants)
def test_consecutive_periods_tile_time(kind: PeriodKind, anchor: datetime, at: datetime) -> None:
    period = period_containing(kind, anchor, at)
    assert period_containing(kind, anchor, period.start) == period
    assert period_containing(kind, anchor, period.end - timedelta(microseconds=1)) == period
    following = period_containing(kind, anchor, period.end)
    assert following.start == period.end
    preceding = period_containing(kind, anchor, period.start - timedelta(microseconds=1))
    assert preceding.end == period.start


@given(anchor=instants, at=instants)
def test_anniversary_periods_start_on_the_anchor_day_or_the_months_last_day(
    anchor: datetime, at: datetime
) -> None:
    period = period_containing(ANNIVERSARY, anchor, at)
    assert period.start.time() == anchor.time()
    next_day = period.start + timedelta(days=1)
    assert period.start.day == anchor.day or (
        period.start.day < anchor.day and next_day.month != period.start.month
    )
