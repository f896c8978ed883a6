from __future__ import annotations

from click.testing import CliRunner

from creditmeter import CreditMeter
from creditmeter.core.audit import ActorKind
from tests.cli.conftest import assert_one_line_error, run


def test_prices_sync_makes_a_version_once_and_lists_its_prices(
    runner: CliRunner, library: CreditMeter, migrated_url: str
) -> None:
    synced = run(runner, "prices", "sync", "--provider", "openai", "--database-url", migrated_url)
    again = run(runner, "prices", "sync", "--provider", "openai", "--database-url", migrated_url)
    listed = run(runner, "prices", "list", "--model", "gpt-4o", "--database-url", migrated_url)

    assert synced.exit_code == 0, synced.output
    version = library.price_book_versions()[0]
    assert synced.output == (
        f"price book version 1: {version.prices:,} model prices from {version.source} (openai)\n"
    )
    assert again.output == "price book version 1 is current: nothing changed\n"
    assert listed.output.splitlines() == [
        f"price book version 1 ({version.source})",
        "provider  model   unit           USD per million",
        "openai    gpt-4o  cached_tokens             1.25",
        "openai    gpt-4o  input_tokens               2.5",
        "openai    gpt-4o  output_tokens               10",
    ]
    [*_, first] = library.audit_log(actions=("prices.synced",)).data
    assert (first.actor.kind, first.details["providers"]) == (ActorKind.CLI, ["openai"])


def test_prices_before_a_sync_and_an_unknown_provider(
    runner: CliRunner, library: CreditMeter, migrated_url: str
) -> None:
    empty = run(runner, "prices", "list", "--database-url", migrated_url)
    unknown = run(runner, "prices", "sync", "--provider", "openia", "--database-url", migrated_url)

    assert empty.output == "no price book version: run `creditmeter prices sync`\n"
    assert_one_line_error(unknown, containing="no provider 'openia'")
    assert library.price_book_versions() == []
