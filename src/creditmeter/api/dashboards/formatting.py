"""Numbers, money and dates written for people, as the pages show them."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Decimal

from creditmeter.core.payments import Money, amount_text
from creditmeter.core.pricing import PricingRule

SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥", "inr": "₹"}


def credits(value: int | None) -> str:
    """``12,345``; ``—`` for none."""
    return "—" if value is None else f"{value:,}"


def money(value: Money | None) -> str:
    """``$9.99`` from 999 ``usd``; ``12.50 CHF`` for a currency without a symbol."""
    if value is None:
        return "—"
    amount = amount_text(value.amount, value.currency)
    symbol = SYMBOLS.get(value.currency)
    if symbol is None:
        return f"{amount} {value.currency.upper()}"
    return f"-{symbol}{amount[1:]}" if amount.startswith("-") else f"{symbol}{amount}"


def day(value: date | datetime | None) -> str:
    """``1 January 2027``."""
    if value is None:
        return "—"
    return f"{value.day} {value:%B %Y}"


def moment(value: datetime | None) -> str:
    """``7 Dec 2026, 14:20 UTC``."""
    if value is None:
        return "—"
    return f"{value.day} {value:%b %Y, %H:%M} UTC"


def percent(value: int | None) -> str:
    return "—" if value is None else f"{value} %"


def rule(value: PricingRule) -> str:
    """``input_tokens 0.01 · output_tokens 0.03 · 2 models · × 1.2``."""
    if value.cost_plus:
        parts = ["cost plus"]
    else:
        parts = [f"{unit} {rate}" for unit, rate in sorted(value.rates.items())]
    if value.models:
        parts.append(f"{len(value.models)} model{'s' if len(value.models) != 1 else ''}")
    if value.multiplier != 1:
        parts.append(f"× {value.multiplier}")
    return " · ".join(parts) or "free"


def usd(value: Decimal | None) -> str:
    """``$1,234.57``: dollars to the cent, for reading (the API keeps every place)."""
    if value is None:
        return "—"
    cents = value.quantize(Decimal("0.01"), ROUND_HALF_EVEN)
    sign = "-" if cents < 0 else ""
    return f"{sign}${abs(cents):,}"


def ratio(value: Decimal | None) -> str:
    """``42.1 %`` from ``0.4213``."""
    if value is None:
        return "—"
    return f"{(value * 100).quantize(Decimal('0.1'), ROUND_HALF_EVEN)} %"


def money_of(value: dict[str, object]) -> str:
    """:func:`money` of ``{"amount": …, "currency": …}``, as a template writes it."""
    amount, currency = value["amount"], value["currency"]
    assert isinstance(amount, int)
    assert isinstance(currency, str)
    return money(Money(amount, currency))


def detail(value: object) -> str:
    """An audit entry's detail as JSON writes it: ``true``, ``{"amount": 900}``, text as
    it is."""
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str, ensure_ascii=False, separators=(", ", ": "))
