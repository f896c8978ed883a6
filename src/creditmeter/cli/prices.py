"""The price book's model prices: imported from the price catalogue (genai-prices, its
bundled snapshot; nothing is fetched) as new versions, recorded in the audit log as the
command line's."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click

from creditmeter.cli import views
from creditmeter.cli.connection import database_url_option, opened
from creditmeter.core.audit import CLI
from creditmeter.core.pricing import decimal_text


@click.group()
def prices() -> None:
    """Import model prices from the price catalogue and list them."""


@prices.command("sync")
@database_url_option
@click.option(
    "--provider",
    "providers",
    multiple=True,
    metavar="ID",
    help="a catalogue provider to import (openai, anthropic …), repeatable; default: all; "
    "the others keep the latest version's prices",
)
def sync(database_url: str | None, providers: tuple[str, ...]) -> None:
    """A new price-book version with the catalogue's model prices."""
    with opened(database_url) as meter:
        before = meter.price_book_versions()
        version = meter.sync_prices(list(providers) or None, actor=CLI)
    which = "every provider" if version.providers is None else ", ".join(version.providers)
    if before and before[-1].version == version.version:
        click.echo(f"price book version {version.version} is current: nothing changed")
        return
    click.echo(
        f"price book version {version.version}: {views.figure(version.prices)} model prices "
        f"from {version.source} ({which})"
    )


@prices.command("list")
@database_url_option
@click.option("--version", type=click.IntRange(1), help="default: the latest")
@click.option("--provider", metavar="ID", help="only this provider's models")
@click.option("--model", metavar="ID", help="only this model (the catalogue's id)")
def list_prices(
    database_url: str | None, version: int | None, provider: str | None, model: str | None
) -> None:
    """A price-book version's model prices, in USD per million units."""
    with opened(database_url) as meter:
        found, listed = meter.model_prices(version=version, provider=provider, model=model)
    if found is None:
        click.echo("no price book version: run `creditmeter prices sync`")
        return
    click.echo(f"price book version {found.version} ({found.source})")
    rows = [["provider", "model", "unit", "USD per million"]]
    rows += [[p.provider, p.model, p.unit, decimal_text(p.usd_per_million)] for p in listed]
    for line in views.table(rows, indent=0, right=[3]):
        click.echo(line)


_DAY = click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"])


@click.command()
@database_url_option
@click.option("--from", "since", type=_DAY, required=True, help="from this day or time (UTC)")
@click.option("--to", "until", type=_DAY, required=True, help="until, not including (UTC)")
@click.option("--version", type=click.IntRange(1), required=True, help="a price-book version")
@click.option("--account", metavar="ID", help="only this account's usage")
@click.option(
    "--apply",
    is_flag=True,
    help="book each account's difference as an adjustment transaction (once per window)",
)
@click.option("--idempotency-key", help="with --apply: a retry with the same key books nothing")
def rerate(
    database_url: str | None,
    since: datetime,
    until: datetime,
    version: int,
    account: str | None,
    apply: bool,
    idempotency_key: str | None,
) -> None:
    """What the cost-plus usage in a window would cost under a price-book version,
    beside what it was rated at. A report, unless --apply books the differences."""
    if idempotency_key is not None and not apply:
        raise click.UsageError("--idempotency-key goes with --apply")
    window: dict[str, Any] = {
        "since": since.replace(tzinfo=UTC),
        "until": until.replace(tzinfo=UTC),
        "to_version": version,
        "account": account,
    }
    with opened(database_url) as meter:
        report = meter.rerate(**window)
        booking = None
        if apply:
            booking = meter.apply_rerate(**window, idempotency_key=idempotency_key, actor=CLI)
    click.echo(
        f"usage from {report.since:%Y-%m-%d %H:%M} until {report.until:%Y-%m-%d %H:%M} UTC "
        f"under price book version {version}"
    )
    for line in views.rerate(report):
        click.echo(line)
    if booking is not None:
        for line in views.rerate_booking(booking):
            click.echo(line)
