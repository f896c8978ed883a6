"""A webhook receiver: verify each delivery with ``standardwebhooks``, skip an event id
seen before, answer 2xx at once. Run as a script, it starts the receiver on loopback and
a creditmeter on a temporary SQLite database that sells a credit pack and delivers the
purchase's event to it (twice: the second is a redelivery, skipped)."""

from __future__ import annotations

import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

SECRET: list[str] = []
"""The endpoint's signing secret (``whsec_…``), shown once when it was created."""
handled: set[str] = set()
"""Event ids already handled: in production, a table with the id as its primary key."""


def receive(body: bytes, headers: dict[str, str]) -> int:
    """The status to answer a delivery with."""
    try:
        event = Webhook(SECRET[0]).verify(body, headers)  # forged or stale: refused
    except WebhookVerificationError:
        return 400
    if event["id"] in handled:
        return 200  # at least once: a repeat is acknowledged, not applied again
    handled.add(event["id"])
    print(f"{event['type']}: {event['data']['credits']} credits for {event['data']['account_id']}")
    return 200


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(receive(body, dict(self.headers.items())))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


if __name__ == "__main__":
    from creditmeter import CreditMeter
    from creditmeter.payments.dev import DevProvider

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    with tempfile.TemporaryDirectory() as tmp:
        database = f"sqlite:///{Path(tmp) / 'example.db'}"
        dev = DevProvider()
        with CreditMeter(database, payments=dev, webhook_allow_private=True) as meter:
            endpoint, secret = meter.create_webhook_endpoint(
                url, event_types=["purchase.fulfilled"]
            )
            SECRET.append(secret)
            meter.create_account("acme")
            meter.put_package("starter", credits=1000, price=999, currency="usd")
            checkout = meter.checkout("acme", "starter", success_url="https://example.com")
            dev.complete(meter.purchase(checkout.purchase_id))
            while meter.work():
                pass
            [delivery] = meter.webhook_deliveries(endpoint.id)
            meter.redeliver_webhook(endpoint.id, delivery.id)  # the same id, once more
            while meter.work():
                pass
            print(f"deliveries: {len(meter.webhook_deliveries(endpoint.id))}")
    server.shutdown()
    server.server_close()
