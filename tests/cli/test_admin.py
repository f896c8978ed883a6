from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from click.testing import CliRunner

from creditmeter import CreditMeter
from creditmeter.core.audit import Action
from creditmeter.store import outbox
from tests.cli.conftest import assert_one_line_error, run


def test_accounts_create_list_and_show(
    runner: CliRunner, library: CreditMeter, migrated_url: str
) -> None:
    library.put_plan("pro", allowances={"*": 20_000})
    created = run(
        runner,
        "accounts",
        "create",
        "acme",
        "--name",
        "Acme Inc.",
        "--plan",
        "pro",
        "--database-url",
        migrated_url,
    )
    assert created.exit_code == 0, created.output
    assert created.output.startswith("created account acme\n")
    again = run(runner, "accounts", "create", "acme", "--database-url", migrated_url)
    assert again.output.startswith("account acme exists already; nothing changed\n")
    run(runner, "accounts", "create", "zeta", "--database-url", migrated_url)

    listed = run(runner, "accounts", "list", "--database-url", migrated_url)
    assert [line.split()[0] for line in listed.output.splitlines()] == ["id", "acme", "zeta"]
    assert "20,000" in listed.output.splitlines()[1]

    shown = run(runner, "accounts", "show", "acme", "--database-url", migrated_url)
    assert shown.exit_code == 0
    assert "Acme Inc." in shown.output
    assert "0 of 20,000 used (0 %)" in shown.output
    assert "allocation" in shown.output


def test_grant_then_balance(runner: CliRunner, library: CreditMeter, migrated_url: str) -> None:
    library.create_account("acme")
    granted = run(
        runner,
        "grant",
        "acme",
        "5,000",
        "--source",
        "purchase",
        "--reason",
        "pack",
        "--database-url",
        migrated_url,
    )
    assert granted.exit_code == 0, granted.output
    assert granted.output.startswith("granted 5,000 purchase credits to acme; available 5,000")
    balance = run(runner, "balance", "acme", "--database-url", migrated_url)
    lines = {line.split()[0]: line.split()[1:] for line in balance.output.splitlines()[1:]}
    assert lines["available"] == ["5,000"]
    assert lines["purchased_available"] == ["5,000"]
    assert library.balance("acme").available == 5_000


def test_grant_with_an_idempotency_key_applies_once(
    runner: CliRunner, library: CreditMeter, migrated_url: str
) -> None:
    library.create_account("acme")
    for _ in range(2):
        result = run(
            runner,
            "grant",
            "acme",
            "300",
            "--idempotency-key",
            "k1",
            "--database-url",
            migrated_url,
        )
        assert result.exit_code == 0
    assert library.balance("acme").available == 300


def test_void_grant_takes_the_credits_left_and_refuses_held_ones(
    runner: CliRunner, library: CreditMeter, migrated_url: str
) -> None:
    library.put_feature("chat", rates={"tokens": 1})
    library.create_account("acme")
    promo = library.grant("acme", 700, source="promotional").grant_id
    hold = library.authorize("acme", "chat", credits=200)
    void = ["void-grant", "acme", promo, "--reason", "sent by mistake"]

    refused = run(runner, *void, "--database-url", migrated_url)
    assert_one_line_error(refused, containing=f"held by pending holds {hold.id}")
    assert library.balance("acme").available == 500

    voided = run(runner, *void, "--held", "release", "--database-url", migrated_url)
    assert voided.exit_code == 0, voided.output
    assert voided.output.startswith(f"voided 700 credits of grant {promo} of acme; available 0")
    assert library.hold(hold.id).status == "released"
    [entry] = library.audit_log(actions=("grant.voided",)).data
    assert (entry.actor.kind, entry.details["reason"]) == ("cli", "sent by mistake")
    assert library.verify() == []


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("abc", "amount must be a whole number of credits, not 'abc'"),
        ("1.5", "amount must be a whole number of credits"),
        ("0", "amount must be from 1 to"),
    ],
)
def test_a_bad_amount_is_a_one_line_error(
    runner: CliRunner, library: CreditMeter, migrated_url: str, amount: str, message: str
) -> None:
    library.create_account("acme")
    result = run(runner, "grant", "acme", amount, "--database-url", migrated_url)
    assert_one_line_error(result, containing=message)
    assert library.balance("acme").available == 0


