"""Threshold alerts: when an account's balance or allowance crosses a line it is told once.

An account's alert state is two small numbers kept on its row and changed under its lock:
the balance level it was last told about (:data:`OK`, :data:`LOW`, :data:`CRITICAL`) and
the highest percentage of the period's allowance it was told about (0 for none). A
crossing moves the state and makes an event; staying on the same side makes none, so
however many writers drive the balance down, the one that crosses the line is the one
that tells.

Hysteresis: the balance is low at or below ``low_balance_threshold`` (as the balance's
warnings say), and it is back to normal only above that threshold plus a tenth of it
(:func:`rearm_above`). A hold authorized and released, or a refund of a few credits,
moves the available balance back and forth across the line; without the margin an
account that hovers at it would be told "low", "recovered", "low" on every request. The
critical level re-arms the same way, silently (the account is still low).

Allowance alerts fire once per percentage per period and re-arm when the period renews:
the allowance used only grows within a period, except by a refund, and a refund that
takes the use back under 90 % does not make a second "90 % used" worth sending.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from creditmeter.core.types import Credits

OK: Final = 0
LOW: Final = 1
CRITICAL: Final = 2

BALANCE_LOW: Final = "balance.low"
BALANCE_CRITICAL: Final = "balance.critical"
BALANCE_RECOVERED: Final = "balance.recovered"
ALLOWANCE_THRESHOLD: Final = "allowance.threshold"


@dataclass(frozen=True)
class AlertState:
    balance: int = OK
    """The balance level last told: :data:`OK`, :data:`LOW` or :data:`CRITICAL`."""
    allowance: int = 0
    """The highest percentage of this period's allowance told, 0 for none."""


@dataclass(frozen=True)
class Crossing:
    """One line crossed: the event's type, the threshold crossed (credits for the
    balance, a percentage for the allowance)."""

    type: str
    threshold: int


def rearm_above(threshold: Credits) -> Credits:
    """The available balance above which an alert at ``threshold`` is armed again: the
    threshold plus a tenth of it (rounded up)."""
    return threshold + -(-threshold // 10)


def balance_crossings(
    level: int, available: Credits, low: Credits, critical: Credits
) -> tuple[int, list[Crossing]]:
    """The balance level after ``available``, and the lines it crossed to get there."""
    crossed: list[Crossing] = []
    if level < LOW and available <= low:
        crossed.append(Crossing(BALANCE_LOW, low))
        level = LOW
    if level < CRITICAL and available <= critical:
        crossed.append(Crossing(BALANCE_CRITICAL, critical))
        level = CRITICAL
    if level == CRITICAL and available > rearm_above(critical):
        level = LOW
    if level == LOW and available > rearm_above(low):
        crossed.append(Crossing(BALANCE_RECOVERED, low))
        level = OK
    return level, crossed


def allowance_crossings(
    told: int, percentage: int | None, alerts: Sequence[int]
) -> tuple[int, list[Crossing]]:
    """The highest percentage told after the allowance reached ``percentage`` (``None``:
    no limited allowance), and the percentages newly reached, lowest first."""
    if percentage is None:
        return told, []
    crossed = [Crossing(ALLOWANCE_THRESHOLD, p) for p in sorted(alerts) if told < p <= percentage]
    return (crossed[-1].threshold if crossed else told), crossed
