"""Subscriptions at the payment provider: they set an account's plan, and each paid
invoice renews its allowance, once per invoice.

A subscription names its plan by ``metadata.plan``, or by its price's ``lookup_key`` (or
the price's ``metadata.plan``); its account by ``metadata.account_id``, or by the
customer that creditmeter made for the account.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy.engine import Connection

from creditmeter.core.payments import PaymentEvent
from creditmeter.core.periods import Period
from creditmeter.core.types import GrantSource
from creditmeter.service import accounts as accounts_service
from creditmeter.service.locked_account import LockedAccount
from creditmeter.service.maintenance import issue_allowance, post_expiry, renewed
from creditmeter.service.purchases import Outcome, flagged, ignored
from creditmeter.store import accounts, catalog

EVENTS: Final = frozenset(
    {
        "invoice.paid",
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
    }
)
ENDED: Final = frozenset({"canceled", "unpaid", "incomplete_expired"})
LIVE: Final = frozenset({"active", "trialing"})


def account_of(conn: Connection, obj: Mapping[str, Any]) -> str | None:
    named = _metadata(obj).get("account_id")
    if named and accounts.get(conn, named) is not None:
        return named
    customer = obj.get("customer")
    if isinstance(customer, Mapping):
        customer = customer.get("id")
    return accounts.id_of_payment_customer(conn, customer) if isinstance(customer, str) else None


def apply(account: LockedAccount, event: PaymentEvent) -> Outcome:
    obj = event.object
    if event.type == "invoice.paid":
        return _renew(account, obj)
    if event.type == "customer.subscription.deleted" or obj.get("status") in ENDED:
        if account.row.account.plan is None:
            return ignored("the account has no plan already")
        account.row.account = replace(account.row.account, plan=None, pending_plan=None)
        return Outcome("applied", "subscription ended: the account has no plan from now")
    if obj.get("status") not in LIVE:
        return ignored(f"a {obj.get('status')} subscription changes no plan yet")
    plan_key = _plan_key(obj)
    if plan_key is None:
        return flagged("the subscription names no plan (metadata.plan or a price lookup_key)")
    if catalog.get_plan(account.conn, plan_key) is None:
        return flagged(f"the subscription names plan {plan_key!r}, which does not exist")
    if plan_key in (account.row.account.plan, account.row.account.pending_plan):
        return ignored(f"the account is on plan {plan_key!r} already")
    updated = accounts_service.change_plan(account, plan_key)
    when = "from the next period" if updated.pending_plan == plan_key else "now"
    return Outcome("applied", f"plan changed to {plan_key!r} {when}")


def _renew(account: LockedAccount, invoice: Mapping[str, Any]) -> Outcome:
    """A paid invoice of a subscription starts the period it pays for: what is left of
    the current allowance expires, the plan's allowance for the new period is issued."""
    if not _subscription_id(invoice):
        return ignored("an invoice of no subscription")
    period = _invoice_period(invoice)
    if period is None:
        return flagged("the invoice has no period")
    plan_key = _plan_key(invoice) or account.row.account.plan
    plan = None if plan_key is None else catalog.get_plan(account.conn, plan_key)
    if plan is None:
        return flagged(f"the invoice's plan {plan_key!r} is not known")
    issued = any(
        g.source is GrantSource.ALLOWANCE and g.period_start == period.start for g in account.grants
    )
    if issued or period.start < account.row.account.period_start:
        return ignored("this period's allowance is issued already")
    current = [g for g in account.grants if g.source is GrantSource.ALLOWANCE and g.free > 0]
    post_expiry(account, current, account.now)
    account.row.account = replace(
        account.row.account,
        plan=plan.key,
        pending_plan=None,
        period_start=period.start,
        period_end=period.end,
    )
    renewed(account, plan, period, issue_allowance(account, plan, period))
    account.lower_due(period.end)
    return Outcome("applied", f"allowance of plan {plan.key!r} renewed to {period.end:%Y-%m-%d}")


def _invoice_period(invoice: Mapping[str, Any]) -> Period | None:
    lines = invoice.get("lines")
    data = lines.get("data") if isinstance(lines, Mapping) else None
    first = data[0] if isinstance(data, list) and data else None
    bounds = first.get("period") if isinstance(first, Mapping) else None
    if not isinstance(bounds, Mapping):
        return None
    start, end = bounds.get("start"), bounds.get("end")
    if not isinstance(start, int) or not isinstance(end, int) or end <= start:
        return None
    return Period(datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC))


def _subscription_id(invoice: Mapping[str, Any]) -> str | None:
    found = invoice.get("subscription")
    if found is None:
        parent = invoice.get("parent")
        details = parent.get("subscription_details") if isinstance(parent, Mapping) else None
        found = details.get("subscription") if isinstance(details, Mapping) else None
    if isinstance(found, Mapping):
        found = found.get("id")
    return found if isinstance(found, str) else None


def _plan_key(obj: Mapping[str, Any]) -> str | None:
    named = _metadata(obj).get("plan")
    if named:
        return named
    for price in _prices(obj):
        key = price.get("lookup_key") or _metadata(price).get("plan")
        if key:
            return str(key)
    return None


def _prices(obj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The prices of a subscription's items or of an invoice's lines."""
    found = []
    for field in ("items", "lines"):
        container = obj.get(field)
        data = container.get("data") if isinstance(container, Mapping) else None
        for item in data if isinstance(data, list) else []:
            price = item.get("price") if isinstance(item, Mapping) else None
            if isinstance(price, Mapping):
                found.append(price)
    return found


def _metadata(obj: Mapping[str, Any]) -> dict[str, str]:
    found = obj.get("metadata") or {}
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, Mapping) else {}
