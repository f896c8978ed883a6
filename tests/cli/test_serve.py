from __future__ import annotations

import json
import signal
from pathlib import Path

import httpx2
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from creditmeter.cli.failures import CommandFailed
from creditmeter.cli.serve import base_url, exported, payments_lines, server_settings
from creditmeter.store.database import Database, normalize_url
from creditmeter.store.migrate import current_revision, head_revision
from tests.cli.conftest import assert_one_line_error, run
from tests.client.conftest import ADMIN_KEY, start_server

PACK = {"credits": 100, "price": {"amount": 500, "currency": "usd"}}
CHECKOUT = {"package": "pack", "success_url": "https://example.com/thanks"}
SIGNED = {"Stripe-Signature": "t=1,v1=00"}


def test_serve_migrates_an_empty_database_and_answers(database_url: str, tmp_path: Path) -> None:
    server = start_server(database_url, tmp_path / "serve.log")
    try:
        assert httpx2.get(f"{server.url}/healthz").json() == {"status": "ok"}
        accounts = httpx2.get(
            f"{server.url}/v1/accounts", headers={"Authorization": f"Bearer {ADMIN_KEY}"}
        )
        assert accounts.json() == {"data": [], "next_cursor": None}
        assert httpx2.get(f"{server.url}/v1/accounts").status_code == 401
    finally:
        server.process.send_signal(signal.SIGINT)
        assert server.process.wait(timeout=15) == 0
    out = server.output()
    assert f"creditmeter serving {server.url} (1 worker)" in out
    assert "schema migrated from empty to revision" in out
    assert "payments  off: checkouts and webhooks answer 503 payments_not_configured" in out
    assert "WARNING" not in out
    assert "jobs      a worker thread in each server process applies payment events" in out
    requests = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert any(r.get("path") == "/v1/accounts" and r.get("status") == 401 for r in requests)
    db = Database(database_url)
    try:
        assert current_revision(db) == head_revision()
    finally:
        db.dispose()


