"""Payment providers' events: stored once on arrival, then applied once, in any order.

:func:`receive` stores an event (unique on its id) with a job to apply it, in one
transaction. :func:`apply` finds what the event is about, locks that account, and
applies the event if it was not applied yet, marking it in the same transaction:
``applied``, ``ignored`` (a type creditmeter does not act on, or nothing left to do) or
``flagged`` (it names no known account or purchase, or the amount paid is not the
price: no balance changes; a person should look).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from sqlalchemy.engine import Connection

from creditmeter.core.errors import NotFound
from creditmeter.core.ids import new_id
from creditmeter.core.payments import InvalidSignature, Money, PaymentEvent, Purchase
from creditmeter.core.settings import Settings
from creditmeter.service import purchases, subscriptions
from creditmeter.service.locked_account import LockedAccount
from creditmeter.service.purchases import Outcome, flagged, ignored
from creditmeter.service.unit_of_work import UnitOfWork, UnitsOfWork
from creditmeter.store import outbox
from creditmeter.store import payments as store

APPLY_JOB = "payment_event"

FULFILLING = frozenset(
    {
        "checkout.session.completed",
        "checkout.session.async_payment_succeeded",
        "payment_intent.succeeded",
    }
)
FAILING = frozenset(
    {
        "payment_intent.payment_failed",
        "payment_intent.canceled",
        "checkout.session.async_payment_failed",
        "checkout.session.expired",
    }
)
MAX_ID: Final = 255
MAX_TYPE: Final = 100
REFUNDING = frozenset({"charge.refunded"})


def receive(conn: Connection, now: datetime, event: PaymentEvent, provider: str) -> bool:
    """Store the event and queue its application; ``False`` for an event stored before
    (a repeated delivery), which changes nothing."""
    if not store.insert_event(conn, event.id, provider, event.type, event.payload, now):
        return False
    outbox.enqueue(
        conn, new_id("job"), APPLY_JOB, {"event_id": event.id}, now, dedupe_key=f"event:{event.id}"
    )
    return True


def checked(event: PaymentEvent) -> PaymentEvent:
    """``event`` if it can be stored and read back; ``InvalidSignature`` (a delivery that
    is not an event) otherwise."""
    problems = [
        "an id of 1 to 255 characters" if not 0 < len(event.id) <= MAX_ID else "",
        "a type of 1 to 100 characters" if not 0 < len(event.type) <= MAX_TYPE else "",
        "an object in data.object" if not isinstance(event.object, Mapping) else "",
        "no NUL character" if "\x00" in event.payload or "\\u0000" in event.payload else "",
    ]
    wanted = [p for p in problems if p]
    if wanted:
        raise InvalidSignature(f"not an event: it needs {', '.join(wanted)}")
    return event


def stored(conn: Connection, event_id: str) -> tuple[PaymentEvent, str, str] | None:
    """A stored event, its provider and its status."""
    row = store.get_event(conn, event_id)
    if row is None:
        return None
    body = json.loads(row["payload"])
    event = PaymentEvent(row["id"], row["type"], body["data"]["object"], row["payload"])
    return event, row["provider"], row["status"]


def apply_stored(units: UnitsOfWork, event_id: str) -> str:
    """Apply a stored event in a unit of work, unless it was applied already; its status
    afterwards."""
    with units.db.read() as conn:
        found = stored(conn, event_id)
    if found is None:
        raise NotFound("payment event", event_id)
    event, provider, status = found
    if status != "received":
        return status
    return units.run(lambda uow: apply(uow, event, provider))


def apply(uow: UnitOfWork, event: PaymentEvent, provider: str) -> str:
    """Apply a stored event once; its status afterwards."""
    conn = uow.conn
    subject = _subject(conn, event, provider, uow.now)
    if isinstance(subject, Outcome):
        return _finish(conn, event, subject, uow.now)
    account_id, purchase = subject
    account = uow.lock(account_id)
    current = store.get_event(conn, event.id, lock=True)
    if current is None or current["status"] != "received":
        return "received" if current is None else str(current["status"])
    if purchase is not None:
        purchase = store.get_purchase(conn, purchase.id)  # as it is under the lock
        assert purchase is not None
    settings = uow.settings
    outcome = _act(account, settings, event, purchase)
    uow.check_alerts(account, settings)
    uow.save(account)
    return _finish(conn, event, outcome, uow.now)


def _finish(conn: Connection, event: PaymentEvent, outcome: Outcome, now: datetime) -> str:
    store.finish_event(
        conn, event.id, outcome.status, note=outcome.note, purchase_id=outcome.purchase_id, at=now
    )
    return outcome.status


def _subject(
    conn: Connection, event: PaymentEvent, provider: str, now: datetime
) -> tuple[str, Purchase | None] | Outcome:
    """The account an event is about and its purchase (if it is about one), or what to
    record of it without touching any account."""
    obj = event.object
    if event.type in subscriptions.EVENTS:
        account_id = subscriptions.account_of(conn, obj)
        if account_id is None:
            return flagged("the subscription's customer is no known account")
        return account_id, None
    if event.type not in FULFILLING | FAILING | REFUNDING:
        return ignored(f"creditmeter does not act on {event.type} events")
    metadata = _metadata(obj)
    session_id, intent_id = _provider_ids(event)
    purchase = purchases.locate(
        conn,
        purchase_id=metadata.get("purchase_id"),
        session_id=session_id,
        payment_intent_id=intent_id,
    )
    if purchase is not None:
        named = metadata.get("account_id")
        if named and named != purchase.account_id:
            return flagged(
                f"the payment names account {named!r}; its purchase is of {purchase.account_id!r}",
                purchase,
            )
        return purchase.account_id, purchase
    if event.type not in FULFILLING:
        return ignored("about no purchase creditmeter knows")
    account_id, package_id = metadata.get("account_id"), metadata.get("package_id")
    if not account_id or not package_id:
        return flagged("a payment that names no purchase, account and package")
    if not _paid(obj):
        return ignored("not paid yet")
    started = purchases.start_external(
        conn,
        now,
        account_id,
        package_id,
        _amount_paid(event),
        provider=provider,
        session_id=session_id,
        payment_intent_id=intent_id,
    )
    if isinstance(started, Outcome):
        return started
    return started.account_id, started


def _act(
    account: LockedAccount, settings: Settings, event: PaymentEvent, purchase: Purchase | None
) -> Outcome:
    obj = event.object
    if event.type in subscriptions.EVENTS:
        return subscriptions.apply(account, event)
    assert purchase is not None
    if event.type in FULFILLING:
        if not _paid(obj):
            return ignored("not paid yet", purchase)
        session_id, intent_id = _provider_ids(event)
        return purchases.fulfil(
            account,
            purchase,
            _amount_paid(event),
            session_id=session_id,
            payment_intent_id=intent_id,
        )
    if event.type in FAILING:
        return purchases.fail(account, settings, purchase, _failure_reason(obj))
    return purchases.claw_back(account, settings, purchase, int(obj.get("amount_refunded") or 0))


def _metadata(obj: Mapping[str, Any]) -> dict[str, str]:
    found = obj.get("metadata") or {}
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, Mapping) else {}


def _provider_ids(event: PaymentEvent) -> tuple[str | None, str | None]:
    """The Checkout Session's and the PaymentIntent's ids the event carries."""
    obj = event.object
    if event.type.startswith("checkout.session."):
        return obj.get("id"), _id_of(obj.get("payment_intent"))
    if event.type.startswith("payment_intent."):
        return None, obj.get("id")
    return None, _id_of(obj.get("payment_intent"))


def _id_of(value: object) -> str | None:
    """An expandable field: an id, or the object with its id."""
    if isinstance(value, Mapping):
        value = value.get("id")
    return value if isinstance(value, str) else None


def _paid(obj: Mapping[str, Any]) -> bool:
    if obj.get("object") == "checkout.session":
        return obj.get("payment_status") in ("paid", "no_payment_required")
    return bool(obj.get("status", "succeeded") == "succeeded")


def _amount_paid(event: PaymentEvent) -> Money:
    obj = event.object
    if event.type.startswith("checkout.session."):
        amount = obj.get("amount_total")
    else:  # a succeeded intent received its amount (a stand-in may leave out the field)
        amount = obj.get("amount_received") or obj.get("amount")
    return Money(int(amount or 0), str(obj.get("currency") or "").lower())


def _failure_reason(obj: Mapping[str, Any]) -> str:
    error = obj.get("last_payment_error")
    if isinstance(error, Mapping) and error.get("message"):
        return str(error["message"])
    if obj.get("object") == "checkout.session" and obj.get("status") == "expired":
        return "the checkout expired unpaid"
    if obj.get("status") == "canceled":
        return "the payment was canceled"
    return "the payment failed"
