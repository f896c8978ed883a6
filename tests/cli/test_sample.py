from __future__ import annotations

from datetime import UTC, datetime, timedelta

from creditmeter import CreditMeter
from creditmeter.cli.sample import DAYS, RECHARGE_PACK, WalkingClock, seed
from creditmeter.core.payments import PurchaseKind, PurchaseStatus
from creditmeter.payments.dev import WORKING_CARD


def test_sample_data_spreads_weeks_of_usage_over_past_days(migrated_url: str) -> None:
    clock = WalkingClock()
    with CreditMeter(migrated_url, clock=clock) as meter:
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


def test_sample_data_sells_packs_and_recharges_one_account(migrated_url: str) -> None:
    clock = WalkingClock()
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

        recharge = meter.auto_recharge("umbrella")
        assert recharge.enabled
        assert (recharge.package_id, recharge.payment_method) == (RECHARGE_PACK, WORKING_CARD)
        recharged = meter.purchases("umbrella").data
        assert recharged, "umbrella's usage takes it below its threshold"
        assert {(p.kind, p.status) for p in recharged} == {
            (PurchaseKind.AUTO_RECHARGE, PurchaseStatus.FULFILLED)
        }
        assert meter.work() == 0, "no job is left for the server's worker"
        assert meter.payment_events(status="flagged") == []


def test_sample_data_is_the_same_every_run(migrated_sqlite_url: str) -> None:
    first, second = WalkingClock(), WalkingClock()
    with CreditMeter(migrated_sqlite_url, clock=first) as meter:
        one = seed(meter, first, days=3)
    with CreditMeter("sqlite://", clock=second) as meter:
        other = seed(meter, second, days=3)
    assert (one.operations, one.refused, one.by_account) == (
        other.operations,
        other.refused,
        other.by_account,
    )
