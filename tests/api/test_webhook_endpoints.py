"""Outgoing webhooks over HTTP: endpoints managed by superadmins, events delivered signed
to a real receiver on loopback, failures logged and retried with the outbox's backoff."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from creditmeter import CreditMeter
from creditmeter.core.retries import DELIVERY
from tests.api.conftest import Keys
from tests.api.test_payments import bought, dev, drain, starter
from tests.conftest import Clock

Json = dict[str, Any]
ENDPOINTS = "/v1/webhook-endpoints"
HANG = 0
SEED = 20


@pytest.fixture(autouse=True)
def loopback_receivers(meter: CreditMeter) -> None:
    """Receivers on loopback allowed, as ``CREDITMETER_WEBHOOK_ALLOW_PRIVATE=true`` does;
    retries' jitter drawn from a seeded source, so every delay is known."""
    meter.webhook_allow_private = True
    meter.retry_random = random.Random(SEED)


@pytest.fixture
def clock() -> Clock:
    """Near the wall clock: a receiver refuses signatures more than five minutes off."""
    return Clock(datetime.now(UTC).replace(microsecond=0))


@dataclass
class Receiver:
    """An HTTP server on loopback that keeps what it is sent and answers each request
    with the next of ``answers`` (200 once they run out)."""

    url: str
    answers: list[int] = field(default_factory=list)
    """Status codes to answer with, in turn; ``HANG``: no answer until ``released``."""
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    released: threading.Event = field(default_factory=threading.Event)

    def verified(self, secret: str) -> list[Json]:
        """The bodies received, each checked against its signature."""
        return [Webhook(secret).verify(body, headers) for headers, body in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.received.append((dict(self.headers.items()), body))
            answer = state.answers.pop(0) if state.answers else 200
            if answer == HANG:
                state.released.wait()
                answer = 200
            self.send_response(answer)
            if 300 <= answer < 400:
                self.send_header("Location", state.url + "/redirected")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    try:
        yield state
    finally:
        state.released.set()
        server.shutdown()
        server.server_close()
        thread.join()


def ok(response: Any, status: int = 200) -> Json:
    assert response.status_code == status, response.text
    body: Json = response.json()
    return body


def create(client: TestClient, keys: Keys, **body: Any) -> Json:
    return ok(client.post(ENDPOINTS, json=body, headers=keys.header("superadmin")), 201)


def retried(client: TestClient, keys: Keys, endpoint_id: str, clock: Clock) -> None:
    """Move the clock to the endpoint's latest delivery's retry."""
    latest = deliveries(client, keys, endpoint_id)[0]
    clock.now = datetime.fromisoformat(latest["next_retry_at"])


def deliveries(client: TestClient, keys: Keys, endpoint_id: str) -> list[Json]:
    found = ok(
        client.get(f"{ENDPOINTS}/{endpoint_id}/deliveries", headers=keys.header("superadmin"))
    )
    data: list[Json] = found["data"]
    return data


def test_a_fulfilled_purchase_is_delivered_once_signed(
    client: TestClient, meter: CreditMeter, keys: Keys, receiver: Receiver
) -> None:
    endpoint = create(client, keys, url=receiver.url, description="billing")
    assert endpoint["secret"].startswith("whsec_")
    assert endpoint["event_types"] == ["*"]
    assert endpoint["enabled"] is True
    starter(meter)

    purchase = bought(meter)
    drain(meter)

    [event] = receiver.verified(endpoint["secret"])
    assert event["type"] == "purchase.fulfilled"
    assert event["created_at"] == meter.clock().isoformat().replace("+00:00", "Z")
    assert event["data"] == {
        "account_id": "acme",
        "purchase_id": purchase.id,
        "credits": purchase.credits,
        "amount": 999,
        "currency": "usd",
    }
    [(headers, _)] = receiver.received
    assert headers["webhook-id"] == event["id"]
    assert headers["webhook-timestamp"] == str(int(meter.clock().timestamp()))
    [logged] = deliveries(client, keys, endpoint["id"])
    assert logged["event_id"] == event["id"]
    assert logged["event_type"] == "purchase.fulfilled"
    assert (logged["attempt"], logged["status_code"], logged["error"]) == (1, 200, None)
    assert logged["next_retry_at"] is None
    assert logged["latency_ms"] >= 0


def test_a_receiver_that_fails_is_retried_with_backoff_and_each_attempt_logged(
    client: TestClient, meter: CreditMeter, keys: Keys, receiver: Receiver, clock: Clock
) -> None:
    endpoint = create(client, keys, url=receiver.url, event_types=["purchase.fulfilled"])
    receiver.answers = [500]
    starter(meter)
    bought(meter)

    [failed] = deliveries(client, keys, endpoint["id"])
    assert (failed["attempt"], failed["status_code"], failed["error"]) == (1, 500, "HTTP 500")
    delay = DELIVERY.delay(1, random.Random(SEED))
    assert delay is not None
    assert timedelta(seconds=5) <= delay <= timedelta(seconds=6)
    due = clock.now + delay
    assert datetime.fromisoformat(failed["next_retry_at"]) == due
    clock.advance(seconds=4)
    assert drain(meter) == 0, "not before its retry is due"

    clock.now = due
    assert drain(meter) == 1

    first, second = receiver.verified(endpoint["secret"])
    assert first == second, "the same event, with the same id"
    assert receiver.received[0][0]["webhook-id"] == receiver.received[1][0]["webhook-id"]
    latest, _ = deliveries(client, keys, endpoint["id"])
    assert (latest["attempt"], latest["status_code"], latest["error"]) == (2, 200, None)
    assert latest["next_retry_at"] is None
    assert meter.jobs()["pending"] == 0


def test_a_receiver_that_does_not_answer_in_time_is_a_failure_retried(
    client: TestClient, meter: CreditMeter, keys: Keys, receiver: Receiver, clock: Clock
) -> None:
    meter.webhook_timeout = 0.2
    endpoint = create(client, keys, url=receiver.url)
    receiver.answers = [HANG]
    starter(meter)
    bought(meter)
    receiver.released.set()

    [late] = deliveries(client, keys, endpoint["id"])
    assert late["status_code"] is None
    assert late["error"].startswith("ReadTimeout")
    retried(client, keys, endpoint["id"], clock)
    assert drain(meter) == 1
    assert [d["status_code"] for d in deliveries(client, keys, endpoint["id"])] == [200, None]


def test_a_receiver_that_cannot_be_reached_is_logged_without_a_status(
    client: TestClient, meter: CreditMeter, keys: Keys, receiver: Receiver
) -> None:
    endpoint = create(client, keys, url="http://127.0.0.1:9/nobody")
    starter(meter)
    bought(meter)

    [failed] = deliveries(client, keys, endpoint["id"])
    assert failed["status_code"] is None
    assert failed["error"].startswith("ConnectError")
    assert failed["next_retry_at"] is not None


def test_an_endpoint_hears_only_its_event_types_and_only_while_enabled(
    client: TestClient, meter: CreditMeter, keys: Keys, receiver: Receiver
) -> None:
    refunds = create(client, keys, url=receiver.url + "/refunds", event_types=["purchase.refunded"])
    create(client, keys, url=receiver.url + "/off", enabled=False)
    sales = create(client, keys, url=receiver.url + "/sales", event_types=["purchase.fulfilled"])
    starter(meter)

    bought(meter)

    [(headers, _)] = receiver.received
    assert [e["type"] for e in receiver.verified(sales["secret"])] == ["purchase.fulfilled"]
    assert deliveries(client, keys, refunds["id"]) == []
    assert headers["webhook-id"] == deliveries(client, keys, sales["id"])[0]["event_id"]


def test_an_endpoint_is_managed_by_superadmins_and_each_change_audited(
    client: TestClient, meter: CreditMeter, keys: Keys
) -> None:
    boss, secret = meter.create_api_key("superadmin", name="boss")
    as_boss = {"Authorization": f"Bearer {secret}"}
    body = {"url": "https://example.com/hooks", "event_types": ["purchase.failed"]}
    for role in ("service", "admin", "account"):
        assert client.post(ENDPOINTS, json=body, headers=keys.header(role)).status_code == 403
        assert client.get(ENDPOINTS, headers=keys.header(role)).status_code == 403
    assert meter.webhook_endpoints() == []

    made = ok(client.post(ENDPOINTS, json=body, headers=as_boss), 201)
    path = f"{ENDPOINTS}/{made['id']}"
    [listed] = ok(client.get(ENDPOINTS, headers=as_boss))["data"]
    assert "secret" not in listed
    assert listed == ok(client.get(path, headers=as_boss))
    assert listed == {k: v for k, v in made.items() if k != "secret"}
    for role in ("service", "admin", "account"):
        assert (
            client.patch(path, json={"enabled": False}, headers=keys.header(role)).status_code
            == 403
        )
        assert client.delete(path, headers=keys.header(role)).status_code == 403

    changed = ok(client.patch(path, json={"enabled": False}, headers=as_boss))
    assert changed["enabled"] is False
    assert changed["url"] == body["url"]
    assert client.delete(path, headers=as_boss).status_code == 204
    assert client.get(path, headers=as_boss).status_code == 404
    assert client.delete(path, headers=as_boss).status_code == 404

    log = ok(client.get("/v1/audit-log", params={"actor": boss.id}, headers=as_boss))["data"]
    assert [(e["action"], e["subject"], e["actor_key_id"]) for e in reversed(log)] == [
        ("webhook_endpoint.created", made["id"], boss.id),
        ("webhook_endpoint.updated", made["id"], boss.id),
        ("webhook_endpoint.deleted", made["id"], boss.id),
    ]
    assert log[1]["details"] == {"enabled": {"from": True, "to": False}}
    assert all(secret not in str(e) and made["secret"] not in str(e) for e in log)


@pytest.mark.parametrize(
    "body",
    [
        {"url": "ftp://example.com/hooks"},
        {"url": "/hooks"},
        {"url": "https://example.com", "event_types": []},
        {"url": "https://example.com", "event_types": ["purchase.fulfiled"]},
        {"url": "https://example.com", "enabled": "yes"},
        {"url": "https://example.com", "secret": "whsec_mine"},
    ],
)
def test_a_bad_endpoint_is_422_and_creates_nothing(
    client: TestClient, meter: CreditMeter, keys: Keys, body: Json
) -> None:
    response = client.post(ENDPOINTS, json=body, headers=keys.header("superadmin"))
    assert response.status_code == 422, response.text
    assert meter.webhook_endpoints() == []


def test_a_bad_change_is_422_and_changes_nothing(
    client: TestClient, meter: CreditMeter, keys: Keys
) -> None:
    made = create(client, keys, url="https://example.com/hooks")
    path = f"{ENDPOINTS}/{made['id']}"
    for change in ({"url": "mailto:x@example.com"}, {"event_types": ["nothing.happened"]}):
        response = client.patch(path, json=change, headers=keys.header("superadmin"))
        assert response.status_code == 422, response.text
    assert meter.webhook_endpoint(made["id"]).url == "https://example.com/hooks"
    missing = client.patch(f"{ENDPOINTS}/whe_none", json={}, headers=keys.header("superadmin"))
    assert missing.status_code == 404


def test_an_endpoint_deleted_before_delivery_is_sent_nothing(
    client: TestClient, meter: CreditMeter, keys: Keys, receiver: Receiver
) -> None:
    endpoint = create(client, keys, url=receiver.url)
    starter(meter)
    started = meter.checkout("acme", "starter", success_url="https://example.com/done")
    dev(meter).complete(meter.purchase(started.purchase_id))
    assert meter.work() == 1, "the payment, which queues the purchase's event"
    assert meter.work() == 1, "the event, which queues its delivery"
    assert meter.jobs()["pending"] == 1
    meter.delete_webhook_endpoint(endpoint["id"])

    drain(meter)

    assert receiver.received == []
    jobs = meter.jobs()
    assert (jobs["pending"], jobs["dead"]) == (0, 0)


def test_an_endpoint_failing_every_delivery_is_disabled_and_audited(
    client: TestClient,
    meter: CreditMeter,
    keys: Keys,
    receiver: Receiver,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    meter.webhook_disable_after = 3
    endpoint = create(client, keys, url=receiver.url)
    path = f"{ENDPOINTS}/{endpoint['id']}"
    receiver.answers = [500] * 10
    starter(meter)
    bought(meter)
    for ran in (1, 2):  # the third failure queues a webhook_endpoint.disabled event too
        assert ok(client.get(path, headers=keys.header("superadmin")))["enabled"] is True
        retried(client, keys, endpoint["id"], clock)
        assert drain(meter) == ran

    shown = ok(client.get(path, headers=keys.header("superadmin")))
    assert (shown["enabled"], shown["failures"]) == (False, 3)
    reason = "disabled after 3 failed deliveries in a row; last: HTTP 500"
    assert shown["disabled_reason"] == reason
    [entry] = ok(
        client.get(
            "/v1/audit-log",
            params={"action": "webhook_endpoint.disabled"},
            headers=keys.header("superadmin"),
        )
    )["data"]
    assert (entry["actor_kind"], entry["actor_key_id"]) == ("system", None)
    assert (entry["subject"], entry["details"]) == (
        endpoint["id"],
        {"failures": 3, "reason": reason},
    )
    [warning] = [r for r in caplog.records if "disabled after" in r.getMessage()]
    assert warning.levelname == "WARNING"
    assert endpoint["id"] in warning.getMessage()

    retried(client, keys, endpoint["id"], clock)
    assert drain(meter) == 1, "the retry is due, and finds its endpoint disabled"
    assert len(receiver.received) == 3
    assert meter.jobs()["pending"] == 0

    again = ok(client.patch(path, json={"enabled": True}, headers=keys.header("superadmin")))
    assert (again["enabled"], again["failures"], again["disabled_reason"]) == (True, 0, None)


def test_a_delivery_that_succeeds_ends_the_run_of_failures(
    client: TestClient, meter: CreditMeter, keys: Keys, receiver: Receiver, clock: Clock
) -> None:
    meter.webhook_disable_after = 3
    endpoint = create(client, keys, url=receiver.url)
    receiver.answers = [500, 500, 200, 500, 500]
    starter(meter)
    bought(meter)
    for _ in range(2):
        retried(client, keys, endpoint["id"], clock)
        drain(meter)
    bought(meter)
    retried(client, keys, endpoint["id"], clock)
    drain(meter)

    assert len(receiver.received) == 5
    found = meter.webhook_endpoint(endpoint["id"])
    assert (found.enabled, found.failures, found.disabled_reason) == (True, 2, None)


def test_a_delivery_is_redelivered_with_the_same_id_once_per_request(
    client: TestClient, meter: CreditMeter, keys: Keys, receiver: Receiver
) -> None:
    endpoint = create(client, keys, url=receiver.url)
    starter(meter)
    bought(meter)
    [first] = deliveries(client, keys, endpoint["id"])
    path = f"{ENDPOINTS}/{endpoint['id']}/deliveries/{first['id']}/redeliver"
    for role in ("service", "admin", "account"):
        assert client.post(path, headers=keys.header(role)).status_code == 403
    assert meter.jobs()["pending"] == 0

    assert ok(client.post(path, headers=keys.header("superadmin")), 202) == {"queued": True}
    assert ok(client.post(path, headers=keys.header("superadmin")), 202) == {"queued": False}
    assert drain(meter) == 1

    original, again = receiver.verified(endpoint["secret"])
    assert original == again
    assert receiver.received[1][0]["webhook-id"] == first["event_id"]
    latest, _ = deliveries(client, keys, endpoint["id"])
    assert (latest["event_id"], latest["status_code"]) == (first["event_id"], 200)
    assert meter.redeliver_webhook(endpoint["id"], latest["id"]) is True


def test_a_redelivery_of_an_unknown_delivery_or_to_a_disabled_endpoint_queues_nothing(
    client: TestClient, meter: CreditMeter, keys: Keys, receiver: Receiver
) -> None:
    endpoint = create(client, keys, url=receiver.url)
    other = create(client, keys, url=receiver.url + "/other", event_types=["purchase.failed"])
    starter(meter)
    bought(meter)
    [delivery] = deliveries(client, keys, endpoint["id"])
    superadmin = keys.header("superadmin")
    base = f"{ENDPOINTS}/{endpoint['id']}/deliveries"

    assert client.post(f"{base}/whd_none/redeliver", headers=superadmin).status_code == 404
    elsewhere = f"{ENDPOINTS}/{other['id']}/deliveries/{delivery['id']}/redeliver"
    assert client.post(elsewhere, headers=superadmin).status_code == 404
    client.patch(f"{ENDPOINTS}/{endpoint['id']}", json={"enabled": False}, headers=superadmin)
    refused = client.post(f"{base}/{delivery['id']}/redeliver", headers=superadmin)
    assert refused.status_code == 422, refused.text
    assert meter.jobs()["pending"] == 0


def test_a_rotated_secret_signs_with_both_secrets_until_the_overlap_ends(
    client: TestClient, meter: CreditMeter, keys: Keys, receiver: Receiver, clock: Clock
) -> None:
    boss, key = meter.create_api_key("superadmin", name="boss")
    as_boss = {"Authorization": f"Bearer {key}"}
    endpoint = create(client, keys, url=receiver.url)
    path = f"{ENDPOINTS}/{endpoint['id']}/rotate-secret"
    for role in ("service", "admin", "account"):
        assert client.post(path, headers=keys.header(role)).status_code == 403
    starter(meter)

    rotated = ok(client.post(path, json={"overlap_seconds": 60}, headers=as_boss))
    old, new = endpoint["secret"], rotated["secret"]
    assert new.startswith("whsec_")
    assert new != old
    until = datetime.fromisoformat(rotated["previous_secret_until"])
    assert until == clock.now + timedelta(seconds=60)
    assert "secret" not in ok(client.get(f"{ENDPOINTS}/{endpoint['id']}", headers=as_boss))
    bought(meter)
    [(headers, _)] = receiver.received
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert receiver.verified(old) == receiver.verified(new)

    clock.advance(seconds=60)
    bought(meter)
    assert len(receiver.received[1][0]["webhook-signature"].split(" ")) == 1
    assert len(receiver.verified(new)) == 2
    with pytest.raises(WebhookVerificationError):
        receiver.verified(old)

    [entry] = ok(
        client.get(
            "/v1/audit-log",
            params={"action": "webhook_endpoint.secret_rotated"},
            headers=as_boss,
        )
    )["data"]
    assert (entry["subject"], entry["actor_key_id"]) == (endpoint["id"], boss.id)
    assert entry["details"] == {"previous_secret_until": rotated["previous_secret_until"]}
    assert old not in str(entry)
    assert new not in str(entry)


def test_a_rotation_keeps_the_old_secret_a_day_by_default_and_refuses_a_bad_overlap(
    client: TestClient, meter: CreditMeter, keys: Keys, clock: Clock
) -> None:
    endpoint = create(client, keys, url="https://example.com/hooks")
    path = f"{ENDPOINTS}/{endpoint['id']}/rotate-secret"
    superadmin = keys.header("superadmin")
    for overlap in (-1, 604_801, "1h"):
        refused = client.post(path, json={"overlap_seconds": overlap}, headers=superadmin)
        assert refused.status_code == 422, refused.text
    assert meter.webhook_endpoint(endpoint["id"]).previous_secret_until is None
    assert client.post(f"{ENDPOINTS}/whe_none/rotate-secret", headers=superadmin).status_code == 404

    rotated = ok(client.post(path, headers=superadmin))
    day = clock.now + timedelta(hours=24)
    assert datetime.fromisoformat(rotated["previous_secret_until"]) == day


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hooks",
        "http://[::1]/hooks",
        "http://[::ffff:127.0.0.1]/hooks",
        "http://localhost:8080/hooks",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.7/hooks",
        "http://[fd00::7]/hooks",
        "http://224.0.0.1/hooks",
        "http://240.0.0.1/hooks",
        "http://0.0.0.0/hooks",
    ],
)
def test_an_endpoint_at_a_private_address_is_422_unless_allowed(
    client: TestClient, meter: CreditMeter, keys: Keys, url: str
) -> None:
    meter.webhook_allow_private = False
    superadmin = keys.header("superadmin")
    refused = client.post(ENDPOINTS, json={"url": url}, headers=superadmin)
    assert refused.status_code == 422, refused.text
    assert "CREDITMETER_WEBHOOK_ALLOW_PRIVATE" in refused.text
    public = create(client, keys, url="https://example.com/hooks")
    moved = client.patch(f"{ENDPOINTS}/{public['id']}", json={"url": url}, headers=superadmin)
    assert moved.status_code == 422, moved.text
    assert meter.webhook_endpoint(public["id"]).url == "https://example.com/hooks"

    meter.webhook_allow_private = True
    assert create(client, keys, url=url)["url"] == url