def test_serve_sells_nothing_unless_a_provider_is_chosen(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CREDITMETER_PAYMENTS", raising=False)
    server = start_server(database_url, tmp_path / "serve.log")
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    try:
        with httpx2.Client(base_url=server.url, headers=admin) as http:
            assert http.put("/v1/packages/pack", json=PACK).status_code == 200
            assert http.post("/v1/accounts", json={"id": "acme"}).status_code in (200, 201)
            started = http.post("/v1/accounts/acme/checkout", json=CHECKOUT)
            webhook = http.post("/v1/webhooks/stripe", content=b"{}", headers=SIGNED)
            purchases = http.get("/v1/accounts/acme/purchases").json()["data"]
            page = http.post("/dev/checkout/pur_1/pay")
    finally:
        server.stop()
    assert started.status_code == 503
    assert started.json()["error"]["type"] == "payments_not_configured"
    assert "CREDITMETER_PAYMENTS" in started.json()["error"]["message"]
    assert webhook.status_code == 503
    assert webhook.json()["error"]["type"] == "payments_not_configured"
    assert purchases == []
    assert page.status_code == 404


def test_serve_with_the_development_provider_warns_loudly(sqlite_url: str, tmp_path: Path) -> None:
    server = start_server(sqlite_url, tmp_path / "serve.log", "--payments", "dev")
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    try:
        with httpx2.Client(base_url=server.url, headers=admin) as http:
            http.put("/v1/packages/pack", json=PACK)
            http.post("/v1/accounts", json={"id": "acme"})
            started = http.post("/v1/accounts/acme/checkout", json=CHECKOUT)
    finally:
        server.stop()
    assert started.status_code == 200, started.text
    assert started.json()["url"].startswith(f"{server.url}/dev/checkout/pur_")
    out = server.output()
    assert "payments  the development provider (no keys, no network)" in out
    assert "WARNING: payments by the development provider: no money moves" in out


def test_serve_with_two_workers(sqlite_url: str, tmp_path: Path) -> None:
    server = start_server(sqlite_url, tmp_path / "serve.log", "--workers", "2")
    try:
        for _ in range(4):
            assert httpx2.get(f"{server.url}/healthz").status_code == 200
    finally:
        server.stop()
    assert "(2 workers)" in server.output()


def test_no_migrate_refuses_a_database_that_is_not_current(
    runner: CliRunner, database_url: str
) -> None:
    engine = sa.create_engine(normalize_url(database_url))
    engine.connect().close()
    engine.dispose()
    result = run(runner, "serve", "--no-migrate", "--database-url", database_url)
    assert_one_line_error(result, containing="is at revision none, this creditmeter needs")
    assert "run creditmeter migrate" in result.stderr


def test_options_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDITMETER_PORT", "9000")
    monkeypatch.setenv("CREDITMETER_WORKERS", "4")
    monkeypatch.setenv("CREDITMETER_DATABASE_URL", "sqlite:///from-env.db")
    settings = server_settings(port=9100, workers=None, database_url=None, host="0.0.0.0")
    assert (settings.port, settings.workers) == (9100, 4)
    assert settings.database_url == "sqlite:///from-env.db"
    assert base_url(settings.host, settings.port) == "http://127.0.0.1:9100"
    assert base_url("::1", 80) == "http://[::1]:80"


def test_a_bad_variable_is_one_line(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDITMETER_PORT", "eighty")
    with pytest.raises(CommandFailed, match="CREDITMETER_PORT: "):
        server_settings()
    assert_one_line_error(run(runner, "serve"), containing="CREDITMETER_PORT")


def test_serve_says_where_credits_are_sold_and_who_applies_payments(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("CREDITMETER_PAYMENTS", "CREDITMETER_WORKER", "CREDITMETER_PUBLIC_URL"):
        monkeypatch.delenv(name, raising=False)
    off, _ = payments_lines(server_settings())
    assert off.startswith("  payments  off: checkouts and webhooks answer 503")
    settings = server_settings(port=9100, host="0.0.0.0", payments="dev")
    dev, jobs = payments_lines(settings)
    assert dev.endswith(
        "checkout pages on this server, http://127.0.0.1:9100/dev/checkout/<purchase>"
    )
    assert jobs.endswith("(due jobs looked for every 1 s)")
    assert exported(settings)["CREDITMETER_PORT"] == "9100"
    assert exported(settings)["CREDITMETER_WORKER"] == "true"

    monkeypatch.setenv("CREDITMETER_PAYMENTS", "stripe")
    monkeypatch.setenv("CREDITMETER_STRIPE_SECRET_KEY", "sk_test_1")
    monkeypatch.setenv("CREDITMETER_STRIPE_WEBHOOK_SECRET", "whsec_1")
    monkeypatch.setenv("CREDITMETER_PUBLIC_URL", "https://credits.example.com/")
    monkeypatch.setenv("CREDITMETER_WORKER", "false")
    stripe, jobs = payments_lines(server_settings())
    assert stripe == (
        "  payments  Stripe; its webhook endpoint is https://credits.example.com/v1/webhooks/stripe"
    )
    assert "CREDITMETER_WORKER=false): run creditmeter worker" in jobs


@pytest.mark.parametrize("name", ["CREDITMETER_ADMIN_KEY", "CREDITMETER_METRICS_TOKEN"])
def test_a_short_secret_is_refused_at_start(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, name: str, tmp_path: Path
) -> None:
    monkeypatch.setenv(name, "x" * 31)
    empty = f"sqlite:///{tmp_path / 'empty.db'}"  # a serve that got further would stop there
    result = run(runner, "serve", "--no-migrate", "--database-url", empty)
    assert_one_line_error(result, containing=f"{name}: must be at least 32 characters")
    monkeypatch.setenv(name, "x" * 32)
    assert server_settings().model_dump()[name.removeprefix("CREDITMETER_").lower()] is not None


def test_stripe_without_its_keys_is_one_line(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREDITMETER_PAYMENTS", "stripe")
    monkeypatch.delenv("CREDITMETER_STRIPE_SECRET_KEY", raising=False)
    monkeypatch.setenv("CREDITMETER_STRIPE_WEBHOOK_SECRET", "whsec_1")
    assert_one_line_error(
        run(runner, "serve"), containing="payments=stripe needs CREDITMETER_STRIPE_SECRET_KEY"
    )
