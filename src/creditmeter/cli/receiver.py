"""The webhook receiver of ``creditmeter demo``: an HTTP server on loopback, in a thread
of the demo's process, that verifies each delivery with ``standardwebhooks`` as any
receiver should, skips an event id it has had before, and tells what it got."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from creditmeter.core.payments import amount_text

PATH = "/hooks"


@dataclass
class Received:
    id: str
    type: str
    data: dict[str, Any]


@dataclass
class DemoReceiver:
    """Start it, create the endpoint with its :attr:`url`, give it the endpoint's secret;
    ``tell`` is called with a line for each new event."""

    tell: Callable[[str], None] = print
    secret: str = ""
    events: list[Received] = field(default_factory=list)
    refused: int = 0
    """Deliveries whose signature did not verify (or was stale): answered 400."""
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the receiver is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}{PATH}"

    def start(self) -> DemoReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status = receiver.receive(body, dict(self.headers.items()))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def receive(self, body: bytes, headers: Mapping[str, str]) -> int:
        """The status to answer a delivery with: 400 if it is forged or stale, else 200
        (a repeat of an event id is acknowledged and not told again)."""
        try:
            event = Webhook(self.secret).verify(body, dict(headers))
        except WebhookVerificationError:
            with self._lock:
                self.refused += 1
            return 400
        with self._lock:
            if any(e.id == event["id"] for e in self.events):
                return 200
            received = Received(str(event["id"]), str(event["type"]), dict(event["data"]))
            self.events.append(received)
        self.tell(
            f"  webhook received  {received.type:<22} {summary(received.type, received.data)}"
        )
        return 200


def summary(event_type: str, data: Mapping[str, Any]) -> str:
    """A short line of what an event says."""
    account = str(data.get("account_id", ""))
    match event_type:
        case "balance.low" | "balance.critical" | "balance.recovered":
            return (
                f"{account}: {data['available']:,} credits available (line {data['threshold']:,})"
            )
        case "allowance.threshold":
            return (
                f"{account}: {data['percentage']} % of the allowance used "
                f"({data['used']:,} of {data['limit']:,})"
            )
        case "purchase.fulfilled":
            paid = ""
            if "amount" in data and "currency" in data:
                paid = f" for {amount_text(data['amount'], data['currency'])} "
                paid += str(data["currency"]).upper()
            return f"{account}: {data['credits']:,} credits bought{paid}"
        case "recharge.succeeded":
            return f"{account}: recharged {data['credits']:,} credits"
        case "period.renewed":
            return f"{account}: new period, {data['allowance']:,} credits of allowance"
    rest = {k: v for k, v in data.items() if k != "account_id"}
    return f"{account}: {json.dumps(rest)}" if account else json.dumps(rest)