@pytest.mark.parametrize("host", ["127.1", "2130706433", "0x7f.1"])
def test_a_name_that_resolves_to_a_private_address_is_sent_nothing(
    client: TestClient, meter: CreditMeter, keys: Keys, receiver: Receiver, host: str
) -> None:
    """The check at delivery, on the addresses the name resolves to then: these are not
    addresses as written, so they pass the check at creation."""
    port = receiver.url.split(":")[2].split("/")[0]
    meter.webhook_allow_private = False
    endpoint = create(client, keys, url=f"http://{host}:{port}/hooks")
    starter(meter)
    bought(meter)

    assert receiver.received == []
    [refused] = deliveries(client, keys, endpoint["id"])
    assert refused["status_code"] is None
    assert refused["error"].startswith("Refused: "), refused["error"]
    assert "127.0.0.1, a loopback address" in refused["error"]
    assert refused["next_retry_at"] is not None


def test_an_endpoint_whose_address_became_private_is_sent_nothing(
    client: TestClient, meter: CreditMeter, keys: Keys, receiver: Receiver
) -> None:
    """As when a name that resolved to a public address resolves to a private one later
    (DNS rebinding): what counts is the address at delivery."""
    meter.webhook_allow_private = True
    endpoint = create(client, keys, url=receiver.url)
    meter.webhook_allow_private = False
    starter(meter)
    bought(meter)

    assert receiver.received == []
    [refused] = deliveries(client, keys, endpoint["id"])
    assert refused["error"].startswith("Refused: 127.0.0.1 resolves to 127.0.0.1")


