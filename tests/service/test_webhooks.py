"""Fan-out of an event to webhook endpoints: once per endpoint that hears it, however
often the event's job runs."""

from __future__ import annotations

from datetime import timedelta

import pytest

from creditmeter import CreditMeter
from creditmeter.service import webhooks
from creditmeter.store import outbox
from creditmeter.store.outbox import Job


def test_an_event_run_again_queues_no_second_delivery(meter: CreditMeter) -> None:
    hears = meter.create_webhook_endpoint("https://a.example/hooks")[0]
    meter.create_webhook_endpoint("https://b.example/hooks", event_types=["purchase.refunded"])
    meter.create_webhook_endpoint("https://c.example/hooks", enabled=False)
    now = meter.clock()
    job = Job("job_1", "event.purchase.failed", {"account_id": "acme", "reason": "x"}, 1, now)

    with meter.db.write() as conn:
        assert webhooks.fan_out(conn, now, job) == 1
        assert webhooks.fan_out(conn, now, job) == 0
        [delivery] = outbox.take(conn, now, timedelta(seconds=60), 10)

    assert delivery.topic == webhooks.DELIVER_JOB
    assert delivery.payload == {
        "endpoint_id": hears.id,
        "event": {
            "id": "job_1",
            "type": "purchase.failed",
            "created_at": now.isoformat().replace("+00:00", "Z"),
            "data": {"account_id": "acme", "reason": "x"},
        },
    }


def test_a_delivery_goes_to_the_address_checked_with_the_host_s_name_kept() -> None:
    pinned = webhooks.public_address("https://93.184.216.34:8443/hooks?x=1")
    assert str(pinned.url) == "https://93.184.216.34:8443/hooks?x=1"
    assert (pinned.host, pinned.name) == ("93.184.216.34:8443", "93.184.216.34")
    v6 = webhooks.public_address("http://[2606:4700::1111]/hooks")
    assert (str(v6.url), v6.host) == ("http://[2606:4700::1111]/hooks", "[2606:4700::1111]")


def test_a_host_that_resolves_to_a_private_address_is_refused() -> None:
    for url, why in (
        ("http://localhost/hooks", "a loopback address"),
        ("http://2130706433/hooks", "127.0.0.1, a loopback address"),
        ("http://[::ffff:a00:1]/hooks", "a private address"),
    ):
        with pytest.raises(webhooks.Refused, match=why):
            webhooks.public_address(url)
