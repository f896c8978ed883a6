from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from creditmeter import CreditMeter
from creditmeter.cli.main import main
from creditmeter.store.database import normalize_url
from tests.cli.conftest import assert_one_line_error, run


def test_help_lists_every_command(runner: CliRunner) -> None:
    result = run(runner, "--help")
    assert result.exit_code == 0
    commands = ("demo", "serve", "api-keys", "verify", "migrate", "sweep", "accounts", "grant")
    selling = ("packages", "purchases", "payment-events", "worker")
    for command in (*commands, "transactions", "audit-log", *selling):
        assert command in result.output


def test_migrate_creates_the_schema_then_finds_it_current(
    runner: CliRunner, database_url: str
) -> None:
    first = run(runner, "migrate", database_url)
    assert first.exit_code == 0, first.output
    assert "migrated from empty to revision" in first.output
    again = run(runner, "migrate", database_url)
    assert again.exit_code == 0
    assert "already" in again.output
    assert run(runner, "verify", database_url).exit_code == 0


def test_verify_exits_0_on_clean_books(
    runner: CliRunner, library: CreditMeter, migrated_url: str
) -> None:
    library.create_account("acme")
    library.grant("acme", 100)
    result = run(runner, "verify", migrated_url)
    assert result.exit_code == 0
    assert result.output == "ok: no violations\n"


def test_verify_exits_1_and_names_each_violation_on_tampered_books(
    runner: CliRunner, library: CreditMeter, migrated_url: str
) -> None:
    library.create_account("acme")
    library.grant("acme", 100)
    engine = sa.create_engine(normalize_url(migrated_url))
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE accounts SET balance = balance + 7 WHERE id = 'acme'")
    engine.dispose()
    result = run(runner, "verify", migrated_url)
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert any(line.startswith("violation I3 acme: stored balance 107") for line in lines)
    assert lines[-1].endswith(("violation", "violations"))


def test_verify_takes_the_database_from_the_environment(
    runner: CliRunner, library: CreditMeter, migrated_url: str
) -> None:
    result = runner.invoke(main, ["verify"], env={"CREDITMETER_DATABASE_URL": migrated_url})
    assert result.exit_code == 0
    assert "ok: no violations" in result.output


def test_a_missing_sqlite_file_is_reported_not_created(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CREDITMETER_DATABASE_URL", raising=False)
    assert_one_line_error(run(runner, "verify"), containing="creditmeter migrate")
    assert_one_line_error(run(runner, "balance", "acme"), containing="no database at")
    assert list(tmp_path.iterdir()) == []


def test_an_unmigrated_database_asks_for_migrate(runner: CliRunner, database_url: str) -> None:
    engine = sa.create_engine(normalize_url(database_url))
    engine.connect().close()  # an empty SQLite file; PostgreSQL's schema is empty already
    engine.dispose()
    assert_one_line_error(run(runner, "verify", database_url), containing="run creditmeter migrate")


def test_an_unreachable_database_is_one_line(runner: CliRunner) -> None:
    url = "postgresql://nobody@127.0.0.1:1/nothing"
    assert_one_line_error(run(runner, "verify", url), containing="database error: ")
    assert_one_line_error(run(runner, "verify", "nonsense://"), containing="database error: ")


def test_sweep_brings_idle_accounts_up_to_date(
    runner: CliRunner, library: CreditMeter, migrated_url: str
) -> None:
    library.put_feature("chat", rates={"tokens": 1})
    library.create_account("acme")
    library.grant("acme", 100)
    hold = library.authorize("acme", "chat", credits=40, ttl=timedelta(milliseconds=100))
    time.sleep(0.2)

    swept = run(runner, "sweep", migrated_url)
    assert swept.exit_code == 0, swept.output
    assert swept.output == "ok: 1 account brought up to date\n"
    with library.db.engine.connect() as conn:
        status = conn.execute(
            sa.text("SELECT status FROM holds WHERE id = :id"), {"id": hold.id}
        ).scalar_one()
    assert status == "expired"
    assert run(runner, "sweep", migrated_url).output == "ok: 0 accounts brought up to date\n"
