"""Admin commands over the library: accounts, grants, balances, the ledger, API keys and
the audit log. What they change is recorded in the audit log as the command line's."""

from __future__ import annotations

import re
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import click

from creditmeter.cli import views
from creditmeter.cli.connection import database_url_option, opened
from creditmeter.cli.failures import CommandFailed
from creditmeter.core.audit import CLI, Action
from creditmeter.core.errors import NotFound
from creditmeter.core.keys import Role
from creditmeter.core.types import GrantSource
from creditmeter.service.grants import VOID_HELD
from creditmeter.service.queries import write_transactions_csv

HAND_GRANTED = [
    s.value for s in GrantSource if s not in (GrantSource.ALLOWANCE, GrantSource.ROLLOVER)
]


def credits_argument(_ctx: click.Context, _param: click.Parameter, value: str | int) -> int:
    """A whole number of credits: ``5000``, ``5,000`` or ``5_000``."""
    text = str(value).replace(",", "").replace("_", "").strip()
    if not re.fullmatch(r"-?[0-9]+", text):
        raise CommandFailed(f"amount must be a whole number of credits, not {value!r}")
    return int(text)


def echo_lines(lines: list[str]) -> None:
    for line in lines:
        click.echo(line)


@click.group()
def accounts() -> None:
    """List, create and show accounts."""


@accounts.command("list")
@database_url_option
@click.option("--after", metavar="ID", help="start after this account id (pagination)")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
def list_accounts(database_url: str | None, after: str | None, limit: int) -> None:
    """Accounts in id order, with their plan, status and available credits."""
    with opened(database_url) as meter:
        found = meter.list_accounts(after=after, limit=limit)
        rows = [
            [
                a.id,
                a.name,
                a.plan or "-",
                a.status.value,
                views.figure(meter.balance(a.id).available),
            ]
            for a in found
        ]
    if not rows:
        click.echo("no accounts")
        return
    echo_lines(
        views.table([["id", "name", "plan", "status", "available"], *rows], indent=0, right=[4])
    )


@accounts.command("create")
@database_url_option
@click.argument("account_id")
@click.option("--name", help="display name (default: the id)")
@click.option("--plan", help="plan key; its allowance is granted now")
@click.option(
    "--overdraft-limit", callback=credits_argument, default="0", help="debt allowed, in credits"
)
def create_account(
    database_url: str | None,
    account_id: str,
    name: str | None,
    plan: str | None,
    overdraft_limit: int,
) -> None:
    """Create an account (an existing id is left as it is)."""
    with opened(database_url) as meter:
        try:
            meter.account(account_id)
            existed = True
        except NotFound:
            existed = False
        account = meter.create_account(
            account_id, name=name, plan=plan, overdraft_limit=overdraft_limit, actor=CLI
        )
        balance = meter.balance(account_id)
    click.echo(
        f"account {account_id} exists already; nothing changed"
        if existed
        else f"created account {account_id}"
    )
    echo_lines(views.account(account))
    click.echo("balance")
    echo_lines(views.balance(balance))


@accounts.command("show")
@database_url_option
@click.argument("account_id")
@click.option(
    "--transactions",
    "count",
    type=click.IntRange(0, 1000),
    default=10,
    show_default=True,
    help="how many recent transactions to show",
)
def show_account(database_url: str | None, account_id: str, count: int) -> None:
    """An account, its balance and its most recent transactions."""
    with opened(database_url) as meter:
        account = meter.account(account_id)
        balance = meter.balance(account_id)
        recent = meter.transactions(account_id, limit=count).data if count else ()
    click.echo("account")
    echo_lines(views.account(account))
    click.echo("balance")
    echo_lines(views.balance(balance))
    if count:
        click.echo("latest transactions, newest first")
        echo_lines(views.ledger(recent))


