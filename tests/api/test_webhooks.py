"""The payment provider's webhook: signed events are stored once and applied once; what
does not verify is 400 and stores nothing."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from creditmeter import CreditMeter
from creditmeter.api.routers.webhooks import MAX_EVENT_BYTES
from creditmeter.core.payments import PurchaseStatus
from creditmeter.payments.signature import sign
from tests.api.conftest import Keys
from tests.api.test_payments import dev, drain, ok, refused, starter

PATH = "/v1/webhooks/stripe"


def completed(session: str, *, event_id: str = "evt_test_1", **metadata: str) -> bytes:
    """Stripe's ``checkout.session.completed`` of session ``cs_dev_<session>``, paid, with
    ``metadata`` naming the purchase."""
    body: dict[str, Any] = {
        "id": event_id,
        "object": "event",
        "type": "checkout.session.completed",
        "data": {
            "object": {
                "id": f"cs_dev_{session}",
                "object": "checkout.session",
                "mode": "payment",
                "payment_status": "paid",
                "status": "complete",
                "amount_total": 999,
                "currency": "usd",
                "payment_intent": f"pi_dev_{session}",
                "metadata": metadata,
            }
        },
    }
    return json.dumps(body).encode()


def signed(meter: CreditMeter, payload: bytes, **at: int) -> dict[str, str]:
    return {
        "Stripe-Signature": sign(payload, dev(meter).webhook_secret, at.get("timestamp")),
        "Content-Type": "application/json",
    }


def test_a_signed_event_is_stored_and_applied_once_however_often_it_comes(
    client: TestClient, meter: CreditMeter, keys: Keys
) -> None:
    starter(meter)
    purchase_id = meter.checkout("acme", "starter", success_url="https://x.com").purchase_id
    payload = completed(
        purchase_id, account_id="acme", package_id="starter", purchase_id=purchase_id
    )

    answers = [
        ok(client.post(PATH, content=payload, headers=signed(meter, payload))) for _ in range(3)
    ]
    stored = meter.payment_events()
    pending = meter.purchase(purchase_id).status
    drain(meter)
    late = ok(client.post(PATH, content=payload, headers=signed(meter, payload)))
    dev(meter).complete(meter.purchase(purchase_id))  # the same payment, as another event
    drain(meter)

    assert answers == [
        {"received": True, "duplicate": False},
        {"received": True, "duplicate": True},
        {"received": True, "duplicate": True},
    ]
    assert late == {"received": True, "duplicate": True}
    assert [(e["id"], e["status"]) for e in stored] == [("evt_test_1", "received")]
    assert pending is PurchaseStatus.PENDING  # the answer does not wait for the worker
    purchase = meter.purchase(purchase_id)
    assert (purchase.status, purchase.amount_paid) == (PurchaseStatus.FULFILLED, 999)
    assert meter.balance("acme").available == 11_000
    events = ok(client.get("/v1/admin/payment-events", headers=keys.header("admin")))["data"]
    assert sorted(e["status"] for e in events) == ["applied", "ignored"]
    assert meter.verify() == []


def test_the_webhook_needs_no_api_key_and_ignores_one(
    client: TestClient, meter: CreditMeter, keys: Keys
) -> None:
    starter(meter)
    purchase_id = meter.checkout("acme", "starter", ui_mode="elements").purchase_id
    payload = completed(purchase_id, purchase_id=purchase_id)

    with_key = client.post(
        PATH, content=payload, headers={**signed(meter, payload), **keys.header("account")}
    )

    assert ok(with_key) == {"received": True, "duplicate": False}


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "",
        "t=1,v1=abc",
        "v1=abc",
        "garbage",
        "stale",
        "future",
        "other secret",
        "other body",
    ],
)
def test_an_event_that_does_not_verify_is_400_and_stored_nowhere(
    client: TestClient, meter: CreditMeter, keys: Keys, signature: str | None
) -> None:
    starter(meter)
    purchase_id = meter.checkout("acme", "starter", success_url="https://x.com").purchase_id
    payload = completed(purchase_id, purchase_id=purchase_id)
    now = int(time.time())
    headers = {
        "stale": signed(meter, payload, timestamp=now - 301),
        "future": signed(meter, payload, timestamp=now + 400),
        "other secret": {"Stripe-Signature": sign(payload, "whsec_other")},
        "other body": signed(meter, payload + b" "),
    }.get(signature or "", {} if signature is None else {"Stripe-Signature": signature})

    response = client.post(PATH, content=payload, headers=headers)

    error = refused(response, 400, "invalid_signature")
    assert error["message"]
    assert meter.payment_events() == []
    assert drain(meter) == 0
    assert meter.purchase(purchase_id).status is PurchaseStatus.PENDING


def test_a_signature_just_inside_the_tolerance_verifies(
    client: TestClient, meter: CreditMeter
) -> None:
    payload = completed("pur_x", event_id="evt_recent")

    response = client.post(
        PATH, content=payload, headers=signed(meter, payload, timestamp=int(time.time()) - 290)
    )

    assert ok(response) == {"received": True, "duplicate": False}


@pytest.mark.parametrize(
    "payload",
    [b"", b"[]", b"not json", b'{"id": "evt_1"}', b'{"id": "evt_1", "type": "x"}', b"\xff\xfe"],
)
def test_a_signed_body_that_is_no_event_is_400_and_stored_nowhere(
    client: TestClient, meter: CreditMeter, payload: bytes
) -> None:
    response = client.post(PATH, content=payload, headers=signed(meter, payload))

    refused(response, 400, "invalid_signature")
    assert meter.payment_events() == []


def test_an_event_about_nothing_known_is_flagged_for_a_person(
    client: TestClient, meter: CreditMeter, keys: Keys
) -> None:
    payload = completed("pur_unknown", event_id="evt_orphan")

    ok(client.post(PATH, content=payload, headers=signed(meter, payload)))
    drain(meter)
    flagged = ok(
        client.get("/v1/admin/payment-events?status=flagged", headers=keys.header("admin"))
    )

    (event,) = flagged["data"]
    assert (event["id"], event["type"], event["status"]) == (
        "evt_orphan",
        "checkout.session.completed",
        "flagged",
    )
    assert event["note"]
    assert event["purchase_id"] is None


def test_an_event_of_a_type_not_acted_on_is_stored_and_ignored(
    client: TestClient, meter: CreditMeter, keys: Keys
) -> None:
    payload = json.dumps(
        {"id": "evt_cust", "type": "customer.created", "data": {"object": {"id": "cus_1"}}}
    ).encode()

    ok(client.post(PATH, content=payload, headers=signed(meter, payload)))
    drain(meter)

    (event,) = ok(client.get("/v1/admin/payment-events", headers=keys.header("admin")))["data"]
    assert (event["type"], event["status"]) == ("customer.created", "ignored")


def test_a_body_too_large_for_an_event_is_413_unread(
    client: TestClient, meter: CreditMeter
) -> None:
    payload = b"{" + b" " * MAX_EVENT_BYTES + b"}"

    response = client.post(PATH, content=payload, headers=signed(meter, payload))

    refused(response, 413, "payload_too_large")
    assert meter.payment_events() == []
