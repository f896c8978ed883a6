"""The stats, on a small seeded world whose every figure is worked out by hand.

The world (the clock starts 2026-03-10 12:00 UTC; settings: 1,000 credits per USD, low at
1,000, critical at 100):

- acme (plan pro, 10,000 a month): chat 1,000 (gpt-4o, member ann, $0.40) on the 10th;
  image 200 (dall-e, $0.08) and chat 500 (gpt-4o, no cost, refunded) on the 11th; buys
  a USD pack (1,000 credits, 9.99) and a EUR pack (2,000 credits, 15.00) on the 12th:
  available 10,000 − 1,000 − 200 − 500 + 500 + 1,000 + 2,000 = 11,800 (healthy).
- beta (no plan): an admin grant of 500, a promotional one of 300 voided; chat 100
  (no model, $0.05) on the 11th; buys the USD pack, refunded in full (its 1,000 credits
  clawed back): available 400 (low).
- gamma (no plan, suspended): nothing: 0 (critical).
- delta (plan unl, unlimited): chat 50 on the 12th, drawn from no grant: 0 (critical).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from creditmeter import CreditMeter
from creditmeter.core.errors import InvalidRequest
from creditmeter.core.stats import DailyUsage, Level
from creditmeter.payments.dev import DevProvider
from tests.conftest import Clock

MARCH = datetime(2026, 3, 1, tzinfo=UTC)
APRIL = datetime(2026, 4, 1, tzinfo=UTC)


def buy(meter: CreditMeter, account_id: str, package_id: str) -> str:
    started = meter.checkout(account_id, package_id, ui_mode="elements")
    assert isinstance(meter.payments, DevProvider)
    meter.payments.complete(meter.purchase(started.purchase_id))
    while meter.work():
        pass
    return started.purchase_id


@pytest.fixture
def world(meter: CreditMeter, clock: Clock) -> CreditMeter:
    meter.put_feature("chat", rates={"tokens": 1})
    meter.put_feature("image", rates={"images": 100})
    meter.put_plan("pro", allowances={"*": 10_000})
    meter.put_plan("unl", allowances={"*": None})
    meter.put_package("small", credits=1_000, price=999, currency="usd")
    meter.put_package("euro", credits=2_000, price=1_500, currency="eur")
    meter.create_account("acme", name="Acme Corp", plan="pro")
    meter.create_account("beta", name="Beta Labs")
    meter.create_account("gamma", name="Gamma")
    meter.create_account("delta", name="Delta Unlimited", plan="unl")
    meter.update_account("gamma", status="suspended")
    meter.grant("beta", 500, source="admin", reason="support")
    promotional = meter.grant("beta", 300, source="promotional", reason="launch")
    meter.void_grant("beta", promotional.grant_id, reason="by mistake")

    meter.charge(
        "acme",
        "chat",
        usage={"tokens": 1_000},
        model="gpt-4o",
        member="ann",
        provider_cost=Decimal("0.40"),
    )
    clock.advance(days=1)
    meter.charge(
        "acme", "image", usage={"images": 2}, model="dall-e", provider_cost=Decimal("0.08")
    )
    refunded = meter.charge("acme", "chat", usage={"tokens": 500}, model="gpt-4o")
    meter.charge("beta", "chat", usage={"tokens": 100}, provider_cost=Decimal("0.05"))
    clock.advance(days=1)
    meter.charge("delta", "chat", usage={"tokens": 50})
    assert refunded.usage_id is not None
    meter.refund("acme", usage_id=refunded.usage_id, reason="bad answer")
    buy(meter, "acme", "small")
    buy(meter, "acme", "euro")
    meter.refund_purchase(buy(meter, "beta", "small"))
    return meter


def test_the_world_is_as_described(world: CreditMeter) -> None:
    available = {a: world.balance(a).available for a in ("acme", "beta", "gamma", "delta")}
    assert available == {"acme": 11_800, "beta": 400, "gamma": 0, "delta": 0}
    assert world.verify() == []


def test_the_overview_of_a_month(world: CreditMeter) -> None:
    stats = world.stats(since=MARCH, until=APRIL)

    assert (stats.since, stats.until) == (MARCH, APRIL)
    issued = stats.issued
    assert (issued.allowance, issued.purchased, issued.granted) == (10_000, 4_000, 800)
    assert (issued.refunded, issued.voided, issued.total) == (0, 300, 14_800)
    assert stats.events == 5
    assert stats.events_without_cost == 2
    assert stats.billable_credits == 1_000 + 200 + 500 - 500 + 100 + 50
    assert stats.consumed == 1_000 + 200 + 500 - 500 + 100
    assert stats.billable_usd == Decimal("1.35")
    assert stats.provider_cost_usd == Decimal("0.53")
    assert stats.margin_usd == Decimal("0.82")
    assert stats.margin_ratio == Decimal("0.6074")
    assert [(r.currency, r.purchases, r.gross, r.refunded, r.net) for r in stats.revenue] == [
        ("eur", 1, 1_500, 0, 1_500),
        ("usd", 2, 1_998, 999, 999),
    ]
    assert stats.accounts == 4
    assert stats.active_accounts == 3
    assert stats.average_balance == Decimal("3050.00")
    assert (stats.low_accounts, stats.critical_accounts) == (1, 2)
    assert [(t.account_id, t.name, t.credits) for t in stats.top_accounts] == [
        ("acme", "Acme Corp", 1_200),
        ("beta", "Beta Labs", 100),
    ]
    assert stats.models == tuple(world.model_stats(since=MARCH, until=APRIL))
    assert stats.features == tuple(world.feature_stats(since=MARCH, until=APRIL))


@pytest.mark.parametrize(
    ("since", "until"),
    [
        (datetime(2026, 3, 10, 6, tzinfo=UTC), datetime(2026, 3, 12, 13, tzinfo=UTC)),
        (datetime(2026, 3, 10, 6, tzinfo=UTC), datetime(2026, 3, 12, 18, tzinfo=UTC)),
        (datetime(2026, 3, 9, 23, 59, tzinfo=UTC), datetime(2026, 3, 13, 0, 1, tzinfo=UTC)),
    ],
)
def test_parts_of_days_count_as_whole_days_do(
    world: CreditMeter, since: datetime, until: datetime
) -> None:
    """Whole days are read from the daily sums, the parts at the ends from the records."""
    whole = world.stats(since=MARCH, until=APRIL)
    part = world.stats(since=since, until=until)
    assert (part.events, part.consumed, part.billable_credits) == (5, 1_300, 1_350)
    assert (part.provider_cost_usd, part.models, part.features) == (
        whole.provider_cost_usd,
        whole.models,
        whole.features,
    )
    assert part.top_accounts == whole.top_accounts
    assert world.daily_usage(None, since=since, until=until, by="model") == world.daily_usage(
        None, since=MARCH, until=APRIL, by="model"
    )


def test_a_range_inside_one_day_reads_the_records(world: CreditMeter) -> None:
    stats = world.stats(
        since=datetime(2026, 3, 11, 11, tzinfo=UTC), until=datetime(2026, 3, 11, 13, tzinfo=UTC)
    )
    assert (stats.events, stats.billable_credits, stats.consumed) == (3, 300, 300)
    assert stats.provider_cost_usd == Decimal("0.13")


def test_the_daily_sums_are_the_sums_of_the_records(world: CreditMeter) -> None:
    with world.db.engine.connect() as conn:
        daily = conn.execute(
            sa.text(
                "SELECT day, account_id, feature_key, model, events, credits, consumed,"
                " refunded, cost_dollars, cost_fraction, without_cost FROM usage_daily"
                " ORDER BY 1, 2, 3, 4"
            )
        ).all()
    assert [tuple(row) for row in daily] == [
        ("2026-03-10", "acme", "chat", "gpt-4o", 1, 1_000, 1_000, 0, 0, 4_000_000_000, 0),
        ("2026-03-11", "acme", "chat", "gpt-4o", 1, 500, 500, 500, 0, 0, 1),
        ("2026-03-11", "acme", "image", "dall-e", 1, 200, 200, 0, 0, 800_000_000, 0),
        ("2026-03-11", "beta", "chat", "", 1, 100, 100, 0, 0, 500_000_000, 0),
        ("2026-03-12", "delta", "chat", "", 1, 50, 0, 0, 0, 0, 1),
    ]


def test_verify_finds_daily_sums_that_drifted_from_the_records(world: CreditMeter) -> None:
    with world.db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE usage_daily SET credits = credits + 1 WHERE model = ''"))
    found = [(v.invariant, v.subject) for v in world.verify()]
    assert found == [("I3", "2026-03-11/beta/chat/"), ("I3", "2026-03-12/delta/chat/")]


def test_revenue_in_one_currency(world: CreditMeter) -> None:
    stats = world.stats(since=MARCH, until=APRIL, currency="EUR")
    assert [(r.currency, r.net) for r in stats.revenue] == [("eur", 1_500)]


def test_active_accounts_are_those_with_usage_in_the_30_days_before_the_end(
    world: CreditMeter,
) -> None:
    assert world.stats(since=APRIL - timedelta(days=30), until=APRIL).active_accounts == 3
    later = datetime(2026, 4, 15, tzinfo=UTC)  # the 30 days start on 16 March
    stats = world.stats(since=MARCH, until=later)
    assert (stats.events, stats.active_accounts) == (5, 0)


def test_a_range_without_anything_in_it(world: CreditMeter) -> None:
    stats = world.stats(since=APRIL, until=APRIL + timedelta(days=30))
    assert (stats.events, stats.consumed, stats.billable_credits) == (0, 0, 0)
    assert stats.issued.total == 0
    assert stats.provider_cost_usd == stats.margin_usd == Decimal(0)
    assert stats.margin_ratio is None
    assert stats.revenue == ()
    assert stats.top_accounts == ()
    assert stats.models == ()
    assert stats.features == ()
    assert stats.accounts == 4  # balances are as they are now


def test_usage_by_model(world: CreditMeter) -> None:
    rows = world.model_stats(since=MARCH, until=APRIL)
    assert [
        (m.key, m.events, m.credits, m.billable_usd, m.provider_cost_usd, m.margin_usd)
        for m in rows
    ] == [
        ("", 2, 150, Decimal("0.15"), Decimal("0.05"), Decimal("0.10")),
        ("dall-e", 1, 200, Decimal("0.2"), Decimal("0.08"), Decimal("0.12")),
        ("gpt-4o", 2, 1_000, Decimal("1"), Decimal("0.40"), Decimal("0.60")),
    ]
    assert [m.margin_ratio for m in rows] == [Decimal("0.6667"), Decimal("0.6"), Decimal("0.6")]


def test_usage_by_feature(world: CreditMeter) -> None:
    rows = world.feature_stats(since=MARCH, until=APRIL)
    assert [(f.key, f.events, f.credits, f.provider_cost_usd, f.margin_usd) for f in rows] == [
        ("chat", 4, 1_150, Decimal("0.45"), Decimal("0.70")),
        ("image", 1, 200, Decimal("0.08"), Decimal("0.12")),
    ]


@pytest.mark.parametrize(
    ("since", "until"),
    [(APRIL, MARCH), (MARCH, MARCH), (datetime(2026, 3, 1), APRIL)],  # noqa: DTZ001
)
def test_a_bad_range_is_refused(world: CreditMeter, since: datetime, until: datetime) -> None:
    with pytest.raises(InvalidRequest):
        world.stats(since=since, until=until)
    with pytest.raises(InvalidRequest):
        world.model_stats(since=since, until=until)
    with pytest.raises(InvalidRequest):
        world.daily_usage(None, since=since, until=until)


def test_a_bad_currency_is_refused(world: CreditMeter) -> None:
    with pytest.raises(InvalidRequest, match="currency"):
        world.stats(since=MARCH, until=APRIL, currency="euro")


# Account search.


def ids(world: CreditMeter, **criteria: object) -> list[str]:
    return [a.id for a in world.search_accounts(**criteria).items]  # type: ignore[arg-type]


def test_accounts_are_found_by_a_part_of_their_id_or_name(world: CreditMeter) -> None:
    assert ids(world) == ["acme", "beta", "delta", "gamma"]
    assert ids(world, query="TA") == ["beta", "delta"]
    assert ids(world, query="corp") == ["acme"]
    assert ids(world, query="%") == []


def test_accounts_are_filtered_by_plan_status_and_level(world: CreditMeter) -> None:
    assert ids(world, plan="pro") == ["acme"]
    assert ids(world, status="suspended") == ["gamma"]
    assert ids(world, level="healthy") == ["acme"]
    assert ids(world, level="low") == ["beta"]
    assert ids(world, level="critical") == ["delta", "gamma"]
    assert ids(world, level="critical", status="active") == ["delta"]


def test_a_found_account_s_summary(world: CreditMeter, clock: Clock) -> None:
    [acme] = world.search_accounts(query="acme").items
    assert (acme.name, acme.plan, acme.status.value) == ("Acme Corp", "pro", "active")
    assert (acme.available, acme.level, acme.credits_used_30d) == (11_800, Level.HEALTHY, 1_200)
    assert acme.created_at == datetime(2026, 3, 10, 12, tzinfo=UTC)
    clock.advance(days=28)  # 9 April, 12:00: the usage of the 10th is 30 days old
    [acme] = world.search_accounts(query="acme").items
    assert acme.credits_used_30d == 200


@pytest.mark.parametrize(
    ("sort", "descending", "expected"),
    [
        ("id", True, ["gamma", "delta", "beta", "acme"]),
        ("name", False, ["acme", "beta", "delta", "gamma"]),
        ("available", True, ["acme", "beta", "gamma", "delta"]),
        ("available", False, ["delta", "gamma", "beta", "acme"]),
        ("plan", False, ["beta", "gamma", "acme", "delta"]),
        ("status", True, ["gamma", "delta", "beta", "acme"]),
        ("created_at", False, ["acme", "beta", "delta", "gamma"]),
    ],
)
def test_accounts_are_sorted_and_paged_stably(
    world: CreditMeter, sort: str, descending: bool, expected: list[str]
) -> None:
    assert ids(world, sort=sort, descending=descending) == expected
    for limit in (1, 2, 3):
        found: list[str] = []
        after = None
        while True:
            page = world.search_accounts(sort=sort, descending=descending, after=after, limit=limit)
            found += [a.id for a in page.items]
            if page.next_cursor is None:
                break
            after = page.next_cursor
        assert found == expected


@pytest.mark.parametrize(
    "criteria",
    [
        {"sort": "balance"},
        {"level": "empty"},
        {"status": "gone"},
        {"limit": 0},
        {"limit": 201},
        {"after": "not-a-cursor"},
    ],
)
def test_bad_search_criteria_are_refused(world: CreditMeter, criteria: dict[str, object]) -> None:
    with pytest.raises(InvalidRequest):
        world.search_accounts(**criteria)  # type: ignore[arg-type]


def test_a_cursor_holds_for_its_own_sort_only(world: CreditMeter) -> None:
    cursor = world.search_accounts(sort="name", limit=1).next_cursor
    assert cursor is not None
    with pytest.raises(InvalidRequest, match="cursor"):
        world.search_accounts(sort="available", after=cursor)


# Daily usage and the forecast.


def test_an_account_s_daily_usage(world: CreditMeter) -> None:
    assert world.daily_usage("acme", since=MARCH, until=APRIL) == [
        DailyUsage(date(2026, 3, 10), "chat", 1_000),
        DailyUsage(date(2026, 3, 11), "chat", 0),
        DailyUsage(date(2026, 3, 11), "image", 200),
    ]
    assert world.daily_usage("acme", since=MARCH, until=APRIL, by="model") == [
        DailyUsage(date(2026, 3, 10), "gpt-4o", 1_000),
        DailyUsage(date(2026, 3, 11), "dall-e", 200),
        DailyUsage(date(2026, 3, 11), "gpt-4o", 0),
    ]
    assert world.daily_usage("acme", since=MARCH, until=APRIL, by="member") == [
        DailyUsage(date(2026, 3, 10), "ann", 1_000),
        DailyUsage(date(2026, 3, 11), "", 200),
    ]
    eleventh = datetime(2026, 3, 11, tzinfo=UTC)
    assert world.daily_usage("acme", since=eleventh, until=eleventh + timedelta(days=1)) == [
        DailyUsage(date(2026, 3, 11), "chat", 0),
        DailyUsage(date(2026, 3, 11), "image", 200),
    ]


def test_every_account_s_daily_usage(world: CreditMeter) -> None:
    assert world.daily_usage(None, since=MARCH, until=APRIL) == [
        DailyUsage(date(2026, 3, 10), "chat", 1_000),
        DailyUsage(date(2026, 3, 11), "chat", 100),
        DailyUsage(date(2026, 3, 11), "image", 200),
        DailyUsage(date(2026, 3, 12), "chat", 50),
    ]


def test_daily_usage_refuses_what_it_cannot_answer(world: CreditMeter) -> None:
    with pytest.raises(InvalidRequest, match="by must be"):
        world.daily_usage("acme", since=MARCH, until=APRIL, by="week")
    with pytest.raises(Exception, match="nobody"):
        world.daily_usage("nobody", since=MARCH, until=APRIL)


def test_the_forecast_at_the_burn_rate_of_the_last_30_days(world: CreditMeter) -> None:
    forecast = world.forecast("acme")
    assert (forecast.available, forecast.days, forecast.consumed) == (11_800, 30, 1_200)
    assert forecast.burn_per_day == Decimal("40.00")
    assert forecast.runs_out_on == date(2027, 1, 1)  # 295 days after 12 March
    assert world.forecast("beta").runs_out_on == date(2026, 7, 10)  # 400 at 10/3 a day
    assert world.forecast("gamma").runs_out_on is None  # nothing consumed
    assert world.forecast("delta").runs_out_on is None  # unlimited: nothing drawn


def test_a_forecast_of_an_account_with_nothing_left_is_today(
    world: CreditMeter, clock: Clock
) -> None:
    world.charge("beta", "chat", credits=400)
    assert world.forecast("beta").runs_out_on == clock.now.date()


def test_the_largest_provider_costs_add_up_exactly(meter: CreditMeter, clock: Clock) -> None:
    largest = Decimal("9999999999.9999999999")
    meter.put_feature("chat", rates={"tokens": 1})
    meter.create_account("acme")
    meter.grant("acme", 10, reason="test")
    meter.charge("acme", "chat", usage={"tokens": 1}, provider_cost=largest)
    clock.advance(hours=1)
    meter.charge("acme", "chat", usage={"tokens": 1}, provider_cost=largest)
    day = datetime(2026, 3, 10, tzinfo=UTC)
    for since in (day, clock.now - timedelta(minutes=90)):  # the daily sums, the records
        stats = meter.stats(since=since, until=day + timedelta(days=1))
        assert stats.provider_cost_usd == 2 * largest