@accounts.command("notifications")
@database_url_option
@click.argument("account_id")
@click.option(
    "--email",
    "emails",
    multiple=True,
    metavar="ADDRESS",
    help="a billing address that gets its emails (repeatable; replaces the list)",
)
@click.option("--no-emails", is_flag=True, help="remove every billing address")
@click.option(
    "--channels",
    "channels",
    multiple=True,
    metavar="TYPE=CHANNELS",
    help="the channels of an event type or *: email, webhook, both (email,webhook) or "
    "none (TYPE=); repeatable, replaces every line given before",
)
def account_notifications(
    database_url: str | None,
    account_id: str,
    emails: tuple[str, ...],
    no_emails: bool,
    channels: tuple[str, ...],
) -> None:
    """Show an account's notification preferences, or change them: its billing
    addresses and, per event type, the channels it is sent on."""
    chosen: dict[str, list[str]] = {}
    for line in channels:
        event_type, sep, names = line.partition("=")
        if not sep:
            raise click.BadParameter(f"{line!r} is not TYPE=CHANNELS", param_hint="--channels")
        chosen[event_type.strip()] = [n.strip() for n in names.split(",") if n.strip()]
    with opened(database_url) as meter:
        current = meter.notification_preferences(account_id)
        if emails or no_emails or channels:
            current = meter.set_notification_preferences(
                account_id,
                emails=() if no_emails else (emails or current.emails),
                channels=chosen if channels else current.channels,
                actor=CLI,
            )
    click.echo(f"emails    {', '.join(current.emails) or '-'}")
    for event_type, sent_on in sorted(current.channels.items()):
        click.echo(f"{event_type:<9} {', '.join(sent_on) or 'none'}")


@click.command()
@database_url_option
@click.argument("account_id")
@click.argument("amount", callback=credits_argument)
@click.option("--source", type=click.Choice(HAND_GRANTED), default="admin", show_default=True)
@click.option("--reason", help="why, kept in the ledger")
@click.option("--pool", help="limit the credits to one pool (default: every feature)")
@click.option("--idempotency-key", help="a retry with the same key changes nothing")
def grant(
    database_url: str | None,
    account_id: str,
    amount: int,
    source: str,
    reason: str | None,
    pool: str | None,
    idempotency_key: str | None,
) -> None:
    """Grant AMOUNT credits to an account."""
    with opened(database_url) as meter:
        result = meter.grant(
            account_id,
            amount,
            source=source,
            reason=reason,
            pool=pool,
            idempotency_key=idempotency_key,
            actor=CLI,
        )
    click.echo(
        f"granted {views.figure(result.amount)} {source} credits to {account_id}; "
        f"available {views.figure(result.available_after)} "
        f"(grant {result.grant_id}, transaction {result.transaction_id})"
    )


@click.command("void-grant")
@database_url_option
@click.argument("account_id")
@click.argument("grant_id")
@click.option("--reason", required=True, help="why, kept in the ledger and the audit log")
@click.option(
    "--held",
    type=click.Choice(VOID_HELD),
    default="refuse",
    show_default=True,
    help="credits of the grant held by pending holds: refuse, or release those holds",
)
@click.option("--idempotency-key", help="a retry with the same key changes nothing")
def void_grant(
    database_url: str | None,
    account_id: str,
    grant_id: str,
    reason: str,
    held: str,
    idempotency_key: str | None,
) -> None:
    """Take the credits left in GRANT_ID away from an account."""
    with opened(database_url) as meter:
        txn = meter.void_grant(
            account_id,
            grant_id,
            reason=reason,
            held=held,
            idempotency_key=idempotency_key,
            actor=CLI,
        )
    click.echo(
        f"voided {views.figure(-txn.amount)} credits of grant {grant_id} of {account_id}; "
        f"available {views.figure(txn.balance_after)} (transaction {txn.id})"
    )


@click.command()
@database_url_option
@click.argument("account_id")
def balance(database_url: str | None, account_id: str) -> None:
    """An account's balance: available, held, debt, purchased and allowance."""
    with opened(database_url) as meter:
        found = meter.balance(account_id)
    click.echo(f"balance of {account_id}")
    echo_lines(views.balance(found))


@click.group()
def transactions() -> None:
    """Read and export an account's ledger."""


@transactions.command("list")
@database_url_option
@click.argument("account_id")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
def list_transactions(database_url: str | None, account_id: str, limit: int) -> None:
    """The newest transactions of an account, each with its postings."""
    with opened(database_url) as meter:
        page = meter.transactions(account_id, limit=limit)
    echo_lines(views.ledger(page.data))
    if page.next_cursor is not None:
        click.echo(f"(newest {limit} shown; export the ledger for all of it)")


