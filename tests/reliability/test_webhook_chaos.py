"""Webhook chaos against a live ``creditmeter serve``, on SQLite and PostgreSQL.

Signed ``checkout.session.completed`` events (built and signed with Stripe's scheme) for
many purchases are delivered 1 to 5 times each, with ``payment_intent.succeeded`` events
for some of the same payments, shuffled, from 16 threads at once; among them forged
signatures, stale timestamps, payments of the wrong amount and payment links naming
accounts that do not exist. Every purchase paid correctly must be fulfilled exactly once;
a delivery whose signature does not verify gets 400 and stores nothing; the wrong
amounts and unknown accounts are stored, flagged, and credit nothing. About 1,000
deliveries per engine; ``--reliability-long`` makes it 20 times as many.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest

from creditmeter import CreditMeter
from creditmeter.core.payments import PurchaseStatus
from creditmeter.payments.signature import TOLERANCE_SECONDS, sign
from tests.client.conftest import Server, start_server
from tests.reliability.conftest import Reliability
from tests.service.payment_events import webhook_secret

ADMIN_KEY = "chaos-admin-key-of-32-characters-or-more"
PURCHASES = 280
ACCOUNTS = 8
THREADS = 16
PACK_CREDITS, PACK_BONUS, PACK_PRICE = 100, 10, 500
STALLED_SECONDS = 60.0
"""How long the events left to apply may go without one applied: how long applying them
all takes depends on how many there are and on the machine's speed."""


@dataclass(frozen=True)
class Delivery:
    kind: str
    """``good``, ``repeat``, ``forged`` or ``stale``."""
    event_id: str
    body: bytes
    signature: str


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[Server]:
    served = start_server(
        database_url,
        tmp_path / "serve.log",
        "--payments",
        "dev",
        admin_key=ADMIN_KEY,
        # Every delivery comes from this machine's address: what is under test is how they
        # are applied, not that address's rate limit.
        env={"CREDITMETER_WORKER_INTERVAL": "0.05", "CREDITMETER_RATE_LIMIT_ADDRESS": "off"},
    )
    try:
        yield served
    finally:
        served.stop()


def event(event_id: str, kind: str, obj: dict[str, Any]) -> bytes:
    body = {"id": event_id, "object": "event", "type": kind, "data": {"object": obj}}
    return json.dumps(body).encode()


def session(purchase: dict[str, Any], amount: int = PACK_PRICE) -> dict[str, Any]:
    return {
        "id": purchase["session_id"],
        "object": "checkout.session",
        "payment_status": "paid",
        "amount_total": amount,
        "currency": "usd",
        "payment_intent": f"pi_chaos_{purchase['purchase_id']}",
        "metadata": {
            "account_id": purchase["account"],
            "package_id": "pack",
            "purchase_id": purchase["purchase_id"],
        },
    }


def intent(purchase: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"pi_chaos_{purchase['purchase_id']}",
        "object": "payment_intent",
        "status": "succeeded",
        "amount": PACK_PRICE,
        "amount_received": PACK_PRICE,
        "currency": "usd",
        "metadata": {
            "account_id": purchase["account"],
            "package_id": "pack",
            "purchase_id": purchase["purchase_id"],
        },
    }


def signed(secret: str, kind: str, event_id: str, body: bytes) -> Delivery:
    if kind == "forged":
        return Delivery(kind, event_id, body, sign(body, "whsec_forged"))
    if kind == "stale":
        old = int(time.time()) - TOLERANCE_SECONDS - 60
        return Delivery(kind, event_id, body, sign(body, secret, old))
    return Delivery(kind, event_id, body, sign(body, secret))


def start_purchases(server: Server, count: int) -> tuple[list[str], list[dict[str, Any]]]:
    """The pack, the accounts, and ``count`` pending purchases spread over them."""
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with httpx2.Client(base_url=server.url, headers=headers, timeout=30) as http:
        pack = {
            "credits": PACK_CREDITS,
            "bonus_credits": PACK_BONUS,
            "price": {"amount": PACK_PRICE, "currency": "usd"},
        }
        assert http.put("/v1/packages/pack", json=pack).status_code == 200
        accounts = [f"chaos-{n}" for n in range(ACCOUNTS)]
        for account in accounts:
            assert http.post("/v1/accounts", json={"id": account}).status_code == 200
        purchases = []
        for n in range(count):
            account = accounts[n % ACCOUNTS]
            started = http.post(
                f"/v1/accounts/{account}/checkout",
                json={"package": "pack", "success_url": "https://app.example/paid"},
            )
            assert started.status_code == 200, started.text
            purchases.append({**started.json(), "account": account})
    return accounts, purchases