def test_an_unknown_account_is_a_one_line_error(
    runner: CliRunner, library: CreditMeter, migrated_url: str
) -> None:
    for args in (["grant", "nobody", "5"], ["balance", "nobody"], ["accounts", "show", "nobody"]):
        result = run(runner, *args, "--database-url", migrated_url)
        assert_one_line_error(result, containing="account 'nobody' not found")


def charged_account(library: CreditMeter) -> list[str]:
    """An account with a grant, two charges and a refund; its transaction ids, newest first."""
    library.put_feature("csv_export", rates={"calls": 5})
    library.create_account("acme")
    library.grant("acme", 1_000, source="purchase")
    library.charge("acme", "csv_export")
    usage = library.charge("acme", "csv_export", usage={"calls": 3})
    library.refund("acme", usage_id=usage.usage_id)
    return [t.id for t in library.iter_transactions("acme")]


def test_export_writes_the_ledger_as_csv_to_stdout(
    runner: CliRunner, library: CreditMeter, migrated_url: str
) -> None:
    ids = charged_account(library)
    result = run(runner, "transactions", "export", "acme", "--database-url", migrated_url)
    assert result.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["id"] for r in rows] == ids
    assert [(r["type"], r["amount"], r["balance_after"]) for r in rows] == [
        ("refund", "15", "995"),
        ("usage", "-15", "980"),
        ("usage", "-5", "995"),
        ("grant", "1000", "1000"),
    ]


def test_export_to_a_file(
    runner: CliRunner, library: CreditMeter, migrated_url: str, tmp_path: Path
) -> None:
    ids = charged_account(library)
    target = tmp_path / "ledger.csv"
    result = run(
        runner,
        "transactions",
        "export",
        "acme",
        "--output",
        str(target),
        "--database-url",
        migrated_url,
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == f"wrote 4 transactions to {target}\n"
    with target.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["id"] for r in rows] == ids
    assert rows[-1]["description"] == "1000 purchase credits granted"


def test_export_of_an_unknown_account_writes_no_file(
    runner: CliRunner, library: CreditMeter, migrated_url: str, tmp_path: Path
) -> None:
    target = tmp_path / "ledger.csv"
    result = run(
        runner,
        "transactions",
        "export",
        "nobody",
        "--output",
        str(target),
        "--database-url",
        migrated_url,
    )
    assert_one_line_error(result, containing="account 'nobody' not found")
    assert not target.exists()


def test_transactions_list_shows_postings(
    runner: CliRunner, library: CreditMeter, migrated_url: str
) -> None:
    charged_account(library)
    result = run(
        runner, "transactions", "list", "acme", "--limit", "2", "--database-url", migrated_url
    )
    assert result.exit_code == 0
    assert "refund → 15 into purchase" in result.output
    assert "15 from purchase → consumption" in result.output
    assert "grant" not in result.output.split("\n", 1)[1].replace("granted", "")
    assert result.output.endswith("(newest 2 shown; export the ledger for all of it)\n")


def test_api_keys_create_list_and_revoke(
    runner: CliRunner, library: CreditMeter, migrated_url: str
) -> None:
    library.create_account("acme")
    created = run(
        runner,
        "api-keys",
        "create",
        "--role",
        "account",
        "--account",
        "acme",
        "--name",
        "acme dashboard",
        "--database-url",
        migrated_url,
    )
    assert created.exit_code == 0, created.output
    first, secret_line, warning = created.output.splitlines()
    key_id = first.split()[3]
    assert first == f"created account key {key_id} of account acme (acme dashboard)"
    secret = secret_line.removeprefix("secret: ")
    assert warning.startswith("Keep it now")
    found = library.authenticate(secret)
    assert found is not None
    assert (found.id, found.account_id) == (key_id, "acme")

    run(runner, "api-keys", "create", "--role", "service", "--database-url", migrated_url)
    listed = run(runner, "api-keys", "list", "--database-url", migrated_url)
    header, *rows = listed.output.splitlines()
    assert header.split()[:4] == ["id", "role", "account", "name"]
    assert [row.split()[1] for row in rows] == ["account", "service"]
    assert secret not in listed.output
    assert secret[:9] in listed.output

    revoked = run(runner, "api-keys", "revoke", key_id, "--database-url", migrated_url)
    assert revoked.output == f"revoked API key {key_id}\n"
    # ``library`` may remember the key for a few seconds; a process that never saw it must not.
    with CreditMeter(migrated_url, migrate=False) as elsewhere:
        assert elsewhere.authenticate(secret) is None
    active = run(runner, "api-keys", "list", "--database-url", migrated_url)
    assert key_id not in active.output
    everything = run(runner, "api-keys", "list", "--all", "--database-url", migrated_url)
    assert key_id in everything.output