@transactions.command("export")
@database_url_option
@click.argument("account_id")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="CSV file to write (default: standard output)",
)
def export_transactions(database_url: str | None, account_id: str, output: Path | None) -> None:
    """An account's whole ledger as CSV, newest first."""
    with opened(database_url) as meter:
        if output is None:
            meter.export_transactions_csv(account_id, sys.stdout)
            return
        meter.account(account_id)
        with (
            output.open("w", newline="", encoding="utf-8") as out,
            click.progressbar(
                meter.iter_transactions(account_id),
                label=f"exporting {account_id}",
                file=sys.stderr,
            ) as bar,
        ):
            count = write_transactions_csv(iter(bar), out)
    click.echo(f"wrote {views.counted(count, 'transaction')} to {output}")


@click.group("api-keys")
def api_keys() -> None:
    """Create, list and revoke the API keys of the HTTP service."""


@api_keys.command("create")
@database_url_option
@click.option(
    "--role",
    type=click.Choice([r.value for r in Role]),
    required=True,
    help="service: the host app's backend; admin: read all; superadmin: everything; "
    "account: one account's own key",
)
@click.option("--account", "account_id", metavar="ID", help="the account of an account key")
@click.option("--name", help="what the key is for (default: '<role> key')")
def create_api_key(
    database_url: str | None, role: str, account_id: str | None, name: str | None
) -> None:
    """Create a key and print its secret, which is shown this once and never again."""
    with opened(database_url) as meter:
        key, secret = meter.create_api_key(role, account_id=account_id, name=name, actor=CLI)
    scope = f" of account {key.account_id}" if key.account_id else ""
    click.echo(f"created {key.role.value} key {key.id}{scope} ({key.name})")
    click.echo(f"secret: {secret}")
    click.echo("Keep it now: only its digest is stored, it cannot be shown again.")


@api_keys.command("list")
@database_url_option
@click.option("--all", "everything", is_flag=True, help="include revoked keys")
def list_api_keys(database_url: str | None, everything: bool) -> None:
    """Keys by creation time: id, role, account, name, the secret's first characters."""
    with opened(database_url) as meter:
        found = [k for k in meter.api_keys() if everything or k.revoked_at is None]
    if not found:
        click.echo("no API keys")
        return
    echo_lines(views.api_keys(found))


@api_keys.command("revoke")
@database_url_option
@click.argument("key_id")
def revoke_api_key(database_url: str | None, key_id: str) -> None:
    """Revoke a key: requests made with it are refused from now on (401)."""
    with opened(database_url) as meter:
        meter.revoke_api_key(key_id, actor=CLI)
    click.echo(f"revoked API key {key_id}")


@click.group("webhook-endpoints")
def webhook_endpoints() -> None:
    """Manage the endpoints that events are delivered to, signed: create, list, delete,
    their deliveries, a redelivery, a new secret."""


@webhook_endpoints.command("create")
@database_url_option
@click.option("--url", required=True, help="where events are POSTed (http or https)")
@click.option(
    "--event",
    "events",
    multiple=True,
    metavar="TYPE",
    help="an event type it hears (repeatable); default: * (all)",
)
@click.option("--description", default="", help="what it is for")
@click.option("--disabled", is_flag=True, help="create it disabled: it hears nothing yet")
@click.option(
    "--allow-private",
    is_flag=True,
    envvar="CREDITMETER_WEBHOOK_ALLOW_PRIVATE",
    help="accept a loopback or private address (default: $CREDITMETER_WEBHOOK_ALLOW_PRIVATE)",
)
def create_webhook_endpoint(
    database_url: str | None,
    url: str,
    events: tuple[str, ...],
    description: str,
    disabled: bool,
    allow_private: bool,
) -> None:
    """Create an endpoint and print its signing secret, shown this once and never again.
    Its URL may not name a loopback or private address unless --allow-private."""
    with opened(database_url) as meter:
        meter.webhook_allow_private = allow_private
        endpoint, secret = meter.create_webhook_endpoint(
            url,
            event_types=events or ("*",),
            description=description,
            enabled=not disabled,
            actor=CLI,
        )
    heard = ", ".join(endpoint.event_types)
    click.echo(f"created webhook endpoint {endpoint.id} for {heard} at {endpoint.url}")
    click.echo(f"secret: {secret}")
    click.echo("Keep it now: receivers verify signatures with it; it cannot be shown again.")