def chaos(
    rng: random.Random,
    paid: list[dict[str, Any]],
    unpaid: list[dict[str, Any]],
    ghosts: int,
    secret: str,
) -> list[Delivery]:
    """Shuffled deliveries: each paid purchase's event 1–5 times, some with its payment
    intent's event too, some with a forged or stale copy or an event for a wrong amount;
    only forged or stale deliveries for the unpaid ones; payment links for ``ghosts``
    accounts that do not exist."""
    deliveries: list[Delivery] = []
    for n, p in enumerate(unpaid):
        kind = "forged" if n % 2 else "stale"
        event_id = f"evt_{kind}_{p['purchase_id']}"
        body = event(event_id, "checkout.session.completed", session(p))
        deliveries += [signed(secret, kind, event_id, body)] * rng.randint(1, 3)
    for p in paid:
        event_id = f"evt_paid_{p['purchase_id']}"
        body = event(event_id, "checkout.session.completed", session(p))
        copies = rng.randint(1, 5)
        deliveries.append(signed(secret, "good", event_id, body))
        deliveries += [signed(secret, "repeat", event_id, body)] * (copies - 1)
        if rng.random() < 0.3:  # the payment intent's own event, for the same payment
            other = f"evt_intent_{p['purchase_id']}"
            body = event(other, "payment_intent.succeeded", intent(p))
            deliveries.append(signed(secret, "good", other, body))
        if rng.random() < 0.15:  # a forged or stale copy of the real event
            deliveries.append(signed(secret, rng.choice(["forged", "stale"]), event_id, body))
        if rng.random() < 0.1:  # an event for the wrong amount: flagged
            wrong = f"evt_wrong_{p['purchase_id']}"
            body = event(wrong, "checkout.session.completed", session(p, amount=1))
            deliveries.append(signed(secret, "good", wrong, body))
    for n in range(ghosts):
        ghost = {"purchase_id": "", "account": f"ghost-{n}", "session_id": f"cs_ghost_{n}"}
        obj = session(ghost)
        obj["metadata"] = {"account_id": f"ghost-{n}", "package_id": "pack"}
        body = event(f"evt_ghost_{n}", "checkout.session.completed", obj)
        deliveries.append(signed(secret, "good", f"evt_ghost_{n}", body))
    rng.shuffle(deliveries)
    return deliveries


def deliver_all(server: Server, deliveries: list[Delivery]) -> Counter[tuple[str, int]]:
    """Post every delivery from ``THREADS`` threads at once; the answers by kind."""
    local = threading.local()
    clients: list[httpx2.Client] = []

    def deliver(d: Delivery) -> tuple[str, int]:
        if not hasattr(local, "http"):
            local.http = httpx2.Client(base_url=server.url, timeout=30)
            clients.append(local.http)
        response = local.http.post(
            "/v1/webhooks/stripe", content=d.body, headers={"Stripe-Signature": d.signature}
        )
        return d.kind, response.status_code

    try:
        with ThreadPoolExecutor(THREADS) as pool:
            return Counter(pool.map(deliver, deliveries))
    finally:
        for client in clients:
            client.close()


def wait_until_applied(library: CreditMeter) -> None:
    """Until no event is left to apply, as long as the service keeps applying them."""
    left = len(library.payment_events(status="received", limit=100_000))
    progressed = time.monotonic()
    while left:
        time.sleep(0.2)
        now_left = len(library.payment_events(status="received", limit=100_000))
        if now_left < left:
            left, progressed = now_left, time.monotonic()
        stalled = time.monotonic() - progressed
        assert stalled < STALLED_SECONDS, (
            f"{left} events left to apply, none applied in {stalled:.0f} s"
        )


def test_every_purchase_is_fulfilled_exactly_once_under_webhook_chaos(
    server: Server, reliability: Reliability
) -> None:
    rng = random.Random(reliability.seed)
    accounts, purchases = start_purchases(server, PURCHASES * reliability.scale)
    rng.shuffle(purchases)
    unpaid, paid = purchases[:10], purchases[10:]
    with CreditMeter(server.database_url, migrate=False) as library:
        secret = webhook_secret(library)  # the server's: random to the database
    deliveries = chaos(rng, paid, unpaid, ghosts=10 * reliability.scale, secret=secret)

    began = time.monotonic()
    answers = deliver_all(server, deliveries)
    delivered_in = time.monotonic() - began

    ok, refused = {("good", 200), ("repeat", 200)}, {("forged", 400), ("stale", 400)}
    assert set(answers) <= ok | refused, answers
    with CreditMeter(server.database_url, migrate=False) as library:
        wait_until_applied(library)
        applied_in = time.monotonic() - began
        events = library.payment_events(limit=100_000)
        good = {d.event_id for d in deliveries if d.kind == "good"}
        assert {e["id"] for e in events} == good  # nothing forged or stale stored
        flagged = {e["id"] for e in events if e["status"] == "flagged"}
        assert flagged == {i for i in good if i.startswith(("evt_wrong_", "evt_ghost_"))}
        for p in purchases:
            expected = PurchaseStatus.FULFILLED if p in paid else PurchaseStatus.PENDING
            assert library.purchase(p["purchase_id"]).status is expected
        for account in accounts:
            bought = sum(1 for p in paid if p["account"] == account)
            assert library.balance(account).available == bought * (PACK_CREDITS + PACK_BONUS)
            credited = list(library.iter_transactions(account, types=("purchase",)))
            assert len(credited) == bought
        assert [a.id for a in library.list_accounts(limit=1000)] == sorted(accounts)
        assert library.verify() == []

    kinds = Counter(d.kind for d in deliveries)
    statuses = Counter(e["status"] for e in events)
    print(
        f"\nwebhook chaos on {server.database_url.split(':')[0]}: {len(deliveries)} deliveries "
        f"({kinds['good']} first, {kinds['repeat']} repeats, {kinds['forged']} forged, "
        f"{kinds['stale']} stale) from {THREADS} threads in {delivered_in:.1f} s, all applied "
        f"after {applied_in:.1f} s; {len(paid)} purchases fulfilled once each; events "
        f"{dict(statuses)}; 0 violations"
    )
