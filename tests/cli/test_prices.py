from __future__ import annotations

from click.testing import CliRunner

from creditmeter import CreditMeter
from creditmeter.core.audit import ActorKind
from tests.cli.conftest import assert_one_line_error, run
from tests.conftest import Clock


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


def test_rerate_prints_the_window_s_usage_under_another_version(
    runner: CliRunner, meter: CreditMeter, clock: Clock, migrated_url: str
) -> None:
    meter.create_account("acme")
    meter.grant("acme", 1_000, source="purchase")
    meter.sync_prices(["mistral"])
    meter.put_feature("llm.cost", cost_plus=True, multiplier="1.5")
    meter.put_feature("llm.flat", rates={"tokens": 1})
    small = {"input_tokens": 100_000, "output_tokens": 20_000}
    meter.charge("acme", "llm.cost", model="mistral-small-latest", usage=small)
    meter.charge("acme", "llm.flat", usage={"tokens": 7})
    clock.advance(days=7)  # mistral-small-latest: $0.10 / $0.30 → $0.15 / $0.60 on 2026-03-16
    meter.sync_prices(["mistral"])

    result = run(
        runner,
        *("rerate", "--from", "2026-03-10", "--to", "2026-03-11", "--version", "2"),
        *("--database-url", migrated_url),
    )

    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "usage from 2026-03-10 00:00 until 2026-03-11 00:00 UTC under price book version 2",
        "account               records  credits  re-rated  difference  cost USD  re-rated USD",
        "acme                        1       24        41         +17     0.016         0.027",
        "",
        "model                 records  credits  re-rated  difference  cost USD  re-rated USD",
        "mistral-small-latest        1       24        41         +17     0.016         0.027",
        "",
        "total                       1       24        41         +17     0.016         0.027",
        "not re-rated: 1 record of features not cost-plus, 0 records that version 2 has no "
        "price for",
    ]


def test_rerate_of_a_version_that_does_not_exist(
    runner: CliRunner, library: CreditMeter, migrated_url: str
) -> None:
    result = run(
        runner,
        *("rerate", "--from", "2026-03-10", "--to", "2026-03-11", "--version", "9"),
        *("--database-url", migrated_url),
    )

    assert_one_line_error(result, containing="price book version")


def test_rerate_apply_books_the_difference_once(
    runner: CliRunner, meter: CreditMeter, clock: Clock, migrated_url: str
) -> None:
    meter.create_account("acme")
    meter.grant("acme", 1_000, source="purchase")
    meter.sync_prices(["mistral"])
    meter.put_feature("llm.cost", cost_plus=True, multiplier="1.5")
    small = {"input_tokens": 100_000, "output_tokens": 20_000}
    meter.charge("acme", "llm.cost", model="mistral-small-latest", usage=small)  # 24 credits
    clock.advance(days=7)  # mistral-small-latest: $0.10 / $0.30 → $0.15 / $0.60 on 2026-03-16
    meter.sync_prices(["mistral"])
    window = ("rerate", "--from", "2026-03-10", "--to", "2026-03-11", "--version", "2")
    url = ("--database-url", migrated_url)

    applied = run(runner, *window, "--apply", "--idempotency-key", "rr-1", *url)
    retried = run(runner, *window, "--apply", "--idempotency-key", "rr-1", *url)
    again = run(runner, *window, "--apply", *url)

    assert applied.exit_code == 0, applied.output
    [txn] = meter.transactions("acme", types=("adjustment",)).data
    booked = applied.output.splitlines()[-3:]
    assert booked[0] == f"booked re-rating {txn.metadata['rerate']}: 1 adjustment"
    assert booked[1:] == [
        f"account  {'adjustment':<{len(txn.id)}}  to account",
        f"acme     {txn.id}         -17",
    ]
    assert retried.output == applied.output
    assert_one_line_error(again, containing="was re-rated under price book version 2")
    assert meter.balance("acme").available == 1_000 - 24 - 17
    assert meter.verify() == []
    [entry] = meter.audit_log(actions=("rerate.booked",)).data
    assert (entry.actor.kind, entry.subject_id) == (ActorKind.CLI, txn.id)


def test_rerate_idempotency_key_without_apply(runner: CliRunner, migrated_url: str) -> None:
    result = run(
        runner,
        *("rerate", "--from", "2026-03-10", "--to", "2026-03-11", "--version", "1"),
        *("--idempotency-key", "k", "--database-url", migrated_url),
    )

    assert result.exit_code == 2
    assert "--idempotency-key goes with --apply" in result.output