@webhook_endpoints.command("list")
@database_url_option
def list_webhook_endpoints(database_url: str | None) -> None:
    """Endpoints by creation time; never their secrets."""
    with opened(database_url) as meter:
        found = meter.webhook_endpoints()
    if not found:
        click.echo("no webhook endpoints")
        return
    echo_lines(views.webhook_endpoints(found))


@webhook_endpoints.command("delete")
@database_url_option
@click.argument("endpoint_id")
def delete_webhook_endpoint(database_url: str | None, endpoint_id: str) -> None:
    """Delete an endpoint and its delivery log: events not yet delivered to it never will
    be."""
    with opened(database_url) as meter:
        meter.delete_webhook_endpoint(endpoint_id, actor=CLI)
    click.echo(f"deleted webhook endpoint {endpoint_id}")


@webhook_endpoints.command("deliveries")
@database_url_option
@click.argument("endpoint_id")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
def list_webhook_deliveries(database_url: str | None, endpoint_id: str, limit: int) -> None:
    """An endpoint's delivery attempts, newest first."""
    with opened(database_url) as meter:
        found = meter.webhook_deliveries(endpoint_id, limit=limit)
    if not found:
        click.echo(f"no deliveries to {endpoint_id}")
        return
    echo_lines(views.webhook_deliveries(found))


@webhook_endpoints.command("redeliver")
@database_url_option
@click.argument("endpoint_id")
@click.argument("delivery_id")
def redeliver_webhook(database_url: str | None, endpoint_id: str, delivery_id: str) -> None:
    """Send a delivery's event to its endpoint again, with the same webhook-id."""
    with opened(database_url) as meter:
        queued = meter.redeliver_webhook(endpoint_id, delivery_id)
    if queued:
        click.echo(f"queued {delivery_id}'s event for {endpoint_id} again")
    else:
        click.echo(f"{delivery_id} was redelivered already: redeliver its newest delivery")


@webhook_endpoints.command("rotate-secret")
@database_url_option
@click.argument("endpoint_id")
@click.option(
    "--overlap-hours",
    type=click.IntRange(0, 168),
    default=24,
    show_default=True,
    help="how long the old secret signs too",
)
def rotate_webhook_secret(database_url: str | None, endpoint_id: str, overlap_hours: int) -> None:
    """Give an endpoint a new signing secret, shown this once; the old one signs too for
    the overlap, while receivers move to the new one."""
    with opened(database_url) as meter:
        _, secret = meter.rotate_webhook_secret(
            endpoint_id, overlap=timedelta(hours=overlap_hours), actor=CLI
        )
    click.echo(f"rotated the secret of webhook endpoint {endpoint_id}")
    click.echo(f"secret: {secret}")
    click.echo(f"The old secret signs too for {overlap_hours} h; this one cannot be shown again.")


@click.command("audit-log")
@database_url_option
@click.option("--account", metavar="ID", help="only entries about this account")
@click.option(
    "--actor",
    metavar="KEY_ID|KIND",
    help="a key's id, or a kind of actor: api_key, admin_key_env, library, cli",
)
@click.option(
    "--action",
    "actions",
    multiple=True,
    type=click.Choice([a.value for a in Action]),
    help="only this action; repeat for several",
)
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--csv", "as_csv", is_flag=True, help="every matching entry, as CSV")
def audit_log(
    database_url: str | None,
    account: str | None,
    actor: str | None,
    actions: tuple[str, ...],
    limit: int,
    as_csv: bool,
) -> None:
    """Who changed credits, prices, plans, settings or keys, newest first."""
    filters: dict[str, Any] = {"account": account, "actor": actor, "actions": actions}
    with opened(database_url) as meter:
        if as_csv:
            meter.export_audit_log_csv(sys.stdout, **filters)
            return
        page = meter.audit_log(limit=limit, **filters)
    if not page.data:
        click.echo("no audit log entries")
        return
    echo_lines(views.audit_log(page.data))
    if page.next_cursor is not None:
        click.echo(f"(newest {limit} shown; --csv for all of them)")
