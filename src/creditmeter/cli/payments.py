"""Commands on selling credits: credit packs, an account's purchases, payment events."""

from __future__ import annotations

import re
from typing import Final

import click

from creditmeter.cli import views
from creditmeter.cli.admin import credits_argument, echo_lines
from creditmeter.cli.connection import database_url_option, opened
from creditmeter.cli.failures import CommandFailed
from creditmeter.core.audit import CLI

EVENT_STATUSES: Final = ("received", "applied", "ignored", "flagged")


def minor_units(_ctx: click.Context, _param: click.Parameter, value: str) -> int:
    """A price in the currency's minor units: ``999`` (9.99 USD), ``1,500`` (1,500 JPY)."""
    text = value.replace(",", "").replace("_", "").strip()
    if not re.fullmatch(r"[0-9]+", text):
        raise CommandFailed(
            f"price must be a whole number of the currency's minor units (999 is 9.99 USD), "
            f"not {value!r}"
        )
    return int(text)


price_option = click.option(
    "--price",
    callback=minor_units,
    required=True,
    metavar="MINOR_UNITS",
    help="in the currency's minor units: 999 is 9.99 USD",
)
currency_option = click.option(
    "--currency", required=True, metavar="CODE", help="ISO 4217 code: usd, eur, gbp, jpy …"
)


def optional_credits(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    return None if value is None else credits_argument(ctx, param, value)


@click.group()
def packages() -> None:
    """List and write the credit packs for sale."""


@packages.command("list")
@database_url_option
@click.option("--all", "everything", is_flag=True, help="include packs not for sale")
def list_packages(database_url: str | None, everything: bool) -> None:
    """The credit packs in their sort order: credits, bonus, price and badges."""
    with opened(database_url) as meter:
        found = meter.packages(include_inactive=everything)
    if not found:
        click.echo("no packages")
        return
    echo_lines(views.packages(found))


@packages.command("put")
@database_url_option
@click.argument("package_id")
@click.option("--credits", callback=credits_argument, required=True, metavar="N")
@click.option(
    "--bonus-credits",
    callback=credits_argument,
    default="0",
    metavar="N",
    help="given on top of --credits",
)
@price_option
@currency_option
@click.option("--name", help="shown to buyers (default: the id)")
@click.option("--popular", is_flag=True, help="badge: most popular")
@click.option("--best-value", is_flag=True, help="badge: best value")
@click.option("--inactive", is_flag=True, help="not for sale (kept for its purchases)")
@click.option("--sort-order", type=int, default=0, show_default=True, help="lower comes first")
@click.option("--stripe-price-id", metavar="ID", help="a Stripe price to sell it as (price_…)")
def put_package(
    database_url: str | None,
    package_id: str,
    credits: int,
    bonus_credits: int,
    price: int,
    currency: str,
    name: str | None,
    popular: bool,
    best_value: bool,
    inactive: bool,
    sort_order: int,
    stripe_price_id: str | None,
) -> None:
    """Create a credit pack, or replace it; purchases keep what they were sold."""
    with opened(database_url) as meter:
        pack = meter.put_package(
            package_id,
            credits=credits,
            bonus_credits=bonus_credits,
            price=price,
            currency=currency,
            name=name,
            popular=popular,
            best_value=best_value,
            active=not inactive,
            sort_order=sort_order,
            stripe_price_id=stripe_price_id,
            actor=CLI,
        )
    click.echo(f"package {pack.id} written")
    echo_lines(views.packages([pack]))


@packages.command("boost")
@database_url_option
@price_option
@currency_option
@click.option(
    "--base-credits",
    callback=optional_credits,
    metavar="N",
    help="the credits --price buys (default: the smallest limited plan's allowance)",
)
def boost_packages(
    database_url: str | None, price: int, currency: str, base_credits: int | None
) -> None:
    """Write the three boost packs: half the base credits for half the price, the same
    with 10 % more credits, and twice both with 15 % more."""
    with opened(database_url) as meter:
        packs = meter.add_boost_packages(price, currency, base_credits=base_credits, actor=CLI)
    click.echo(f"{views.counted(len(packs), 'boost package')} written")
    echo_lines(views.packages(packs))


@click.command()
@database_url_option
@click.argument("account_id")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
def purchases(database_url: str | None, account_id: str, limit: int) -> None:
    """An account's purchases, newest first: what was sold, paid and refunded."""
    with opened(database_url) as meter:
        page = meter.purchases(account_id, limit=limit)
    if not page.data:
        click.echo(f"no purchases by {account_id}")
        return
    echo_lines(views.purchases(page.data))
    if page.next_cursor is not None:
        click.echo(f"(newest {limit} shown)")


@click.command("payment-events")
@database_url_option
@click.option("--status", type=click.Choice(EVENT_STATUSES), help="only events of this status")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
def payment_events(database_url: str | None, status: str | None, limit: int) -> None:
    """The payment provider's events as received, newest first, with what handling each
    did; a flagged one changed no balance and says why."""
    with opened(database_url) as meter:
        found = meter.payment_events(status=status, limit=limit)
    if not found:
        click.echo("no payment events" if status is None else f"no {status} payment events")
        return
    echo_lines(views.payment_events(found))
