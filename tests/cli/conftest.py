"""Fixtures for the command line: a runner, and a migrated database on each engine."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from click.testing import CliRunner, Result

from creditmeter import CreditMeter
from creditmeter.cli.main import main


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def library(migrated_url: str) -> Iterator[CreditMeter]:
    """The library on a migrated database, on the real clock like the command line."""
    with CreditMeter(migrated_url) as meter:
        yield meter


def run(runner: CliRunner, *args: str) -> Result:
    return runner.invoke(main, list(args), catch_exceptions=False)


def assert_one_line_error(result: Result, *, containing: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("Error: ")
    assert result.stderr.count("\n") == 1, result.stderr
    assert containing in result.stderr
