from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx2
import pytest
from click.testing import CliRunner

from creditmeter import CreditMeter, NotFound
from creditmeter.cli.demo import listen
from creditmeter.cli.receiver import DemoReceiver
from creditmeter.cli.sample import ALERT_ACCOUNT, WalkingClock, seed
from creditmeter.client import CreditMeterClient
from tests.cli.conftest import assert_one_line_error, run
from tests.client.conftest import Server, free_port, wait_until_healthy

CREDITED_WITHIN = 10.0


def test_demo_tells_the_whole_story_with_the_library_figures(
    runner: CliRunner, database_url: str
) -> None:
    result = run(runner, "demo", "--tour", "--database-url", database_url)
    assert result.exit_code == 0, result.output
    out = result.output
    assert re.search(
        r"checkout  purchase pur_\S+ pending; its page http://\S+/dev/checkout/pur_", out
    )
    assert "9.99 USD paid, fulfilled" in out
    assert "+10,000 purchased credits: issuance:purchase + issuance:bonus → 10,000 into" in out
    assert "available 30,500" in out
    assert "4,500 credits held" in out
    assert "ceil(1.5 × (1,000 × 0.5 + 500 × 2)) = 2,250 charged" in out
    assert "9,000 credits recorded, 0 drawn from grants; 9,000 used this period" in out
    assert "= 2,000 from allowance + 500 from bonus + 2,500 from purchase" in out
    assert "raised InsufficientCredits" in out
    for field, value in (("required", "9,000"), ("available", "7,500")):
        assert any(line.split() == [field, value] for line in out.splitlines())
    assert "20,000 of 20,000 used (100 %)" in out
    assert "FeatureNotInPlan" in out
    assert "= 2,000 into allowance + 500 into bonus + 2,500 into purchase" in out
    assert "ok: no violations" in out
    assert run(runner, "verify", database_url).exit_code == 0


def test_demo_ledger_lists_each_transaction_with_its_postings(
    runner: CliRunner, database_url: str
) -> None:
    out = run(runner, "demo", "--tour", "--database-url", database_url).output
    ledger = out[out.index("Ledger of acme") : out.index("Verify the books")]
    kinds = [line.split()[0] for line in ledger.splitlines()[2::2] if line.strip()]
    # The allowance and the welcome bonus are granted in the same instant, in either order.
    assert sorted(kinds[:2]) == ["allocation", "grant"]
    assert kinds[2:] == ["purchase", "usage", "usage", "usage", "usage", "refund"]
    assert "issuance:allowance → 20,000 into allowance" in ledger
    assert "10000 credits bought (package pack-10k)" in ledger


def test_demo_leaves_the_purchase_for_the_purchases_command(
    runner: CliRunner, database_url: str
) -> None:
    assert run(runner, "demo", "--tour", "--database-url", database_url).exit_code == 0
    listed = run(runner, "purchases", "acme", "--database-url", database_url)
    assert listed.exit_code == 0, listed.output
    (purchase,) = listed.output.splitlines()[1:]
    assert purchase.split()[1:7] == ["checkout", "fulfilled", "10,000", "9.99", "USD", "9.99"]


def test_demo_refuses_a_database_that_has_data(runner: CliRunner, database_url: str) -> None:
    assert run(runner, "demo", "--tour", "--database-url", database_url).exit_code == 0
    again = run(runner, "demo", "--tour", "--database-url", database_url)
    assert_one_line_error(again, containing="the demo needs an empty database")


