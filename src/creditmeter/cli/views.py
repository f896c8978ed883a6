"""Text views of the library's records: figures, balances, refusals and the ledger."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from creditmeter.core.audit import AuditEntry
from creditmeter.core.errors import AllowanceState, InsufficientCredits
from creditmeter.core.keys import ApiKey
from creditmeter.core.payments import Package, Purchase, amount_text
from creditmeter.core.plans import Plan
from creditmeter.core.pricing import Feature, PricingRule, decimal_text
from creditmeter.core.records import Account, Balance, Posting, Transaction
from creditmeter.core.rerating import RerateBooking, RerateLine, RerateReport
from creditmeter.core.types import PeriodKind, wallet
from creditmeter.core.webhooks import Delivery, WebhookEndpoint

Rows = Sequence[Sequence[str]]


def figure(credits: int) -> str:
    """``2250`` as ``2,250``."""
    return f"{credits:,}"


def counted(n: int, noun: str) -> str:
    """``1 transaction``, ``2,000 transactions``."""
    return f"{figure(n)} {noun}{'' if n == 1 else 's'}"


def signed(credits: int) -> str:
    return f"{credits:+,}"


def money(amount: int, currency: str) -> str:
    """An amount of a currency's minor units as written: ``999 usd`` is ``9.99 USD``,
    ``1500 jpy`` is ``1,500 JPY``; integer arithmetic, never a float."""
    return f"{amount_text(amount, currency)} {currency.upper()}"


def widths(rows: Rows) -> list[int]:
    return [max(len(row[i]) for row in rows) for i in range(len(rows[0]))] if rows else []


def table(rows: Rows, *, indent: int = 2, right: Iterable[int] = ()) -> list[str]:
    """Rows of equal length as aligned columns; columns in ``right`` are right-aligned."""
    sizes = widths(rows)
    aligned = set(right)
    lines = []
    for row in rows:
        cells = [
            cell.rjust(sizes[i]) if i in aligned else cell.ljust(sizes[i])
            for i, cell in enumerate(row)
        ]
        lines.append((" " * indent + "  ".join(cells)).rstrip())
    return lines


def allowance(state: AllowanceState) -> str:
    if state.limit is None:
        return f"unlimited ({figure(state.used)} used this period)"
    if state.limit == 0:
        return "none"
    percent = "" if state.percentage is None else f" ({state.percentage} %)"
    return f"{figure(state.used)} of {figure(state.limit)} used{percent}"


def labelled(rows: Sequence[tuple[str, int | str]], *, indent: int = 2) -> list[str]:
    """``label  value`` lines; figures right-aligned in one column, text from its start."""
    label_width = max(len(label) for label, _ in rows)
    figure_width = max((len(figure(v)) for _, v in rows if isinstance(v, int)), default=0)
    return [
        f"{' ' * indent}{label:<{label_width}}  "
        + (figure(value).rjust(figure_width) if isinstance(value, int) else value)
        for label, value in rows
    ]


def balance(b: Balance, *, indent: int = 2) -> list[str]:
    """A balance by the names of its fields."""
    period = f"period {b.period_start:%Y-%m-%d} to {b.period_end:%Y-%m-%d}"
    rows: list[tuple[str, int | str]] = [
        ("available", b.available),
        ("held", b.held),
        ("debt", b.debt),
        ("purchased_available", b.purchased_available),
        ("allowance", f"{allowance(b.allowance)}, {period}"),
    ]
    for pool, p in b.pools.items():
        if pool != "*":
            state = "unlimited" if p.unlimited else allowance(p.allowance)
            rows.append((f"pools[{pool}]", f"{figure(p.available)} available, allowance {state}"))
    rows.append(("status", b.status.value))
    rows += [("warning", w.message) for w in b.warnings]
    return labelled(rows, indent=indent)


def refusal(error: InsufficientCredits, *, indent: int = 2) -> list[str]:
    """The fields of a refusal, by their names."""
    return labelled(
        [
            ("required", error.required),
            ("available", error.available),
            ("allowance", allowance(error.allowance)),
            ("purchased_available", error.purchased_available),
        ],
        indent=indent,
    )


def account(a: Account, *, indent: int = 2) -> list[str]:
    plan = a.plan or "none"
    if a.pending_plan:
        plan += f" (changes to {a.pending_plan} at the next period)"
    rows = [
        ["id", a.id],
        ["name", a.name],
        ["plan", plan],
        ["status", a.status.value],
        ["created", f"{a.created_at:%Y-%m-%d %H:%M:%S} UTC"],
        ["overdraft limit", figure(a.overdraft_limit)],
    ]
    return table(rows, indent=indent)


def _wallet_leg(leg: Posting, direction: str) -> str:
    credits = figure(abs(leg.amount))
    if leg.grant_id is None:
        return f"{credits} as debt" if leg.amount < 0 else f"{credits} of debt repaid"
    source = leg.grant_source.value if leg.grant_source is not None else "grant"
    return f"{credits} {direction} {source}"


def drawn(txn: Transaction) -> str:
    """Where a transaction's credits came from or went to in the account's grants:
    ``2,000 from allowance + 3,000 from purchase``."""
    return " + ".join(
        _wallet_leg(leg, "from" if leg.amount < 0 else "into") for leg in txn.wallet_postings
    )


def postings(txn: Transaction) -> str:
    """A transaction's postings on one line, from where the credits left to where they
    went: ``2,000 from allowance + 500 from purchase → consumption``."""
    if not txn.postings:
        return "no postings: nothing drawn"
    own = wallet(txn.account_id)

    def side(sign: int) -> str:
        parts = []
        for leg in txn.postings:
            if leg.amount * sign <= 0:
                continue
            if leg.ledger_account == own:
                parts.append(_wallet_leg(leg, "from" if leg.amount < 0 else "into"))
            else:
                parts.append(leg.ledger_account)
        return " + ".join(parts)

    return f"{side(-1)} → {side(1)}"


def ledger(txns_in: Iterable[Transaction], *, indent: int = 2, times: bool = True) -> list[str]:
    """Transactions as a table under a header, each followed by its postings."""
    txns = list(txns_in)
    if not txns:
        return [" " * indent + "no transactions"]
    rows = [[*(["at (UTC)"] if times else []), "type", "amount", "before", "", "after", "what"]]
    for t in txns:
        when = [f"{t.created_at:%Y-%m-%d %H:%M:%S}"] if times else []
        rows.append(
            [
                *when,
                t.type.value,
                signed(t.amount),
                figure(t.balance_before),
                "→",
                figure(t.balance_after),
                t.description,
            ]
        )
    amount = 2 if times else 1
    header, *lines = table(rows, indent=indent, right=[amount, amount + 1, amount + 3])
    under = indent + sum(size + 2 for size in widths(rows)[:amount])
    out = [header]
    for line, t in zip(lines, txns, strict=True):
        out.append(line)
        out.append(" " * under + postings(t))
    return out


def rule(r: PricingRule) -> list[str]:
    """A pricing rule: its rates, and per-model overrides on lines of their own."""

    def rates(values: Mapping[str, Decimal]) -> str:
        return ", ".join(f"{unit} {decimal_text(value)}" for unit, value in values.items())

    multiplier = "" if r.multiplier == 1 else f", × {decimal_text(r.multiplier)} multiplier"
    if r.cost_plus:
        return ["cost-plus: the provider's cost × credits per USD" + multiplier]
    lines = [rates(r.rates) + multiplier]
    width = max((len(m) for m in r.models), default=0)
    lines += [f"  {model:<{width}}  {rates(values)}" for model, values in r.models.items()]
    return lines


def price_book(features: Iterable[Feature], *, indent: int = 2) -> list[str]:
    items = list(features)
    width = max((len(f.key) for f in items), default=0)
    lines = []
    for f in items:
        first, *more = rule(f.rule)
        lines.append(f"{' ' * indent}{f.key:<{width}}  {first}")
        lines += [f"{' ' * (indent + width + 2)}{line}" for line in more]
    return lines


def plans(items: Iterable[Plan], *, indent: int = 2) -> list[str]:
    rows = []
    for p in items:
        every = "every 30 days" if p.period is PeriodKind.EVERY_30_DAYS else "a month"
        limits = [
            ("unlimited" if n is None else f"{figure(n)} {every}")
            + ("" if pool == "*" else f" for {pool}")
            for pool, n in p.allowances.items()
        ]
        allowed = "all features" if p.features == "*" else ", ".join(sorted(p.features))
        rows.append([p.key, "; ".join(limits) or "no allowance", allowed])
    return table(rows, indent=indent)


def quantities(usage: Mapping[str, int]) -> str:
    """``{"input_tokens": 1000, "output_tokens": 500}`` as ``1,000 input_tokens + 500
    output_tokens``."""
    return " + ".join(f"{figure(n)} {unit}" for unit, n in usage.items())


def pricing(r: PricingRule, usage: Mapping[str, int], model: str | None) -> str:
    """How a usage is priced: ``ceil(1.5 × (1,000 × 0.5 + 500 × 2))``."""
    rates = r.rates_for(model)
    terms = " + ".join(f"{figure(n)} × {decimal_text(rates[unit])}" for unit, n in usage.items())
    if r.multiplier == 1:
        return f"ceil({terms})"
    return f"ceil({decimal_text(r.multiplier)} × ({terms}))"


def api_keys(keys: Iterable[ApiKey], *, indent: int = 0) -> list[str]:
    """Keys as a table; a revoked key says when it was revoked."""
    rows = [["id", "role", "account", "name", "secret", "created (UTC)", "revoked"]]
    for k in keys:
        rows.append(
            [
                k.id,
                k.role.value,
                k.account_id or "-",
                k.name,
                f"{k.prefix}…",
                f"{k.created_at:%Y-%m-%d %H:%M}",
                "-" if k.revoked_at is None else f"{k.revoked_at:%Y-%m-%d %H:%M}",
            ]
        )
    return table(rows, indent=indent)


def webhook_endpoints(endpoints: Iterable[WebhookEndpoint], *, indent: int = 0) -> list[str]:
    """Endpoints as a table: id, whether enabled, the events they hear, url, description."""
    rows = [["id", "enabled", "events", "url", "description"]]
    for e in endpoints:
        rows.append(
            [
                e.id,
                "yes" if e.enabled else "no",
                ",".join(e.event_types),
                e.url,
                e.description or "-",
            ]
        )
    return table(rows, indent=indent)


def webhook_deliveries(deliveries: Iterable[Delivery], *, indent: int = 0) -> list[str]:
    """Attempts as a table: when, id, event, attempt, answer, latency, next retry, error."""
    rows = [["when (UTC)", "id", "event", "attempt", "status", "ms", "next retry", "error"]]
    for d in deliveries:
        rows.append(
            [
                f"{d.created_at:%Y-%m-%d %H:%M:%S}",
                d.id,
                d.event_type,
                str(d.attempt),
                "-" if d.status_code is None else str(d.status_code),
                str(d.latency_ms),
                "-" if d.next_retry_at is None else f"{d.next_retry_at:%Y-%m-%d %H:%M:%S}",
                d.error or "-",
            ]
        )
    return table(rows, indent=indent)


def audit_log(entries: Iterable[AuditEntry], *, indent: int = 0) -> list[str]:
    """Entries as a table: when, who (a key's id, or how they came in), what, on what."""
    rows = [["when (UTC)", "actor", "action", "account", "subject"]]
    for e in entries:
        rows.append(
            [
                f"{e.created_at:%Y-%m-%d %H:%M:%S}",
                e.actor.key_id or e.actor.kind.value,
                e.action.value,
                e.account_id or "-",
                e.subject_id or "-",
            ]
        )
    return table(rows, indent=indent)


def packages(items: Iterable[Package], *, indent: int = 0) -> list[str]:
    """Credit packs as a table: what a buyer gets, for how much, and their badges."""
    rows = [["id", "name", "credits", "bonus", "price", "sort", "notes"]]
    for p in items:
        notes = [
            *(["popular"] if p.popular else []),
            *(["best value"] if p.best_value else []),
            *([] if p.active else ["not for sale"]),
            *([f"stripe {p.stripe_price_id}"] if p.stripe_price_id else []),
        ]
        rows.append(
            [
                p.id,
                p.name,
                figure(p.credits),
                figure(p.bonus_credits),
                money(p.price.amount, p.price.currency),
                str(p.sort_order),
                ", ".join(notes),
            ]
        )
    return table(rows, indent=indent, right=[2, 3, 4, 5])


def _paid_money(amount: int, currency: str) -> str:
    return money(amount, currency) if amount else "-"


def purchases(items: Iterable[Purchase], *, indent: int = 0) -> list[str]:
    """Purchases as a table, newest first as given; a failed or flagged one says why."""
    rows = [
        ["id", "kind", "status", "credits", "price", "paid", "refunded", "created (UTC)", "note"]
    ]
    for p in items:
        currency = p.price.currency
        rows.append(
            [
                p.id,
                p.kind.value,
                p.status.value,
                figure(p.credits),
                money(p.price.amount, currency),
                _paid_money(p.amount_paid, currency),
                _paid_money(p.amount_refunded, currency),
                f"{p.created_at:%Y-%m-%d %H:%M}",
                p.failure_reason or "",
            ]
        )
    return table(rows, indent=indent, right=[3, 4, 5, 6])


def _when(value: object) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S}" if isinstance(value, datetime) else "-"


