"""How a command fails: one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

from typing import Any

import click
from sqlalchemy.exc import SQLAlchemyError

from creditmeter.core.errors import CreditMeterError

EXIT_FAILED = 2


class CommandFailed(click.ClickException):
    """A command could not do what it was asked; click prints ``Error: <message>``."""

    exit_code = EXIT_FAILED


def one_line(error: BaseException) -> str:
    """The first line of what a database driver says, without SQLAlchemy's trailer."""
    cause = getattr(error, "orig", None) or error
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    return lines[0] if lines else type(cause).__name__


class ReportingGroup(click.Group):
    """A group whose commands report creditmeter's errors as :class:`CommandFailed`."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CreditMeterError as error:
            raise CommandFailed(error.message) from error
        except SQLAlchemyError as error:
            raise CommandFailed(f"database error: {one_line(error)}") from error