def test_api_keys_refusals_are_one_line(
    runner: CliRunner, library: CreditMeter, migrated_url: str
) -> None:
    no_account = run(
        runner, "api-keys", "create", "--role", "account", "--database-url", migrated_url
    )
    assert_one_line_error(no_account, containing="an account key names its account")
    unknown = run(runner, "api-keys", "revoke", "key_nothing", "--database-url", migrated_url)
    assert_one_line_error(unknown, containing="api key 'key_nothing' not found")
    assert run(runner, "api-keys", "list", "--database-url", migrated_url).output == (
        "no API keys\n"
    )


def test_the_audit_log_names_the_command_line(
    runner: CliRunner, library: CreditMeter, migrated_url: str
) -> None:
    library.create_account("acme")
    run(runner, "grant", "acme", "300", "--database-url", migrated_url)
    made = run(runner, "api-keys", "create", "--role", "service", "--database-url", migrated_url)
    assert made.exit_code == 0, made.output

    listed = run(runner, "audit-log", "--account", "acme", "--database-url", migrated_url)
    exported = run(runner, "audit-log", "--actor", "cli", "--csv", "--database-url", migrated_url)
    nothing = run(runner, "audit-log", "--action", "grant.voided", "--database-url", migrated_url)

    assert listed.exit_code == 0, listed.output
    header, granted, created = listed.output.splitlines()
    assert header.split() == ["when", "(UTC)", "actor", "action", "account", "subject"]
    assert granted.split()[2:4] == ["cli", "grant.created"]
    assert created.split()[2:5] == ["library", "account.created", "acme"]
    rows = list(csv.DictReader(io.StringIO(exported.output)))
    assert [(r["action"], r["actor_kind"]) for r in rows] == [
        ("api_key.created", "cli"),
        ("grant.created", "cli"),
    ]
    assert nothing.output == "no audit log entries\n"


def test_webhook_endpoints_create_list_and_delete(
    runner: CliRunner, library: CreditMeter, migrated_url: str
) -> None:
    created = run(
        runner,
        "webhook-endpoints",
        "create",
        "--url",
        "https://example.com/hooks",
        "--event",
        "purchase.fulfilled",
        "--event",
        "purchase.refunded",
        "--description",
        "billing",
        "--database-url",
        migrated_url,
    )
    assert created.exit_code == 0, created.output
    first, secret_line, warning = created.output.splitlines()
    endpoint_id = first.split()[3]
    assert first == (
        f"created webhook endpoint {endpoint_id} for purchase.fulfilled, purchase.refunded"
        " at https://example.com/hooks"
    )
    assert secret_line.startswith("secret: whsec_")
    assert warning.startswith("Keep it now")
    endpoint = library.webhook_endpoint(endpoint_id)
    assert (endpoint.description, endpoint.enabled) == ("billing", True)

    listed = run(runner, "webhook-endpoints", "list", "--database-url", migrated_url)
    header, row = listed.output.splitlines()
    assert header.split() == ["id", "enabled", "events", "url", "description"]
    assert row.split() == [
        endpoint_id,
        "yes",
        "purchase.fulfilled,purchase.refunded",
        "https://example.com/hooks",
        "billing",
    ]
    assert secret_line.removeprefix("secret: ") not in listed.output

    deleted = run(
        runner, "webhook-endpoints", "delete", endpoint_id, "--database-url", migrated_url
    )
    assert deleted.output == f"deleted webhook endpoint {endpoint_id}\n"
    assert library.webhook_endpoints() == []
    assert [e.action for e in library.audit_log(actor="cli").data] == [
        Action.WEBHOOK_ENDPOINT_DELETED,
        Action.WEBHOOK_ENDPOINT_CREATED,
    ]


