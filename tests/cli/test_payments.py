from __future__ import annotations

from click.testing import CliRunner

from creditmeter import CreditMeter
from creditmeter.payments.dev import DevProvider
from tests.cli.conftest import assert_one_line_error, run
from tests.service.payment_events import deliver, drain, session_completed

SUCCESS_URL = "https://example.com/done"


def test_packages_put_then_list_in_sort_order(runner: CliRunner, database_url: str) -> None:
    db = ("--database-url", database_url)
    assert run(runner, "migrate", database_url).exit_code == 0
    assert run(runner, "packages", "list", *db).output == "no packages\n"
    put = run(
        runner,
        *("packages", "put", "medium", "--credits", "10,000", "--bonus-credits", "1_000"),
        *("--price", "1999", "--currency", "usd", "--name", "Medium", "--popular"),
        *("--sort-order", "2", *db),
    )
    assert put.exit_code == 0, put.output
    assert put.output.splitlines()[0] == "package medium written"
    row = put.output.splitlines()[2].split()
    assert row == ["medium", "Medium", "10,000", "1,000", "19.99", "USD", "2", "popular"]
    small = ("small", "--credits", "5000", "--price", "999", "--currency", "usd")
    assert run(runner, "packages", "put", *small, "--sort-order", "1", *db).exit_code == 0
    yen = ("yen", "--credits", "3000", "--price", "1,500", "--currency", "JPY", "--inactive")
    badges = ("--best-value", "--stripe-price-id", "price_123")
    assert run(runner, "packages", "put", *yen, *badges, *db).exit_code == 0

    listed = run(runner, "packages", "list", *db)
    assert [line.split()[0] for line in listed.output.splitlines()] == ["id", "small", "medium"]
    everything = run(runner, "packages", "list", "--all", *db).output
    yen_row = next(line for line in everything.splitlines() if line.startswith("yen "))
    assert "1,500 JPY" in yen_row
    assert yen_row.endswith("best value, not for sale, stripe price_123")


def test_boost_packages_derive_from_the_smallest_plan(
    runner: CliRunner, library: CreditMeter, migrated_url: str
) -> None:
    library.put_plan("starter", allowances={"*": 1_000})
    library.put_plan("pro", allowances={"*": 20_000})
    result = run(
        runner,
        "packages",
        "boost",
        "--price",
        "1900",
        "--currency",
        "usd",
        "--database-url",
        migrated_url,
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "3 boost packages written"
    rows = [line.split() for line in lines[2:]]
    assert [r[0] for r in rows] == ["boost-half", "boost-single", "boost-double"]
    assert [p.total_credits for p in library.packages()] == [500, 1_100, 2_300]
    assert [p.price.amount for p in library.packages()] == [950, 1_900, 3_800]
    assert "9.50 USD" in lines[2]
    assert lines[3].endswith("popular")
    assert lines[4].endswith("best value")

    based = run(
        runner,
        *("packages", "boost", "--price", "1900", "--currency", "usd"),
        *("--base-credits", "20,000", "--database-url", migrated_url),
    )
    assert based.exit_code == 0, based.output
    assert [p.credits for p in library.packages()] == [10_000, 20_000, 40_000]


def test_package_mistakes_are_one_line_errors(
    runner: CliRunner, library: CreditMeter, migrated_url: str
) -> None:
    db = ("--database-url", migrated_url)
    no_plan = run(runner, "packages", "boost", "--price", "1900", "--currency", "usd", *db)
    assert_one_line_error(no_plan, containing="no plan has a limited allowance")
    unknown = ("packages", "put", "p", "--credits", "10", "--price", "100", "--currency", "xyz")
    assert_one_line_error(run(runner, *unknown, *db), containing="currency must be one of")
    dollars = ("packages", "put", "p", "--credits", "10", "--price", "9.99", "--currency", "usd")
    assert_one_line_error(run(runner, *dollars, *db), containing="minor units")
    cubed = ("packages", "put", "p", "--credits", "10", "--price", "³", "--currency", "usd")
    assert_one_line_error(run(runner, *cubed, *db), containing="minor units")
    assert library.packages(include_inactive=True) == []


def test_purchases_and_payment_events_of_a_pack_bought(
    runner: CliRunner, library: CreditMeter, migrated_url: str
) -> None:
    db = ("--database-url", migrated_url)
    library.create_account("acme")
    assert run(runner, "purchases", "acme", *db).output == "no purchases by acme\n"
    assert run(runner, "payment-events", *db).output == "no payment events\n"
    library.put_package("small", credits=5_000, price=999, currency="usd")
    provider = library.payments
    assert isinstance(provider, DevProvider)
    started = library.checkout("acme", "small", success_url=SUCCESS_URL)
    provider.complete(library.purchase(started.purchase_id))
    unpaid = library.checkout("acme", "small", success_url=SUCCESS_URL)
    deliver(
        library,
        "checkout.session.completed",
        session_completed(library.purchase(unpaid.purchase_id), amount=500),
    )
    drain(library)

    listed = run(runner, "purchases", "acme", *db)
    assert listed.exit_code == 0, listed.output
    header, flagged, fulfilled = listed.output.splitlines()
    assert header.split()[:7] == ["id", "kind", "status", "credits", "price", "paid", "refunded"]
    assert fulfilled.split()[:3] == [started.purchase_id, "checkout", "fulfilled"]
    assert fulfilled.split()[3:9] == ["5,000", "9.99", "USD", "9.99", "USD", "-"]
    assert flagged.split()[:3] == [unpaid.purchase_id, "checkout", "paid"]
    assert flagged.endswith("not credited")

    events = run(runner, "payment-events", *db)
    assert events.exit_code == 0, events.output
    assert len(events.output.splitlines()) == 3
    assert "5000 credits credited" in events.output
    only_flagged = run(runner, "payment-events", "--status", "flagged", *db).output.splitlines()
    assert len(only_flagged) == 2
    assert only_flagged[1].split()[4:6] == ["flagged", unpaid.purchase_id]
    assert run(runner, "payment-events", "--status", "ignored", *db).output == (
        "no ignored payment events\n"
    )


def test_purchases_of_an_unknown_account_is_a_one_line_error(
    runner: CliRunner, library: CreditMeter, migrated_url: str
) -> None:
    result = run(runner, "purchases", "nobody", "--database-url", migrated_url)
    assert_one_line_error(result, containing="nobody")
