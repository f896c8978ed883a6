from __future__ import annotations

import click
from click.testing import CliRunner
from sqlalchemy.exc import OperationalError

from creditmeter import InvalidRequest
from creditmeter.cli.failures import ReportingGroup, one_line


@click.group(cls=ReportingGroup)
def group() -> None:
    pass


@group.command()
def refuses() -> None:
    raise InvalidRequest("amount must be an integer > 0")


@group.command()
def loses_the_database() -> None:
    cause = Exception("connection failed: refused\n\tIs the server running?")
    raise OperationalError("SELECT 1", {}, cause)


def test_creditmeter_errors_exit_2_with_their_message_only() -> None:
    result = CliRunner().invoke(group, ["refuses"])
    assert result.exit_code == 2
    assert result.stderr == "Error: amount must be an integer > 0\n"


def test_database_errors_exit_2_with_the_driver_first_line() -> None:
    result = CliRunner().invoke(group, ["loses-the-database"])
    assert result.exit_code == 2
    assert result.stderr == "Error: database error: connection failed: refused\n"


def test_one_line_of_an_error_without_text_is_its_type() -> None:
    assert one_line(ValueError()) == "ValueError"
