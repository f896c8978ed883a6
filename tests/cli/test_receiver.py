"""The demo's webhook receiver verifies what it is sent with ``standardwebhooks``."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx2
import pytest
from standardwebhooks import Webhook

from creditmeter.cli.receiver import DemoReceiver, summary

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


@pytest.fixture
def receiver() -> Iterator[DemoReceiver]:
    told: list[str] = []
    started = DemoReceiver(tell=told.append, secret=SECRET).start()
    yield started
    started.stop()


def post(receiver: DemoReceiver, event_id: str, signed: datetime, secret: str = SECRET) -> int:
    body = json.dumps(
        {
            "id": event_id,
            "type": "balance.low",
            "created_at": "2026-03-10T12:00:00Z",
            "data": {"account_id": "acme", "available": 980, "threshold": 1000},
        }
    )
    headers = {
        "webhook-id": event_id,
        "webhook-timestamp": str(int(signed.timestamp())),
        "webhook-signature": Webhook(secret).sign(event_id, signed, body),
        "Content-Type": "application/json",
    }
    return httpx2.post(receiver.url, content=body, headers=headers).status_code


def test_a_signed_event_is_told_once(receiver: DemoReceiver) -> None:
    now = datetime.now(UTC)  # standardwebhooks judges the timestamp by this process's clock
    assert post(receiver, "job_1", now) == 200
    assert post(receiver, "job_1", now) == 200, "a repeat is acknowledged"
    assert [(e.id, e.type) for e in receiver.events] == [("job_1", "balance.low")]
    assert receiver.refused == 0


def test_a_forged_or_stale_delivery_is_refused(receiver: DemoReceiver) -> None:
    other = "whsec_" + base64.b64encode(b"another secret of thirty-two b!!").decode()
    now = datetime.now(UTC)
    assert post(receiver, "job_1", now, secret=other) == 400
    assert post(receiver, "job_2", now - timedelta(hours=1)) == 400
    assert receiver.events == []
    assert receiver.refused == 2


def test_the_summary_of_an_event() -> None:
    paid = {"account_id": "acme", "purchase_id": "p", "credits": 11000, "amount": 1999}
    assert (
        summary("purchase.fulfilled", {**paid, "currency": "usd"})
        == "acme: 11,000 credits bought for 19.99 USD"
    )
    allowance = {"account_id": "acme", "percentage": 90, "used": 18031, "limit": 20000}
    assert (
        summary("allowance.threshold", allowance)
        == "acme: 90 % of the allowance used (18,031 of 20,000)"
    )
    assert summary("hold.expired", {"account_id": "a", "hold_id": "h", "credits": 5}) == (
        'a: {"hold_id": "h", "credits": 5}'
    )
