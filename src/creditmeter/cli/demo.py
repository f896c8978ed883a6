"""``creditmeter demo``: the HTTP service on a database of sample data, with keys to try.

``creditmeter demo --tour`` instead prints a worked example of the library and exits.
"""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from creditmeter.api.app import create_app
from creditmeter.cli import sample, serve, tour, views
from creditmeter.cli.connection import shown
from creditmeter.cli.failures import CommandFailed
from creditmeter.cli.receiver import DemoReceiver
from creditmeter.core.audit import CLI
from creditmeter.core.payments import Package
from creditmeter.core.webhooks import ALLOW_PRIVATE_SETTING
from creditmeter.meter import CreditMeter
from creditmeter.payments.dev import WORKING_CARD

ACCOUNT_KEY_OF = "acme"
PACK_TO_TRY = "medium"
PORTAL_LINK_LIFETIME = timedelta(days=1)
"""How long the demo's portal link may wait to be opened (a host app's last minutes)."""


@click.command()
@click.option(
    "--database-url",
    metavar="URL",
    help="an empty database to use (default: a new SQLite file in a temporary directory)",
)
@click.option(
    "--tour", "show_tour", is_flag=True, help="print a worked example of the library and exit"
)
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
def demo(database_url: str | None, show_tour: bool, host: str, port: int) -> None:
    """Serve the HTTP API on sample data until Ctrl-C: plans, a price book, credit packs,
    accounts with three weeks of usage, and a key of each kind to try it with. Credits are
    sold by the development payment provider, whose checkout page the server shows.

    With --tour, walk through the library instead and exit: prices, plans, a credit pack
    bought, a hold, a split charge, a refusal, a refund, the balance, the ledger and its
    verification.
    """
    if database_url is None:
        directory = Path(tempfile.mkdtemp(prefix="creditmeter-demo-"))
        database_url = f"sqlite:///{directory / 'demo.db'}"
    if show_tour:
        with CreditMeter(database_url) as meter:
            refuse_data(meter, database_url)
            tour.tell(meter, shown(database_url))
        return
    clock = sample.WalkingClock(datetime.now(UTC))
    receiver = DemoReceiver(tell=click.echo).start()
    with CreditMeter(database_url, clock=clock, webhook_allow_private=True) as meter:
        refuse_data(meter, database_url)
        click.echo(f"creditmeter demo: making sample data in {shown(database_url)} …")
        data = sample.seed(meter, clock)
        endpoint = listen(meter, clock, receiver)
        keys = {
            "superadmin": meter.create_api_key("superadmin", name="demo superadmin")[1],
            "service": meter.create_api_key("service", name="demo backend")[1],
            "account": meter.create_api_key(
                "account", account_id=ACCOUNT_KEY_OF, name=f"{ACCOUNT_KEY_OF} dashboard"
            )[1],
        }
        _, portal_token = meter.create_portal_session(
            ACCOUNT_KEY_OF, lifetime=PORTAL_LINK_LIFETIME, actor=CLI
        )
        paths = create_app(meter=meter).openapi()["paths"]
        packs = meter.packages()
    # The server's worker delivers to the demo's receiver on loopback: allowed for the
    # demo only, whose receiver is this process.
    os.environ[ALLOW_PRIVATE_SETTING] = "true"
    settings = serve.server_settings(
        database_url=database_url, host=host, port=port, workers=1, payments="dev", worker=True
    )
    url = serve.base_url(settings.host, settings.port)
    lines = introduction(
        data, packs, keys, url, has_metrics="/metrics" in paths, portal_token=portal_token
    )
    lines[-1:-1] = notifications(endpoint, receiver, database_url, url, keys["superadmin"])
    for line in lines:
        click.echo(line)
    try:
        serve.run(settings, log_format="text")
    finally:
        receiver.stop()
        with CreditMeter(database_url) as meter:
            meter.update_webhook_endpoint(endpoint, enabled=False, actor=CLI)
    click.echo(f"Stopped. The demo database stays in {shown(database_url)}; serve it again with:")
    click.echo(f"  creditmeter serve --database-url {shown(database_url)}")


def listen(meter: CreditMeter, clock: sample.WalkingClock, receiver: DemoReceiver) -> str:
    """Register the demo's receiver as a webhook endpoint for every event, then, now that
    it listens, let the sample data cross an allowance alert; the endpoint's id."""
    endpoint, secret = meter.create_webhook_endpoint(
        receiver.url, description="creditmeter demo's receiver", actor=CLI
    )
    receiver.secret = secret
    clock.move_to(datetime.now(UTC))
    click.echo(
        f"creditmeter demo: webhook receiver on {receiver.url}, verifying signatures; "
        f"{sample.ALERT_ACCOUNT} uses more of its allowance …"
    )
    sample.reach_allowance_alert(meter)
    return endpoint.id