def test_a_redirect_is_a_failure_and_is_not_followed(
    client: TestClient, meter: CreditMeter, keys: Keys, receiver: Receiver
) -> None:
    endpoint = create(client, keys, url=receiver.url)
    receiver.answers = [302]
    starter(meter)
    bought(meter)

    [(headers, _)] = receiver.received
    assert headers["Host"] == receiver.url.split("/")[2]
    [redirected] = deliveries(client, keys, endpoint["id"])
    assert (redirected["status_code"], redirected["error"]) == (302, "HTTP 302")


def test_an_endpoint_disabled_for_failures_is_an_event_for_the_others(
    client: TestClient, meter: CreditMeter, keys: Keys, receiver: Receiver, clock: Clock
) -> None:
    meter.webhook_disable_after = 3
    failing = create(client, keys, url=receiver.url + "/failing")
    operators = create(
        client, keys, url=receiver.url + "/ops", event_types=["webhook_endpoint.disabled"]
    )
    receiver.answers = [500] * 3
    starter(meter)
    bought(meter)
    for _ in range(2):
        retried(client, keys, failing["id"], clock)
        drain(meter)

    assert len(receiver.received) == 4, "the disabled endpoint is not sent its own event"
    headers, body = receiver.received[3]
    told = Webhook(operators["secret"]).verify(body, headers)
    assert told["type"] == "webhook_endpoint.disabled"
    reason = "disabled after 3 failed deliveries in a row; last: HTTP 500"
    assert told["data"] == {
        "endpoint_id": failing["id"],
        "url": failing["url"],
        "failures": 3,
        "reason": reason,
    }
    [sent] = deliveries(client, keys, operators["id"])
    assert (sent["event_type"], sent["status_code"]) == ("webhook_endpoint.disabled", 200)
    assert deliveries(client, keys, failing["id"])[0]["event_type"] == "purchase.fulfilled"
