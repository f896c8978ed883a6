from __future__ import annotations

from datetime import UTC, datetime, timedelta

from creditmeter import CreditMeter
from creditmeter.cli.sample import DAYS, WalkingClock, seed


def test_sample_data_spreads_weeks_of_usage_over_past_days(database_url: str) -> None:
    clock = WalkingClock()
    with CreditMeter(database_url, clock=clock) as meter:
        data = seed(meter, clock)
        assert data.accounts == ("acme", "globex", "initech", "umbrella")
        assert [p.key for p in meter.plans()] == ["enterprise", "pro", "starter"]
        chat = next(f for f in meter.features() if f.key == "llm.chat")
        assert set(chat.rule.models) == {"gpt-4o", "gpt-4o-mini", "claude-sonnet-4"}
        assert str(chat.rule.multiplier) == "1.5"
        days = {
            g.key for account in data.accounts for g in meter.usage_summary(account, group_by="day")
        }
        assert len(days) >= DAYS // 2
        now = datetime.now(UTC)
        assert data.first_day is not None
        assert now - timedelta(days=DAYS + 1) < data.first_day < now - timedelta(days=DAYS - 1)
        assert clock.now < now
        models = {g.key for g in meter.usage_summary("acme", group_by="model")}
        assert {"gpt-4o", "gpt-4o-mini"} <= models
        assert sum(data.by_account.values()) == data.operations > 100
        assert meter.balance("initech").allowance.limit is None
        assert meter.verify() == []


def test_sample_data_is_the_same_every_run(sqlite_url: str) -> None:
    first, second = WalkingClock(), WalkingClock()
    with CreditMeter(sqlite_url, clock=first) as meter:
        one = seed(meter, first, days=3)
    with CreditMeter("sqlite://", clock=second) as meter:
        other = seed(meter, second, days=3)
    assert (one.operations, one.refused, one.by_account) == (
        other.operations,
        other.refused,
        other.by_account,
    )