def notifications(
    endpoint_id: str, receiver: DemoReceiver, database_url: str, url: str, superadmin: str
) -> list[str]:
    """Where the demo's webhooks go and where their delivery log is."""
    return [
        "Notifications",
        f"  every event is POSTed, signed, to the demo's receiver {receiver.url}, which",
        "  verifies it with standardwebhooks and prints it here ('webhook received');",
        "  the delivery log, attempt by attempt:",
        f"  creditmeter webhook-endpoints deliveries {endpoint_id} "
        f"--database-url {shown(database_url)}",
        f'  curl -H "Authorization: Bearer {superadmin}" '
        f"{url}/v1/webhook-endpoints/{endpoint_id}/deliveries",
        "",
    ]


def refuse_data(meter: CreditMeter, database_url: str) -> None:
    if meter.features() or meter.list_accounts(limit=1):
        raise CommandFailed(
            f"the demo needs an empty database; {shown(database_url)} has data already"
        )


def introduction(
    data: sample.SampleData,
    packs: list[Package],
    keys: dict[str, str],
    url: str,
    *,
    has_metrics: bool,
    portal_token: str,
) -> list[str]:
    """What the demo made, where to look, and the keys to look with."""
    days = sample.DAYS
    offered = ", ".join(f"{p.id} {views.money(p.price.amount, p.price.currency)}" for p in packs)
    lines = [
        f"  plans {', '.join(data.plans)}; features {', '.join(data.features)}",
        f"  accounts {', '.join(data.accounts)}, with "
        f"{views.counted(data.operations, 'operation')} over the last {days} days "
        f"({views.figure(data.refused)} refused for lack of credits)",
        f"  credit packs {offered}",
    ]
    for a in sample.ACCOUNTS:
        if a.pack is not None:
            lines.append(f"  {a.id} bought the {a.pack} pack with the development provider")
        if a.recharge_below is not None:
            lines.append(
                f"  {a.id} recharges itself with the {sample.RECHARGE_PACK} pack, card "
                f"{WORKING_CARD}, below {views.figure(a.recharge_below)} credits"
            )
    pack = next(p for p in packs if p.id == PACK_TO_TRY)
    own = f'-H "Authorization: Bearer {keys["account"]}"'
    account_url = f"{url}/v1/accounts/{ACCOUNT_KEY_OF}"
    lines += [
        "",
        "Open",
        f"  {url}/portal/session/{portal_token}",
        f"                  {ACCOUNT_KEY_OF}'s customer portal: a one-time link, for a day "
        "(the host app asks POST /v1/accounts/{id}/portal-sessions for one)",
        f"  {url}/admin     the admin console: sign in with the superadmin key below",
        f"  {url}/docs      the API reference; Authorize with one of the keys below",
        f"  {url}/healthz   liveness",
    ]
    if has_metrics:
        lines.append(f"  {url}/metrics   Prometheus metrics")
    lines += [
        "",
        "Keys (only their digests are stored: this is the one time they are shown)",
        f"  superadmin  {keys['superadmin']}   everything: prices, plans, grants, settings, keys",
        f"  service     {keys['service']}   the host app's backend: accounts and metering",
        f"  account     {keys['account']}   {ACCOUNT_KEY_OF}'s balance, ledger, usage, purchases",
        "",
        "Try",
        f'  curl -H "Authorization: Bearer {keys["service"]}" {url}/v1/accounts/acme/balance',
        f'  curl -X POST {url}/v1/usage -H "Authorization: Bearer {keys["service"]}" \\',
        '       -H "Content-Type: application/json" -H "Idempotency-Key: try-1" \\',
        '       -d \'{"account": "acme", "feature": "llm.chat", "model": "gpt-4o", '
        '"usage": {"input_tokens": 1000, "output_tokens": 500}}\'',
        "",
        "  from creditmeter.client import CreditMeterClient",
        f'  meter = CreditMeterClient("{url}", "{keys["service"]}")',
        '  meter.balance("acme")',
        "",
        "Buy credits (the development payment provider: no card, no network)",
        f"  curl -X POST {account_url}/checkout {own} \\",
        '       -H "Content-Type: application/json" \\',
        f'       -d \'{{"package": "{pack.id}", "success_url": "{sample.SUCCESS_URL}"}}\'',
        f'  then open the "url" it answers ({url}/dev/checkout/pur_…), press Pay,',
        f"  and see {ACCOUNT_KEY_OF}'s balance grow by the pack's "
        f"{views.figure(pack.total_credits)} credits:",
        f"  curl {own} {account_url}/balance",
        "",
        f"Serving {url} until Ctrl-C.",
    ]
    return lines
