"""The ``creditmeter`` command: its groups, and the commands on a whole database."""

from __future__ import annotations

import click

from creditmeter.cli import admin, payments, prices, views
from creditmeter.cli.connection import DATABASE_URL_ENV, opened, shown
from creditmeter.cli.demo import demo
from creditmeter.cli.failures import ReportingGroup
from creditmeter.cli.serve import serve
from creditmeter.cli.worker import worker
from creditmeter.events.sweeper import sweep_all
from creditmeter.store.database import Database
from creditmeter.store.migrate import current_revision, upgrade

EXIT_VIOLATIONS = 1


@click.group(cls=ReportingGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="creditmeter")
def main() -> None:
    """creditmeter: credits, allowances, holds and books that balance.

    Commands that open a database take its SQLAlchemy URL (or $CREDITMETER_DATABASE_URL;
    by default sqlite:///creditmeter.db in the working directory). Exit status: 0 done,
    1 verify found violations, 2 an error, reported on one line.
    """


@main.command()
@click.argument("database_url", required=False, envvar=DATABASE_URL_ENV)
def migrate(database_url: str | None) -> None:
    """Create the schema in DATABASE_URL, or bring it up to date."""
    db = Database(database_url)
    try:
        before = current_revision(db)
        upgrade(db)
        after = current_revision(db)
    finally:
        db.dispose()
    if before == after:
        click.echo(f"ok: {shown(database_url)} is at revision {after} already")
    else:
        click.echo(
            f"ok: {shown(database_url)} migrated from {before or 'empty'} to revision {after}"
        )


@main.command()
@click.argument("database_url", required=False, envvar=DATABASE_URL_ENV)
@click.pass_context
def verify(ctx: click.Context, database_url: str | None) -> None:
    """Check the ledger's invariants over DATABASE_URL; exit 1 if any is broken."""
    with opened(database_url) as meter:
        violations = meter.verify()
    for violation in violations:
        click.echo(f"violation {violation}")
    if violations:
        click.echo(views.counted(len(violations), "violation"))
        ctx.exit(EXIT_VIOLATIONS)
    click.echo("ok: no violations")


@main.command()
@click.argument("database_url", required=False, envvar=DATABASE_URL_ENV)
def sweep(database_url: str | None) -> None:
    """Bring every idle account of DATABASE_URL up to date now: release expired holds,
    roll ended periods, expire credits. `serve` does this every 30 s by itself."""
    with opened(database_url) as meter:
        swept = sweep_all(meter)
    click.echo(f"ok: {views.counted(swept, 'account')} brought up to date")


main.add_command(demo)
main.add_command(serve)
main.add_command(worker)
main.add_command(admin.accounts)
main.add_command(admin.grant)
main.add_command(admin.void_grant)
main.add_command(admin.balance)
main.add_command(admin.transactions)
main.add_command(admin.api_keys)
main.add_command(admin.audit_log)
main.add_command(prices.prices)
main.add_command(prices.rerate)
main.add_command(admin.webhook_endpoints)
main.add_command(payments.packages)
main.add_command(payments.purchases)
main.add_command(payments.payment_events)


if __name__ == "__main__":
    main()
