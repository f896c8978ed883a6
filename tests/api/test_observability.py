from __future__ import annotations

import json
import logging
import re
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from pydantic import SecretStr

from creditmeter import CreditMeter
from creditmeter.api.app import create_app
from creditmeter.api.config import ServerSettings
from creditmeter.api.observability import JsonFormatter
from tests.api.conftest import ADMIN_KEY, Keys
from tests.conftest import POSTGRES_URL, Clock

METRICS_TOKEN = "metrics-token-of-at-least-32-characters"


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


def test_metrics_count_the_operations_of_each_commit(
    client: TestClient, keys: Keys, meter: CreditMeter
) -> None:
    meter.put_feature("chat.grouped", rates={"tokens": 1})
    meter.grant("acme", 1_000)
    text = client.get("/metrics").text
    commits = sample(text, "creditmeter_group_commit_operations_count")
    alone = sample(text, "creditmeter_group_commit_operations_bucket", le="1.0")
    hold = meter.authorize("acme", "chat.grouped", credits=10)
    meter.settle(hold.id)

    text = client.get("/metrics").text

    assert sample(text, "creditmeter_group_commit_operations_count") - commits == 2
    assert sample(text, "creditmeter_group_commit_operations_bucket", le="1.0") - alone == 2


def test_the_pending_holds_gauge_leaves_out_holds_past_their_expiry(
    client: TestClient, keys: Keys, meter: CreditMeter, clock: Clock
) -> None:
    meter.put_feature("chat.held", rates={"tokens": 1})
    meter.grant("acme", 1_000)
    meter.authorize("acme", "chat.held", credits=10, ttl=timedelta(minutes=1))
    meter.authorize("acme", "chat.held", credits=10, ttl=timedelta(minutes=10))
    both = client.get("/metrics").text
    clock.advance(minutes=5)  # the first is past its expiry; nothing touched the account

    text = client.get("/metrics").text

    assert sample(both, "creditmeter_holds_pending") == 2
    assert sample(text, "creditmeter_holds_pending") == 1
    assert sample(text, "creditmeter_database_up") == 1


def unreachable(engine_name: str, tmp_path: Path) -> str:
    """A database of the engine that does not answer: a file in a directory that is not
    there; a PostgreSQL server's address where none listens."""
    if engine_name == "sqlite":
        return f"sqlite:///{tmp_path / 'gone' / 'creditmeter.db'}"
    return sa.make_url(POSTGRES_URL).set(port=1).render_as_string(hide_password=False)


def test_metrics_scrape_while_the_database_is_down(engine_name: str, tmp_path: Path) -> None:
    settings = ServerSettings(admin_key=SecretStr(ADMIN_KEY), worker=False, sweep_interval=0)
    with (
        CreditMeter(unreachable(engine_name, tmp_path), migrate=False) as down,
        TestClient(create_app(settings, meter=down)) as client,
    ):
        refused = client.get("/v1/accounts", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        scraped = client.get("/metrics")

    assert refused.status_code == 503
    assert scraped.status_code == 200, scraped.text
    text = scraped.text
    assert sample(text, "creditmeter_database_up") == 0
    assert "creditmeter_holds_pending" not in text  # not a stale figure
    labels = {"method": "GET", "route": "/v1/accounts", "status": "503"}
    assert sample(text, "creditmeter_http_requests_total", **labels) >= 1


def test_metrics_can_need_a_token(engine_name: str, tmp_path: Path) -> None:
    settings = ServerSettings(
        admin_key=SecretStr(ADMIN_KEY),
        metrics_token=SecretStr(METRICS_TOKEN),
        worker=False,
        sweep_interval=0,
    )
    with (
        CreditMeter(unreachable(engine_name, tmp_path), migrate=False) as down,
        TestClient(create_app(settings, meter=down)) as client,
    ):
        bare = client.get("/metrics")
        wrong = client.get("/metrics", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        right = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        elsewhere = client.get("/v1/accounts", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})

    assert (bare.status_code, wrong.status_code) == (401, 401)
    assert bare.headers["WWW-Authenticate"] == "Bearer"
    assert bare.json()["error"]["type"] == "unauthenticated"
    assert right.status_code == 200  # rate limited by address, the token looked up nowhere
    assert sample(right.text, "creditmeter_database_up") == 0
    assert elsewhere.status_code == 401  # the token is no API key


@pytest.mark.parametrize("name", ["admin_key", "metrics_token"])
def test_a_secret_shorter_than_32_characters_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="must be at least 32 characters"):
        ServerSettings(**{name: SecretStr("x" * 31)})  # type: ignore[arg-type]
    assert getattr(ServerSettings(**{name: SecretStr("x" * 32)}), name) is not None  # type: ignore[arg-type]


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
