"""The alert state's crossings: hysteresis of the balance, allowance percentages."""

from __future__ import annotations

from creditmeter.core.alerts import (
    CRITICAL,
    LOW,
    OK,
    allowance_crossings,
    balance_crossings,
    rearm_above,
)


def types(level: int, available: int) -> tuple[int, list[str]]:
    level, crossed = balance_crossings(level, available, low=1000, critical=100)
    return level, [c.type for c in crossed]


def test_crossing_the_low_line_is_told_once() -> None:
    assert types(OK, 1001) == (OK, [])
    assert types(OK, 1000) == (LOW, ["balance.low"])
    assert types(LOW, 900) == (LOW, [])
    assert types(LOW, 1000) == (LOW, [])


def test_a_fall_through_both_lines_tells_both() -> None:
    assert types(OK, 50) == (CRITICAL, ["balance.low", "balance.critical"])
    assert types(LOW, 100) == (CRITICAL, ["balance.critical"])
    assert types(CRITICAL, 0) == (CRITICAL, [])


def test_recovery_needs_the_margin_above_the_line() -> None:
    assert rearm_above(1000) == 1100
    assert rearm_above(101) == 112  # a tenth, rounded up
    assert rearm_above(0) == 0
    assert types(LOW, 1100) == (LOW, [])
    assert types(LOW, 1101) == (OK, ["balance.recovered"])
    assert types(CRITICAL, 1101) == (OK, ["balance.recovered"])


def test_critical_rearms_silently_while_still_low() -> None:
    assert types(CRITICAL, 110) == (CRITICAL, [])
    assert types(CRITICAL, 111) == (LOW, [])
    assert types(LOW, 100) == (CRITICAL, ["balance.critical"])


def test_allowance_percentages_are_told_once_each_lowest_first() -> None:
    alerts = (75, 90, 100)
    assert allowance_crossings(0, 74, alerts) == (0, [])
    told, crossed = allowance_crossings(0, 95, alerts)
    assert (told, [c.threshold for c in crossed]) == (90, [75, 90])
    assert allowance_crossings(90, 99, alerts) == (90, [])
    told, crossed = allowance_crossings(90, 100, alerts)
    assert (told, [c.threshold for c in crossed]) == (100, [100])
    assert allowance_crossings(100, 50, alerts) == (100, [])  # no second telling this period
    assert allowance_crossings(0, None, alerts) == (0, [])  # no limited allowance
