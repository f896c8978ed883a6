"""Allowance periods: calendar months, anniversary months and 30-day cycles."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from creditmeter.core.types import PeriodKind

THIRTY_DAYS = timedelta(days=30)


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime

    def __contains__(self, at: datetime) -> bool:
        return self.start <= at < self.end


def period_containing(kind: PeriodKind, anchor: datetime, at: datetime) -> Period:
    """The period of ``kind`` that contains ``at`` for an account anchored at ``anchor``.

    Periods are reckoned in UTC, whatever time zone the instants are given in.
    """
    at, anchor = at.astimezone(UTC), anchor.astimezone(UTC)
    match kind:
        case PeriodKind.CALENDAR_MONTH:
            start = at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
            return Period(start, _add_months(start, 1, start.day))
        case PeriodKind.ANNIVERSARY_MONTH:
            months = (at.year - anchor.year) * 12 + at.month - anchor.month
            start = _add_months(anchor, months, anchor.day)
            if start > at:
                months -= 1
                start = _add_months(anchor, months, anchor.day)
            return Period(start, _add_months(anchor, months + 1, anchor.day))
        case PeriodKind.EVERY_30_DAYS | PeriodKind.BILLING_CYCLE:
            cycles = (at - anchor) // THIRTY_DAYS
            start = anchor + cycles * THIRTY_DAYS
            return Period(start, start + THIRTY_DAYS)


def _add_months(moment: datetime, months: int, day: int) -> datetime:
    """``moment`` moved by whole months, on ``day`` or the month's last day if shorter."""
    index = moment.year * 12 + moment.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    return moment.replace(year=year, month=month, day=min(day, calendar.monthrange(year, month)[1]))
