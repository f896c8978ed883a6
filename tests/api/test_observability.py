from __future__ import annotations

import json
import logging
import re

from fastapi.testclient import TestClient

from creditmeter import CreditMeter
from creditmeter.api.observability import JsonFormatter
from tests.api.conftest import Keys


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.fullmatch(r"([a-z_]+)(?:\{(.*)\})? (\S+)", line)
        if match and match.group(1) == name:
            found = ",".join(sorted((match.group(2) or "").split(","))) if match.group(2) else ""
            if found == wanted:
                return float(match.group(3))
    return 0.0


def test_healthz_answers_without_a_key(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_metrics_count_requests_by_route_template(client: TestClient, keys: Keys) -> None:
    labels = {"method": "GET", "route": "/v1/accounts/{account_id}", "status": "200"}
    before = sample(client.get("/metrics").text, "creditmeter_http_requests_total", **labels)
    for account in ("acme", "globex"):
        assert client.get(f"/v1/accounts/{account}", headers=keys.header("service")).is_success
    after = sample(client.get("/metrics").text, "creditmeter_http_requests_total", **labels)
    assert after - before == 2


def test_metrics_count_credits_charged_and_holds_pending(
    client: TestClient, keys: Keys, meter: CreditMeter
) -> None:
    meter.put_feature("chat.observed", rates={"tokens": 1})
    meter.grant("acme", 1_000)
    text = client.get("/metrics").text
    charged_before = sample(text, "creditmeter_credits_charged_total", feature="chat.observed")
    meter.charge("acme", "chat.observed", usage={"tokens": 120}, idempotency_key="obs-1")
    meter.charge("acme", "chat.observed", usage={"tokens": 120}, idempotency_key="obs-1")
    meter.authorize("acme", "chat.observed", credits=10)
    text = client.get("/metrics").text
    charged = sample(text, "creditmeter_credits_charged_total", feature="chat.observed")
    assert charged - charged_before == 120  # the replayed key is not a second charge
    assert sample(text, "creditmeter_holds_pending") == 1


def test_every_response_carries_a_request_id(client: TestClient) -> None:
    given = client.get("/healthz", headers={"X-Request-ID": "req-123"})
    made = client.get("/healthz")
    assert given.headers["X-Request-ID"] == "req-123"
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["X-Request-ID"])


def test_log_lines_are_json_with_the_extras() -> None:
    record = logging.makeLogRecord(
        {"name": "creditmeter.api", "levelno": 20, "levelname": "INFO", "msg": "request"}
    )
    record.request_id = "req-9"
    record.status = 402
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "request"
    assert line["level"] == "info"
    assert line["request_id"] == "req-9"
    assert line["status"] == 402