def test_demo_by_default_uses_a_new_sqlite_file_in_a_temporary_directory(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work, temporary = tmp_path / "work", tmp_path / "tmp"
    work.mkdir()
    temporary.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    monkeypatch.setenv("CREDITMETER_DATABASE_URL", f"sqlite:///{work / 'mine.db'}")
    result = run(runner, "demo", "--tour")
    assert result.exit_code == 0, result.output
    assert list(work.iterdir()) == []
    (demo_dir,) = temporary.iterdir()
    assert (demo_dir / "demo.db").exists()
    assert f"creditmeter verify sqlite:///{demo_dir / 'demo.db'}" in result.output


def test_the_sample_data_crosses_an_alert_told_to_the_demo_s_receiver(migrated_url: str) -> None:
    """The demo's seed, its receiver registered, the allowance alert crossed and the worker
    run: the receiver got the event, its signature verified by ``standardwebhooks``. The
    meter's clock is this process's, as the demo's is: the receiver refuses a timestamp
    five minutes off it."""
    receiver = DemoReceiver(tell=lambda _: None).start()
    clock = WalkingClock(datetime.now(UTC))
    try:
        with CreditMeter(migrated_url, clock=clock, webhook_allow_private=True) as meter:
            seed(meter, clock)
            before = meter.balance(ALERT_ACCOUNT).allowance
            endpoint_id = listen(meter, clock, receiver)
            after = meter.balance(ALERT_ACCOUNT).allowance
            [delivery] = meter.webhook_deliveries(endpoint_id)
            assert meter.work() == 0
    finally:
        receiver.stop()
    [event] = receiver.events
    assert receiver.refused == 0
    assert event.type == "allowance.threshold"
    assert event.data["account_id"] == ALERT_ACCOUNT
    assert before.limit is not None
    assert before.used * 100 < event.data["percentage"] * before.limit <= after.used * 100
    assert (delivery.event_id, delivery.status_code) == (event.id, 200)


def start_demo(tmp_path: Path) -> Server:
    """``creditmeter demo`` as a user runs it, on a free port, once it answers."""
    port = free_port()
    log = tmp_path / "demo.log"
    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    for name in ("CREDITMETER_ADMIN_KEY", "CREDITMETER_PAYMENTS", "CREDITMETER_WORKER"):
        env.pop(name, None)
    command = [sys.executable, "-m", "creditmeter.cli.main", "demo", "--port", str(port)]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    server = Server(f"http://127.0.0.1:{port}", "", log, process)
    try:
        wait_until_healthy(server)
    except BaseException:
        server.stop()
        raise
    return server


def printed_keys(printed: str) -> dict[str, str]:
    return {
        line.split()[0]: line.split()[1]
        for line in printed.splitlines()
        if line.startswith(("  superadmin ", "  service ", "  account "))
    }


def stop_demo(server: Server) -> None:
    server.process.send_signal(signal.SIGINT)
    assert server.process.wait(timeout=15) == 0
    assert "Stopped. The demo database stays in sqlite:///" in server.output()


def test_demo_serves_sample_data_with_keys_to_try(tmp_path: Path) -> None:
    server = start_demo(tmp_path)
    url = server.url
    try:
        printed = server.output()
        keys = printed_keys(printed)
        assert set(keys) == {"superadmin", "service", "account"}
        assert re.search(r"webhook received  allowance\.threshold +acme: \d+ % of the", printed)
        assert "creditmeter webhook-endpoints deliveries whe_" in printed
        for path in ("/docs", "/healthz", "/metrics"):
            assert f"{url}{path}" in printed
        assert f'curl -H "Authorization: Bearer {keys["service"]}" {url}/v1/accounts' in printed
        assert "credit packs small 9.99 USD, medium 19.99 USD, large 44.99 USD" in printed
        (link,) = (line.strip() for line in printed.splitlines() if "/portal/session/" in line)
        with httpx2.Client() as browser:
            portal = browser.get(link, follow_redirects=True)
            assert portal.status_code == 200
            assert str(portal.url) == f"{url}/portal"
            assert "Available credits" in portal.text
        assert httpx2.get(f"{url}/admin/sign-in").status_code == 200

        with CreditMeterClient(url, keys["service"]) as service:
            balance = service.balance("acme")
            assert balance.purchased_available > 0
            assert len(service.usage_summary("acme", group_by="day")) > 5
            service.charge("acme", "csv_export", idempotency_key="from-the-test")
        with CreditMeterClient(url, keys["account"]) as own:
            assert own.balance("acme").available == balance.available - 5
            with pytest.raises(NotFound):
                own.balance("globex")
        with CreditMeterClient(url, keys["superadmin"]) as admin:
            assert len(admin.api_keys()) == 3
            assert {p.key for p in admin.plans()} == {"starter", "pro", "enterprise"}
        superadmin = {"Authorization": f"Bearer {keys['superadmin']}"}
        recharge = httpx2.get(f"{url}/v1/accounts/umbrella/auto-recharge", headers=superadmin)
        assert recharge.json()["enabled"] is True
        assert recharge.json()["payment_method"] == "pm_dev_visa"
    finally:
        stop_demo(server)
    (demo_dir,) = (p for p in tmp_path.iterdir() if p.name.startswith("creditmeter-demo-"))
    assert (demo_dir / "demo.db").exists()
    with CreditMeter(f"sqlite:///{demo_dir / 'demo.db'}") as meter:
        [endpoint] = meter.webhook_endpoints()
        assert not endpoint.enabled, "the demo's receiver is gone with it"


def test_demo_sells_a_pack_through_its_checkout_page(tmp_path: Path) -> None:
    server = start_demo(tmp_path)
    url = server.url
    try:
        printed = server.output()
        account_key = printed_keys(printed)["account"]
        own = {"Authorization": f"Bearer {account_key}"}
        shown = f'curl -X POST {url}/v1/accounts/acme/checkout -H "Authorization: Bearer '
        assert shown + f'{account_key}" \\' in printed
        assert f"{url}/dev/checkout/pur_…), press Pay" in printed
        before = httpx2.get(f"{url}/v1/accounts/acme/balance", headers=own).json()

        started = httpx2.post(
            f"{url}/v1/accounts/acme/checkout",
            headers=own,
            json={"package": "medium", "success_url": "https://example.com/billing/done"},
        )
        assert started.status_code == 200, started.text
        checkout_url = started.json()["url"]
        assert checkout_url.startswith(f"{url}/dev/checkout/pur_")
        page = httpx2.get(checkout_url)
        assert "Pay $19.99" in page.text
        action = re.search(r'<form method="post" action="([^"]+)">', page.text)
        assert action is not None, page.text
        paid = httpx2.post(f"{url}{action.group(1)}", follow_redirects=True)
        assert paid.status_code == 200
        assert "Payment done" in paid.text

        deadline = time.monotonic() + CREDITED_WITHIN
        while True:
            after = httpx2.get(f"{url}/v1/accounts/acme/balance", headers=own).json()
            if after["available"] != before["available"] or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert after["available"] == before["available"] + 11_000
        purchases = httpx2.get(f"{url}/v1/accounts/acme/purchases", headers=own).json()["data"]
        assert [(p["package"], p["status"]) for p in purchases] == [
            ("medium", "fulfilled"),
            ("medium", "fulfilled"),
        ]
        assert purchases[0]["id"] == started.json()["purchase_id"]
        told = "webhook received  purchase.fulfilled     acme: 11,000 credits bought for 19.99 USD"
        while told not in server.output() and time.monotonic() < deadline + CREDITED_WITHIN:
            time.sleep(0.1)
        assert told in server.output(), "the server's worker delivers to the demo's receiver"
    finally:
        stop_demo(server)


def test_the_serving_demo_refuses_a_database_that_has_data(
    runner: CliRunner, database_url: str
) -> None:
    assert run(runner, "demo", "--tour", "--database-url", database_url).exit_code == 0
    again = run(runner, "demo", "--database-url", database_url)
    assert_one_line_error(again, containing="the demo needs an empty database")