def test_webhook_endpoints_refusals_are_one_line(
    runner: CliRunner, library: CreditMeter, migrated_url: str
) -> None:
    bad = run(
        runner,
        "webhook-endpoints",
        "create",
        "--url",
        "https://example.com",
        "--event",
        "purchase.fulfiled",
        "--database-url",
        migrated_url,
    )
    assert_one_line_error(bad, containing="unknown event types ['purchase.fulfiled']")
    unknown = run(runner, "webhook-endpoints", "delete", "whe_none", "--database-url", migrated_url)
    assert_one_line_error(unknown, containing="webhook endpoint 'whe_none' not found")
    local = ("webhook-endpoints", "create", "--url", "http://127.0.0.1:9/hooks")
    private = run(runner, *local, "--database-url", migrated_url)
    assert_one_line_error(private, containing="loopback address (127.0.0.1)")
    assert run(runner, "webhook-endpoints", "list", "--database-url", migrated_url).output == (
        "no webhook endpoints\n"
    )
    allowed = run(runner, *local, "--allow-private", "--database-url", migrated_url)
    assert allowed.exit_code == 0, allowed.output


def test_webhook_deliveries_redeliver_and_rotate_secret(
    runner: CliRunner, library: CreditMeter, migrated_url: str
) -> None:
    library.webhook_allow_private = True
    endpoint, first_secret = library.create_webhook_endpoint("http://127.0.0.1:1/unreachable")
    with library.db.write() as conn:
        outbox.enqueue(conn, "job_event", "event.purchase.failed", {"x": 1}, library.clock())
    while library.work():
        pass

    listed = run(
        runner, "webhook-endpoints", "deliveries", endpoint.id, "--database-url", migrated_url
    )
    header, row = listed.output.splitlines()
    assert header.split()[:4] == ["when", "(UTC)", "id", "event"]
    (delivery,) = library.webhook_deliveries(endpoint.id)
    assert delivery.status_code is None
    assert delivery.error
    assert [delivery.id, "purchase.failed", "1", "-"] == row.split()[2:6]

    again = run(
        runner,
        "webhook-endpoints",
        "redeliver",
        endpoint.id,
        delivery.id,
        "--database-url",
        migrated_url,
    )
    assert again.output == f"queued {delivery.id}'s event for {endpoint.id} again\n"
    repeated = run(
        runner,
        "webhook-endpoints",
        "redeliver",
        endpoint.id,
        delivery.id,
        "--database-url",
        migrated_url,
    )
    assert repeated.output.startswith(f"{delivery.id} was redelivered already")

    rotated = run(
        runner,
        "webhook-endpoints",
        "rotate-secret",
        endpoint.id,
        "--overlap-hours",
        "2",
        "--database-url",
        migrated_url,
    )
    first, secret_line, note = rotated.output.splitlines()
    assert first == f"rotated the secret of webhook endpoint {endpoint.id}"
    new_secret = secret_line.removeprefix("secret: ")
    assert new_secret.startswith("whsec_")
    assert new_secret != first_secret
    assert note.startswith("The old secret signs too for 2 h")
    after = library.webhook_endpoint(endpoint.id)
    assert after.previous_secret_until is not None
    assert Action.WEBHOOK_ENDPOINT_SECRET_ROTATED in [
        e.action for e in library.audit_log(actor="cli").data
    ]


def test_accounts_notifications_show_and_change(
    runner: CliRunner, library: CreditMeter, migrated_url: str
) -> None:
    library.create_account("acme")
    url = ("--database-url", migrated_url)
    shown = run(runner, "accounts", "notifications", "acme", *url)
    assert shown.output == "emails    -\n*         email, webhook\n"

    changed = run(
        runner,
        "accounts",
        "notifications",
        "acme",
        "--email",
        "ap@acme.example",
        "--channels",
        "purchase.refunded=webhook",
        "--channels",
        "purchase.failed=",
        *url,
    )
    assert changed.exit_code == 0, changed.output
    assert changed.output.splitlines() == [
        "emails    ap@acme.example",
        "*         email, webhook",
        "purchase.failed none",
        "purchase.refunded webhook",
    ]
    found = library.notification_preferences("acme")
    assert found.emails == ("ap@acme.example",)
    assert not found.wants("purchase.failed", "email")

    bad = run(runner, "accounts", "notifications", "acme", "--email", "nope", *url)
    assert_one_line_error(bad, containing="not email addresses")
