from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from creditmeter import CreditMeter
from creditmeter.cli.sample import ACCOUNTS, DAYS, RECHARGE_PACK, WalkingClock, seed
from creditmeter.core.payments import PurchaseKind, PurchaseStatus
from creditmeter.payments.dev import WORKING_CARD
from creditmeter.store.tables import outbox

TODAY = datetime(2026, 12, 7, 11, 30, tzinfo=UTC)

DATES = [
    pytest.param(datetime(2026, 12, 1, 0, 5, tzinfo=UTC), id="first-of-month"),
    pytest.param(datetime(2026, 12, 2, 9, 0, tzinfo=UTC), id="second-of-month"),
    pytest.param(datetime(2026, 11, 15, 18, 0, tzinfo=UTC), id="fifteenth"),
    pytest.param(datetime(2026, 11, 30, 23, 59, tzinfo=UTC), id="last-of-month"),
    pytest.param(datetime(2028, 2, 29, 12, 0, tzinfo=UTC), id="leap-day"),
    pytest.param(datetime(2026, 12, 31, 23, 0, tzinfo=UTC), id="new-years-eve"),
]


def test_sample_data_spreads_weeks_of_usage_over_past_days(migrated_url: str) -> None:
    clock = WalkingClock(TODAY)
    with CreditMeter(migrated_url, clock=clock) as meter:
        data = seed(meter, clock)
        assert data.accounts == ("acme", "globex", "initech", "umbrella")
        assert [p.key for p in meter.plans()] == ["enterprise", "pro", "starter"]
        chat = next(f for f in meter.features() if f.key == "llm.chat")
        assert chat.rule.cost_plus
        assert str(chat.rule.multiplier) == "1.5"
        [prices] = meter.price_book_versions()
        chats = meter.usage("acme", feature="llm.chat", limit=500).data
        assert chats
        assert {r.price_book_version for r in chats} == {prices.version}
        assert all(r.provider_cost is not None and r.provider_cost > 0 for r in chats)
        days = {
            g.key for account in data.accounts for g in meter.usage_summary(account, group_by="day")
        }
        assert len(days) >= DAYS // 2
        assert data.first_day is not None
        assert TODAY - timedelta(days=DAYS + 1) < data.first_day < TODAY - timedelta(days=DAYS - 1)
        assert clock.now == TODAY - timedelta(minutes=1)
        models = {g.key for g in meter.usage_summary("acme", group_by="model")}
        assert {"gpt-4o", "gpt-4o-mini"} <= models
        assert sum(data.by_account.values()) == data.operations > 100
        assert meter.balance("initech").allowance.limit is None
        assert meter.verify() == []


@pytest.mark.parametrize("today", DATES)
def test_the_demo_banner_is_true_on_any_date(migrated_url: str, today: datetime) -> None:
    """What ``creditmeter demo`` says of its sample data: acme bought the medium pack,
    umbrella recharged itself, operations over the last three weeks, nothing left to do."""
    clock = WalkingClock(today)
    with CreditMeter(migrated_url, clock=clock) as meter:
        data = seed(meter, clock)
        packs = meter.packages()
        assert [p.id for p in packs] == list(data.packages) == ["small", "medium", "large"]
        assert {p.price.currency for p in packs} == {"usd"}
        assert [(p.popular, p.best_value) for p in packs] == [
            (False, False),
            (True, False),
            (False, True),
        ]
        assert all(p.bonus_credits > 0 for p in packs[1:])

        (bought,) = meter.purchases("acme").data
        assert (bought.package_id, bought.kind, bought.status) == (
            "medium",
            PurchaseKind.CHECKOUT,
            PurchaseStatus.FULFILLED,
        )
        assert bought.amount_paid == bought.price.amount == 1_999
        assert meter.balance("acme").purchased_available == bought.credits == 11_000

        (umbrella,) = (a for a in ACCOUNTS if a.recharge_below is not None)
        recharge = meter.auto_recharge(umbrella.id)
        assert recharge.enabled
        assert recharge.threshold == umbrella.recharge_below
        assert (recharge.package_id, recharge.payment_method) == (RECHARGE_PACK, WORKING_CARD)
        recharged = meter.purchases(umbrella.id).data
        assert recharged, f"{umbrella.id}'s usage takes it below its threshold"
        assert {(p.kind, p.status, p.package_id) for p in recharged} == {
            (PurchaseKind.AUTO_RECHARGE, PurchaseStatus.FULFILLED, RECHARGE_PACK)
        }

        assert data.first_day is not None
        assert today - timedelta(days=DAYS + 1) < data.first_day < today - timedelta(days=DAYS - 1)
        used = sum(
            g.count
            for account in data.accounts
            for g in meter.usage_summary(account, group_by="day", since=data.first_day)
        )
        assert used == data.operations > 100
        assert meter.work() == 0, "no job is left for the server's worker"
        with meter.db.read() as conn:
            queued = set(conn.execute(sa.select(outbox.c.topic)).scalars())
        assert {"event.balance.low", "event.allowance.threshold"} <= queued, "alerts crossed"
        assert meter.payment_events(status="flagged") == []
        assert meter.verify() == []


def test_sample_data_is_the_same_every_run(migrated_sqlite_url: str) -> None:
    first, second = WalkingClock(TODAY), WalkingClock(TODAY)
    with CreditMeter(migrated_sqlite_url, clock=first) as meter:
        one = seed(meter, first, days=3)
    with CreditMeter("sqlite://", clock=second) as meter:
        other = seed(meter, second, days=3)
    assert (one.operations, one.refused, one.by_account) == (
        other.operations,
        other.refused,
        other.by_account,
    )
