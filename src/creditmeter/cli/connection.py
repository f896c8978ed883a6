"""Which database a command works on, and the library opened on it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final, TypeVar

import click
import sqlalchemy as sa

from creditmeter.cli.failures import CommandFailed
from creditmeter.meter import CreditMeter
from creditmeter.payments.provider import PaymentProvider
from creditmeter.store.database import DEFAULT_URL
from creditmeter.store.migrate import current_revision, head_revision

DATABASE_URL_ENV: Final = "CREDITMETER_DATABASE_URL"

F = TypeVar("F", bound=Callable[..., object])


def database_url_option(command: F) -> F:
    """The ``--database-url`` option, read from ``$CREDITMETER_DATABASE_URL`` if not given."""
    return click.option(
        "--database-url",
        envvar=DATABASE_URL_ENV,
        metavar="URL",
        help=f"database to use (default: ${DATABASE_URL_ENV}, else {DEFAULT_URL})",
    )(command)


def shown(url: str | None) -> str:
    """A URL as it may be printed: its password hidden."""
    try:
        return sa.make_url(url or DEFAULT_URL).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return url or DEFAULT_URL


def missing_sqlite_file(url: str | None) -> Path | None:
    """The file of a SQLite URL, if it does not exist (connecting would create it)."""
    try:
        parsed = sa.make_url(url or DEFAULT_URL)
    except sa.exc.ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    path = Path(parsed.database or "")
    return None if path.exists() else path


@contextmanager
def opened(url: str | None, *, payments: PaymentProvider | None = None) -> Iterator[CreditMeter]:
    """The library on an existing database whose schema is current, selling through
    ``payments`` (the development provider by default); commands other than ``migrate``
    never create or migrate a database."""
    missing = missing_sqlite_file(url)
    if missing is not None:
        raise CommandFailed(
            f"no database at {missing}; create one with: creditmeter migrate {shown(url)}"
        )
    meter = CreditMeter(url, migrate=False, payments=payments)
    try:
        current, head = current_revision(meter.db), head_revision()
        if current != head:
            raise CommandFailed(
                f"the schema of {shown(url)} is at revision {current or 'none'}, "
                f"this creditmeter needs {head}: run creditmeter migrate"
            )
        yield meter
    finally:
        meter.close()