def payment_events(events: Iterable[Mapping[str, Any]], *, indent: int = 0) -> list[str]:
    """Payment events as received, with what handling them did and why."""
    rows = [["received (UTC)", "id", "type", "status", "purchase", "note"]]
    for e in events:
        rows.append(
            [
                _when(e["received_at"]),
                str(e["id"]),
                str(e["type"]),
                str(e["status"]),
                str(e["purchase_id"] or "-"),
                str(e["note"] or ""),
            ]
        )
    return table(rows, indent=indent)


def rerate(report: RerateReport) -> list[str]:
    """A re-rating report: by account, by model, the total, and what was not re-rated."""
    header = ["records", "credits", "re-rated", "difference", "cost USD", "re-rated USD"]

    def row(line: RerateLine) -> list[str]:
        return [
            line.key,
            figure(line.records),
            figure(line.credits),
            figure(line.rerated_credits),
            signed(line.difference),
            decimal_text(line.provider_cost),
            decimal_text(line.rerated_provider_cost),
        ]

    rows = [["account", *header], *map(row, report.accounts), [""] * 7]
    rows += [["model", *header], *map(row, report.models), [""] * 7, row(report.total)]
    lines = table(rows, indent=0, right=range(1, 7))
    lines.append(
        f"not re-rated: {counted(report.hand_rated, 'record')} of features not cost-plus, "
        f"{counted(report.unpriced, 'record')} that version {report.version} has no price for"
    )
    return lines


def rerate_booking(booking: RerateBooking) -> list[str]:
    """What a re-rating booked: each account's adjustment transaction."""
    if not booking.transactions:
        return ["booked nothing: no account's usage re-rates at other credits"]
    rows = [["account", "adjustment", "to account"]]
    rows += [[t.account_id, t.id, signed(t.amount)] for t in booking.transactions]
    return [
        f"booked re-rating {booking.id}: {counted(len(booking.transactions), 'adjustment')}",
        *table(rows, indent=0, right=[2]),
    ]
