"""Reads: the balance breakdown, the ledger and its pages, usage and its summaries, CSV."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest

from creditmeter import CreditMeter
from creditmeter.core.errors import AllowanceState
from creditmeter.core.records import PoolBalance, Transaction, UsageGroup
from creditmeter.core.settings import BalanceWarning
from tests.conftest import Clock


def assert_books_balance(meter: CreditMeter) -> None:
    assert meter.verify() == []


def all_pages(
    meter: CreditMeter, account_id: str, limit: int, types: tuple[str, ...] = ()
) -> list[str]:
    """The ids of every transaction, a page of ``limit`` at a time."""
    ids: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = meter.transactions(account_id, limit=limit, cursor=cursor, types=types)
        pages += 1
        assert len(page.data) <= limit
        ids += [t.id for t in page.data]
        if page.next_cursor is None:
            return ids
        assert len(page.data) == limit
        cursor = page.next_cursor
        assert pages < 100


@pytest.fixture
def acme(meter: CreditMeter) -> str:
    meter.put_feature("chat", rates={"tokens": 1})
    meter.put_feature("image", rates={"images": 100})
    meter.create_account("acme")
    return "acme"


# The balance.


def test_balance_breakdown(meter: CreditMeter) -> None:
    meter.put_plan("pro", allowances={"*": 20_000})
    meter.put_feature("chat", rates={"tokens": 1})
    meter.create_account("acme", plan="pro")
    meter.grant("acme", 5_000, source="purchase")
    meter.charge("acme", "chat", credits=15_000)
    meter.authorize("acme", "chat", credits=1_000)

    balance = meter.balance("acme")

    assert balance.account_id == "acme"
    assert balance.available == 9_000
    assert balance.held == 1_000
    assert balance.debt == 0
    assert balance.allowance == AllowanceState(used=15_000, limit=20_000, percentage=75)
    assert balance.allowance.remaining == 5_000
    assert balance.period_start == datetime(2026, 3, 1, tzinfo=UTC)
    assert balance.period_end == datetime(2026, 4, 1, tzinfo=UTC)
    assert balance.purchased_available == 5_000
    assert balance.pools == {
        "*": PoolBalance(
            available=9_000,
            allowance=AllowanceState(used=15_000, limit=20_000, percentage=75),
            unlimited=False,
        )
    }
    assert balance.warnings == (BalanceWarning("allowance_75", "75 % of monthly allowance used"),)
    assert balance.status == "active"
    assert_books_balance(meter)


def test_balance_warnings_for_low_and_critical_balances(meter: CreditMeter, acme: str) -> None:
    meter.grant(acme, 2_000, source="purchase")
    assert meter.balance(acme).warnings == ()

    meter.charge(acme, "chat", credits=1_100)
    assert meter.balance(acme).warnings == (
        BalanceWarning("balance_low", "balance is low: 900 credits left"),
    )

    charge = meter.charge(acme, "chat", credits=850)
    assert charge.warnings == (
        BalanceWarning("balance_critical", "balance is critical: 50 credits left"),
    )
    assert meter.balance(acme).warnings == charge.warnings
    assert_books_balance(meter)


def test_balance_of_a_new_account_is_empty(meter: CreditMeter, acme: str) -> None:
    balance = meter.balance(acme)
    assert (balance.available, balance.held, balance.debt, balance.purchased_available) == (
        0,
        0,
        0,
        0,
    )
    assert balance.allowance == AllowanceState(used=0, limit=0, percentage=None)
    assert balance.pools == {}
    assert_books_balance(meter)


# The ledger.


def test_transactions_newest_first_with_filters(
    meter: CreditMeter, acme: str, clock: Clock
) -> None:
    start = clock.now
    meter.grant(acme, 1_000, source="purchase")
    clock.advance(minutes=1)
    meter.charge(acme, "chat", credits=100)
    clock.advance(minutes=1)
    meter.charge(acme, "chat", credits=200)
    clock.advance(minutes=1)
    meter.refund(acme, amount=50)
    clock.advance(minutes=1)
    meter.charge(acme, "chat", credits=10)

    page = meter.transactions(acme)

    assert page.next_cursor is None
    assert [t.type for t in page.data] == ["usage", "refund", "usage", "usage", "grant"]
    assert [t.amount for t in page.data] == [-10, 50, -200, -100, 1_000]
    assert [t.balance_after for t in page.data] == [740, 750, 700, 900, 1_000]
    assert [t.created_at - start for t in page.data] == [
        timedelta(minutes=m) for m in (4, 3, 2, 1, 0)
    ]
    for newer, older in zip(page.data, page.data[1:], strict=False):
        assert newer.balance_before == older.balance_after
    assert all(sum(p.amount for p in t.postings) == 0 for t in page.data)

    usage = meter.transactions(acme, types=("usage",)).data
    assert [t.amount for t in usage] == [-10, -200, -100]
    assert all(t.usage_id is not None for t in usage)
    both = meter.transactions(acme, types=("usage", "refund")).data
    assert [t.amount for t in both] == [-10, 50, -200, -100]
    window = meter.transactions(
        acme, since=start + timedelta(minutes=1), until=start + timedelta(minutes=3)
    ).data
    assert [t.amount for t in window] == [-200, -100]
    assert meter.transactions(acme, since=start + timedelta(minutes=5)).data == ()
    assert meter.transactions(acme, types=("expiry",)).data == ()
    assert_books_balance(meter)


def test_cursor_pagination_has_no_duplicates_and_no_gaps(
    meter: CreditMeter, acme: str, clock: Clock
) -> None:
    meter.grant(acme, 100_000, source="purchase")
    for i in range(22):
        if i % 3 == 0:
            clock.advance(seconds=1)  # and some transactions share a timestamp
        meter.charge(acme, "chat", credits=i + 1)
    everything = [t.id for t in meter.transactions(acme, limit=1_000).data]
    assert len(everything) == 23

    for limit in (1, 5, 7, 23, 50):
        assert all_pages(meter, acme, limit) == everything

    usage_only = [t.id for t in meter.transactions(acme, types=("usage",), limit=1_000).data]
    assert len(usage_only) == 22
    assert all_pages(meter, acme, 4, types=("usage",)) == usage_only
    assert_books_balance(meter)


def test_pagination_stays_stable_when_new_transactions_arrive(
    meter: CreditMeter, acme: str, clock: Clock
) -> None:
    meter.grant(acme, 10_000, source="purchase")
    for _ in range(5):
        clock.advance(seconds=1)
        meter.charge(acme, "chat", credits=10)
    first = meter.transactions(acme, limit=3)
    assert first.next_cursor is not None

    clock.advance(seconds=1)
    meter.charge(acme, "chat", credits=99)
    rest = meter.transactions(acme, limit=10, cursor=first.next_cursor)

    assert [t.amount for t in first.data] == [-10, -10, -10]
    assert [t.amount for t in rest.data] == [-10, -10, 10_000]
    assert rest.next_cursor is None
    assert_books_balance(meter)


def test_transactions_of_one_account_only(meter: CreditMeter, acme: str) -> None:
    meter.create_account("globex")
    meter.grant(acme, 100)
    meter.grant("globex", 200)
    assert [t.amount for t in meter.transactions(acme).data] == [100]
    assert [t.amount for t in meter.transactions("globex").data] == [200]
    assert_books_balance(meter)


# Usage.


def test_usage_list_newest_first_with_filters_and_pages(
    meter: CreditMeter, acme: str, clock: Clock
) -> None:
    meter.grant(acme, 10_000, source="purchase")
    made = []
    for feature, member, credits in [
        ("chat", "ann", 10),
        ("image", "bob", 20),
        ("chat", "bob", 30),
        ("chat", "ann", 40),
        ("image", "ann", 50),
    ]:
        clock.advance(minutes=1)
        made.append(meter.charge(acme, feature, credits=credits, member=member).usage_id)

    records = meter.usage(acme).data
    assert [r.id for r in records] == made[::-1]
    assert [r.credits for r in records] == [50, 40, 30, 20, 10]
    assert [r.credits for r in meter.usage(acme, feature="chat").data] == [40, 30, 10]
    assert [r.credits for r in meter.usage(acme, member="ann").data] == [50, 40, 10]
    assert [r.credits for r in meter.usage(acme, feature="image", member="bob").data] == [20]
    since = meter.usage(acme, since=records[2].created_at, until=records[0].created_at).data
    assert [r.credits for r in since] == [40, 30]

    first = meter.usage(acme, limit=2)
    assert [r.credits for r in first.data] == [50, 40]
    second = meter.usage(acme, limit=2, cursor=first.next_cursor)
    assert [r.credits for r in second.data] == [30, 20]
    third = meter.usage(acme, limit=2, cursor=second.next_cursor)
    assert [r.credits for r in third.data] == [10]
    assert third.next_cursor is None
    assert_books_balance(meter)


def test_usage_summary_groupings(meter: CreditMeter, acme: str, clock: Clock) -> None:
    meter.grant(acme, 100_000, source="purchase")
    events: list[tuple[datetime, str, str | None, str | None, int]] = [
        (datetime(2026, 3, 10, 12, tzinfo=UTC), "chat", "gpt", "ann", 100),
        (datetime(2026, 3, 10, 18, tzinfo=UTC), "image", "dalle", "bob", 600),
        (datetime(2026, 3, 11, 9, tzinfo=UTC), "chat", "gpt", "ann", 200),
        (datetime(2026, 3, 16, 10, tzinfo=UTC), "chat", "claude", None, 50),
        (datetime(2026, 4, 2, 8, tzinfo=UTC), "chat", None, "bob", 1_000),
    ]
    usage_ids = []
    for at, feature, model, member, credits in events:
        clock.now = at
        charge = meter.charge(acme, feature, credits=credits, model=model, member=member)
        usage_ids.append(charge.usage_id)
    meter.refund(acme, usage_id=usage_ids[2])  # the 200 of 11 March

    def summary(
        group_by: str, feature: str | None = None, member: str | None = None
    ) -> list[tuple[str, int, int, int]]:
        groups = meter.usage_summary(acme, group_by=group_by, feature=feature, member=member)
        assert all(isinstance(g, UsageGroup) for g in groups)
        return [(g.key, g.count, g.credits, g.charged) for g in groups]

    assert summary("day") == [
        ("2026-03-10", 2, 700, 700),
        ("2026-03-11", 1, 200, 0),
        ("2026-03-16", 1, 50, 50),
        ("2026-04-02", 1, 1_000, 1_000),
    ]
    assert summary("week") == [
        ("2026-03-09", 3, 900, 700),
        ("2026-03-16", 1, 50, 50),
        ("2026-03-30", 1, 1_000, 1_000),
    ]
    assert summary("month") == [
        ("2026-03-01", 4, 950, 750),
        ("2026-04-01", 1, 1_000, 1_000),
    ]
    assert summary("feature") == [("chat", 4, 1_350, 1_150), ("image", 1, 600, 600)]
    assert summary("model") == [
        ("", 1, 1_000, 1_000),
        ("claude", 1, 50, 50),
        ("dalle", 1, 600, 600),
        ("gpt", 2, 300, 100),
    ]
    assert summary("member") == [("", 1, 50, 50), ("ann", 2, 300, 100), ("bob", 2, 1_600, 1_600)]
    assert summary("month", feature="chat") == [
        ("2026-03-01", 3, 350, 150),
        ("2026-04-01", 1, 1_000, 1_000),
    ]
    assert summary("feature", member="bob") == [("chat", 1, 1_000, 1_000), ("image", 1, 600, 600)]
    march_week_two = meter.usage_summary(
        acme,
        group_by="day",
        since=datetime(2026, 3, 11, tzinfo=UTC),
        until=datetime(2026, 4, 1, tzinfo=UTC),
    )
    assert [(g.key, g.credits) for g in march_week_two] == [("2026-03-11", 200), ("2026-03-16", 50)]
    assert meter.usage_summary("acme", group_by="day", feature="nothing") == []
    assert_books_balance(meter)


# CSV export.


def test_export_transactions_csv(meter: CreditMeter, acme: str, clock: Clock) -> None:
    meter.grant(acme, 1_000, source="purchase", reason="pack, large")
    clock.advance(minutes=1)
    charge = meter.charge(acme, "chat", credits=120)
    clock.advance(minutes=1)
    hold = meter.authorize(acme, "chat", credits=30)
    settled = meter.settle(hold.id, credits=30)
    out = io.StringIO()

    written = meter.export_transactions_csv(acme, out)

    ledger: list[Transaction] = list(meter.iter_transactions(acme))
    assert written == 3 == len(ledger)
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows[0] == [
        "id",
        "created_at",
        "type",
        "amount",
        "balance_before",
        "balance_after",
        "description",
        "usage_id",
        "hold_id",
    ]
    assert [r[0] for r in rows[1:]] == [t.id for t in ledger]
    assert [(r[2], r[3], r[4], r[5]) for r in rows[1:]] == [
        ("usage", "-30", "880", "850"),
        ("usage", "-120", "1000", "880"),
        ("grant", "1000", "0", "1000"),
    ]
    assert rows[3][6] == "pack, large"
    assert (rows[1][7], rows[1][8]) == (settled.usage_id, hold.id)
    assert (rows[2][7], rows[2][8]) == (charge.usage_id, "")
    assert datetime.fromisoformat(rows[3][1]) == datetime(2026, 3, 10, 12, tzinfo=UTC)

    only_usage = io.StringIO()
    assert meter.export_transactions_csv(acme, only_usage, types=("usage",)) == 2
    assert len(list(csv.reader(io.StringIO(only_usage.getvalue())))) == 3
    assert_books_balance(meter)


def test_export_of_an_empty_ledger_is_the_header(meter: CreditMeter, acme: str) -> None:
    out = io.StringIO()
    assert meter.export_transactions_csv(acme, out) == 0
    assert out.getvalue().splitlines() == [
        "id,created_at,type,amount,balance_before,balance_after,description,usage_id,hold_id"
    ]
    assert_books_balance(meter)


def test_balance_counts_a_grant_only_once_it_takes_effect(
    meter: CreditMeter, acme: str, clock: Clock
) -> None:
    """DESIGN §3: available is the sum of the active grants (effective now) minus holds."""
    starts = clock.now + timedelta(days=1)
    meter.grant(acme, 500, source="purchase", effective_at=starts)

    assert meter.check(acme, "chat", credits=1).available == 0
    balance = meter.balance(acme)
    assert (balance.available, balance.purchased_available) == (0, 0)

    clock.now = starts
    balance = meter.balance(acme)
    assert (balance.available, balance.purchased_available) == (500, 500)
    assert_books_balance(meter)
