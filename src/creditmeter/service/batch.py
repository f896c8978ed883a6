"""A batch of usage events charged in one unit of work.

Each event is charged or refused on its own, as ``charge`` would (its own idempotency key,
its own refusal); the accounts are locked in the order of their ids, and each account's
grants and totals, and the transactions, usage records and keys of all of them, are
written together with the commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from creditmeter.core.errors import CreditMeterError, NotFound
from creditmeter.core.records import Charge
from creditmeter.core.settings import Settings
from creditmeter.core.usage import UsageEvent
from creditmeter.service import idempotency, metering
from creditmeter.service.locked_account import LockedAccount
from creditmeter.service.unit_of_work import IdempotencyKey, UnitOfWork

Stored = dict[str, tuple[str, str, Any]]
"""The keys' stored ``(operation, fingerprint, result)``, those of this batch included."""


def charge_many(uow: UnitOfWork, events: Sequence[UsageEvent]) -> list[Charge | CreditMeterError]:
    """The result of each event, in order: its charge or the error that refused it."""
    keys = [e.idempotency_key for e in events if e.idempotency_key]
    settings = uow.settings
    locked, stored = uow.lock_many([e.account_id for e in events], keys)
    by_account: dict[str, list[int]] = {}
    for index, event in enumerate(events):
        by_account.setdefault(event.account_id, []).append(index)
    results: list[tuple[Charge | CreditMeterError, bool] | None] = [None] * len(events)
    for account_id in sorted(by_account):
        indexes = by_account[account_id]
        account = locked.get(account_id)
        if account is None:
            for index in indexes:
                results[index] = (NotFound("account", account_id), False)
            continue
        for index in indexes:
            results[index] = _charge(uow, account, settings, events[index], stored)
        uow.recharge_if_low(account, settings)
        uow.check_alerts(account, settings)
        uow.save(account)
    done = [r for r in results if r is not None]
    uow.new_charges.extend(r for r, fresh in done if fresh and isinstance(r, Charge))
    return [r for r, _ in done]


def _charge(
    uow: UnitOfWork, account: LockedAccount, settings: Settings, event: UsageEvent, stored: Stored
) -> tuple[Charge | CreditMeterError, bool]:
    """One event: its charge or its refusal, and whether it is new."""
    key = None
    if event.idempotency_key is not None:
        key = IdempotencyKey(event.idempotency_key, "charge", event.params(), Charge)
    try:
        if key is not None:
            found = stored.get(key.key)
            first = idempotency.first_result(key.key, found, "charge", key.fingerprint, Charge)
            if first is not None:
                return first, False
        charge = metering.charge_usage(account, settings, event)
    except CreditMeterError as refused:
        return refused, False
    if key is not None:
        stored[key.key] = ("charge", key.fingerprint, uow.remember(key, charge))
    return charge, True
