"""The seed scenarios of the product, with their exact numbers, on both engines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from creditmeter import CreditMeter, FeatureNotInPlan, InsufficientCredits
from creditmeter.core.records import Transaction
from creditmeter.core.settings import BalanceWarning
from creditmeter.core.types import GrantSource, TransactionType
from tests.conftest import Clock


def assert_books_balance(meter: CreditMeter) -> None:
    assert meter.verify() == []


def transaction_count(meter: CreditMeter, account_id: str) -> int:
    return len(list(meter.iter_transactions(account_id)))


def transactions_of(meter: CreditMeter, account_id: str, kind: str) -> list[Transaction]:
    return list(meter.iter_transactions(account_id, types=(kind,)))


@pytest.fixture
def pro(meter: CreditMeter) -> str:
    """An account on a plan with a monthly allowance of 20,000 credits for every feature."""
    meter.put_plan("pro", allowances={"*": 20_000})
    meter.put_feature("chat", rates={"tokens": 1})
    meter.create_account("acme", plan="pro")
    return "acme"


# The monthly allowance and purchased credits.


def test_allowance_used_up_refuses_with_the_allowance_state(meter: CreditMeter, pro: str) -> None:
    used = meter.charge(pro, "chat", credits=20_000)
    assert used.charged == 20_000
    assert meter.balance(pro).available == 0
    count = transaction_count(meter, pro)

    with pytest.raises(InsufficientCredits) as refused:
        meter.charge(pro, "chat", credits=1)

    assert refused.value.required == 1
    assert refused.value.available == 0
    assert refused.value.allowance.used == 20_000
    assert refused.value.allowance.limit == 20_000
    assert refused.value.allowance.percentage == 100
    assert refused.value.purchased_available == 0
    assert meter.balance(pro).available == 0
    assert transaction_count(meter, pro) == count
    assert_books_balance(meter)


def test_purchase_after_allowance_is_used_pays_the_next_charge(
    meter: CreditMeter, pro: str
) -> None:
    meter.charge(pro, "chat", credits=20_000)
    purchase = meter.grant(pro, 50_000, source="purchase")
    assert purchase.amount == 50_000
    assert purchase.available_after == 50_000

    charge = meter.charge(pro, "chat", credits=5_000)

    assert charge.credits == 5_000
    assert charge.charged == 5_000
    assert charge.uncollected == 0
    assert charge.available_after == 45_000
    assert charge.transaction_id is not None
    [usage] = transactions_of(meter, pro, "usage")[:1]
    assert usage.id == charge.transaction_id
    assert usage.amount == -5_000
    wallet = [p for p in usage.postings if p.ledger_account == f"account:{pro}"]
    assert len(wallet) == 1
    assert wallet[0].grant_source is GrantSource.PURCHASE
    assert wallet[0].grant_id == purchase.grant_id
    assert wallet[0].amount == -5_000
    balance = meter.balance(pro)
    assert balance.available == 45_000
    assert balance.purchased_available == 45_000
    assert balance.allowance.used == 20_000
    assert_books_balance(meter)


def test_charge_splits_across_the_allowance_and_purchased_credits(
    meter: CreditMeter, pro: str
) -> None:
    meter.charge(pro, "chat", credits=18_000)
    purchase = meter.grant(pro, 50_000, source="purchase")
    assert meter.balance(pro).available == 52_000

    charge = meter.charge(pro, "chat", credits=5_000)

    assert charge.charged == 5_000
    assert charge.available_after == 47_000
    [txn] = [t for t in transactions_of(meter, pro, "usage") if t.id == charge.transaction_id]
    wallet = [p for p in txn.postings if p.ledger_account == f"account:{pro}"]
    assert len(wallet) == 2
    assert len({p.grant_id for p in wallet}) == 2
    assert txn.by_grant_source() == {GrantSource.ALLOWANCE: -2_000, GrantSource.PURCHASE: -3_000}
    assert [p.grant_id for p in wallet if p.grant_source is GrantSource.PURCHASE] == [
        purchase.grant_id
    ]
    assert sum(p.amount for p in txn.postings) == 0
    consumption = [p for p in txn.postings if p.ledger_account == "consumption"]
    assert [p.amount for p in consumption] == [5_000]
    balance = meter.balance(pro)
    assert balance.allowance.used == 20_000
    assert balance.allowance.percentage == 100
    assert balance.purchased_available == 47_000
    assert_books_balance(meter)


def test_charge_reaching_90_percent_of_the_allowance_warns(meter: CreditMeter, pro: str) -> None:
    first = meter.charge(pro, "chat", credits=17_000)
    assert [w.code for w in first.warnings] == ["allowance_75"]

    charge = meter.charge(pro, "chat", credits=1_000)

    assert charge.charged == 1_000
    assert charge.available_after == 2_000
    assert charge.warnings == (BalanceWarning("allowance_90", "90 % of monthly allowance used"),)
    balance = meter.balance(pro)
    assert balance.allowance.used == 18_000
    assert balance.allowance.percentage == 90
    assert [w.message for w in balance.warnings] == ["90 % of monthly allowance used"]
    assert_books_balance(meter)


def test_both_allowance_and_purchased_exhausted_refuses_and_changes_nothing(
    meter: CreditMeter, pro: str
) -> None:
    meter.grant(pro, 50_000, source="purchase")
    meter.charge(pro, "chat", credits=70_000)
    before = meter.balance(pro)
    assert before.available == 0
    count = transaction_count(meter, pro)
    usage_count = len(meter.usage(pro).data)

    with pytest.raises(InsufficientCredits) as refused:
        meter.charge(pro, "chat", credits=100)

    assert refused.value.required == 100
    assert refused.value.available == 0
    assert refused.value.purchased_available == 0
    assert refused.value.allowance.percentage == 100
    after = meter.balance(pro)
    assert after.available == 0
    assert after.allowance.used == 20_000
    assert transaction_count(meter, pro) == count
    assert len(meter.usage(pro).data) == usage_count
    assert_books_balance(meter)


def test_refusal_when_short_by_one_credit(meter: CreditMeter, pro: str) -> None:
    meter.grant(pro, 1_000, source="purchase")
    with pytest.raises(InsufficientCredits) as refused:
        meter.charge(pro, "chat", credits=21_001)
    assert refused.value.available == 21_000
    assert refused.value.purchased_available == 1_000
    assert refused.value.allowance.used == 0
    assert meter.charge(pro, "chat", credits=21_000).available_after == 0
    assert_books_balance(meter)


# Pools and what a plan allows.


def test_per_pool_allowances_draw_only_their_pool(meter: CreditMeter) -> None:
    meter.put_plan("growth", allowances={"lead_generation": 50, "goal_generation": 20})
    meter.put_feature("generate_leads", pool="lead_generation", rates={"calls": 10})
    meter.put_feature("generate_goal", pool="goal_generation", rates={"calls": 5})
    meter.create_account("acme", plan="growth")

    meter.charge("acme", "generate_leads", usage={"calls": 3})
    meter.charge("acme", "generate_goal")

    balance = meter.balance("acme")
    assert balance.available == 35
    assert balance.pools["lead_generation"].available == 20
    assert balance.pools["lead_generation"].allowance.used == 30
    assert balance.pools["lead_generation"].allowance.limit == 50
    assert balance.pools["lead_generation"].allowance.percentage == 60
    assert balance.pools["goal_generation"].available == 15
    assert balance.pools["goal_generation"].allowance.used == 5
    assert balance.pools["goal_generation"].allowance.limit == 20
    assert balance.allowance.used == 35
    assert balance.allowance.limit == 70

    # 35 credits are available in all, but only 20 of them to lead generation.
    with pytest.raises(InsufficientCredits) as refused:
        meter.charge("acme", "generate_leads", usage={"calls": 3})
    assert refused.value.required == 30
    assert refused.value.available == 20
    assert refused.value.allowance.used == 30
    assert refused.value.allowance.limit == 50
    assert meter.balance("acme").available == 35

    meter.charge("acme", "generate_leads", usage={"calls": 2})
    after = meter.balance("acme")
    assert after.pools["lead_generation"].available == 0
    assert after.pools["goal_generation"].available == 15
    assert_books_balance(meter)


def test_feature_outside_a_starter_plan_is_refused(meter: CreditMeter) -> None:
    meter.put_plan("starter", allowances={"*": 1_000}, features=["csv_export"])
    meter.put_feature("csv_export", rates={"calls": 5})
    meter.put_feature("chat", rates={"tokens": 1})
    meter.create_account("acme", plan="starter")
    count = transaction_count(meter, "acme")

    with pytest.raises(FeatureNotInPlan) as refused:
        meter.charge("acme", "chat", usage={"tokens": 10})

    assert refused.value.feature == "chat"
    assert refused.value.plan == "starter"
    assert refused.value.code == "feature_not_in_plan"
    with pytest.raises(FeatureNotInPlan):
        meter.authorize("acme", "chat", credits=10)
    assert meter.balance("acme").available == 1_000
    assert meter.balance("acme").held == 0
    assert transaction_count(meter, "acme") == count
    assert meter.charge("acme", "csv_export").available_after == 995
    assert_books_balance(meter)


def test_unlimited_plan_records_credits_without_drawing(meter: CreditMeter) -> None:
    meter.put_plan("enterprise", allowances={"*": None})
    meter.put_feature("chat", rates={"tokens": 1})
    meter.create_account("acme", plan="enterprise")
    meter.grant("acme", 100, source="purchase")

    charge = meter.charge("acme", "chat", usage={"tokens": 5_000})

    assert charge.credits == 5_000
    assert charge.charged == 0
    assert charge.uncollected == 0
    assert charge.available_after == 100
    record = meter.usage_record(charge.usage_id)
    assert record.credits == 5_000
    assert record.charged == 0
    assert record.unlimited is True
    balance = meter.balance("acme")
    assert balance.available == 100
    assert balance.allowance.used == 5_000
    assert balance.allowance.limit is None
    assert balance.allowance.percentage is None
    # 100 credits is "critical" by the default threshold, but nothing here draws credits.
    assert balance.warnings == ()
    assert charge.warnings == ()
    assert_books_balance(meter)


def test_a_refusal_carries_the_upgrade_url(meter: CreditMeter) -> None:
    meter.change_settings({"upgrade_url": "https://example.com/upgrade"}, changed_by="test")
    meter.put_feature("chat", rates={"tokens": 1})
    meter.create_account("acme")
    with pytest.raises(InsufficientCredits) as refused:
        meter.charge("acme", "chat", usage={"tokens": 1})
    assert refused.value.upgrade_url == "https://example.com/upgrade"


# Pricing.


def test_llm_tokens_with_a_multiplier(meter: CreditMeter) -> None:
    meter.put_feature("llm.chat", rates={"input_tokens": 1, "output_tokens": 1}, multiplier="1.5")
    meter.create_account("acme")
    meter.grant("acme", 10_000, source="purchase")

    charge = meter.charge(
        "acme", "llm.chat", usage={"input_tokens": 1_000, "output_tokens": 500}, model="gpt"
    )

    assert charge.credits == 2_250
    assert charge.charged == 2_250
    assert charge.available_after == 7_750
    record = meter.usage_record(charge.usage_id)
    assert record.quantities == {"input_tokens": 1_000, "output_tokens": 500}
    assert record.model == "gpt"
    assert meter.check("acme", "llm.chat", usage={"input_tokens": 1, "output_tokens": 0}).cost == 2
    assert_books_balance(meter)


def test_two_large_images(meter: CreditMeter) -> None:
    meter.put_feature("image.generate", rates={"images_1024x1024": 6_000})
    meter.create_account("acme")
    meter.grant("acme", 20_000, source="purchase")

    charge = meter.charge("acme", "image.generate", usage={"images_1024x1024": 2})

    assert charge.credits == 12_000
    assert charge.available_after == 8_000
    assert meter.balance("acme").available == 8_000
    assert_books_balance(meter)


def test_welcome_bonus_is_granted_once(meter: CreditMeter) -> None:
    meter.change_settings({"welcome_bonus": 10_000}, changed_by="test")

    first = meter.create_account("acme", name="Acme")
    for _ in range(3):
        assert meter.create_account("acme", name="Acme") == first

    assert meter.balance("acme").available == 10_000
    grants = transactions_of(meter, "acme", "grant")
    assert [t.amount for t in grants] == [10_000]
    assert grants[0].by_grant_source() == {GrantSource.BONUS: 10_000}
    assert_books_balance(meter)


def test_fixed_cost_services(meter: CreditMeter) -> None:
    meter.put_feature("lead_collection_100", rates={"calls": 20})
    meter.put_feature("csv_export", rates={"calls": 5})
    meter.create_account("acme")
    meter.grant("acme", 100, source="purchase")

    assert meter.charge("acme", "lead_collection_100").available_after == 80
    assert meter.charge("acme", "csv_export").available_after == 75
    assert meter.balance("acme").available == 75

    meter.create_account("poor")
    meter.grant("poor", 10, source="purchase")
    count = transaction_count(meter, "poor")
    with pytest.raises(InsufficientCredits) as refused:
        meter.charge("poor", "lead_collection_100")
    assert refused.value.required == 20
    assert refused.value.available == 10
    assert meter.balance("poor").available == 10
    assert transaction_count(meter, "poor") == count
    assert meter.usage("poor").data == ()
    assert_books_balance(meter)


# Periods.


def test_thirty_day_plan_refreshes_on_day_31_and_expires_the_unused_part(
    meter: CreditMeter, clock: Clock
) -> None:
    meter.put_plan("monthly", allowances={"*": 1_000}, period="30_days")
    meter.put_feature("chat", rates={"tokens": 1})
    meter.create_account("acme", plan="monthly")
    meter.charge("acme", "chat", credits=300)

    clock.advance(days=29, hours=23)
    assert meter.balance("acme").available == 700
    assert transactions_of(meter, "acme", "expiry") == []

    clock.advance(hours=1)
    balance = meter.balance("acme")

    assert balance.available == 1_000
    assert balance.allowance.used == 0
    assert balance.allowance.limit == 1_000
    assert balance.period_start == datetime(2026, 4, 9, 12, tzinfo=UTC)
    assert balance.period_end == datetime(2026, 5, 9, 12, tzinfo=UTC)
    [expiry] = transactions_of(meter, "acme", "expiry")
    assert expiry.amount == -700
    assert expiry.balance_before - expiry.balance_after == 700
    assert expiry.created_at == datetime(2026, 4, 9, 12, tzinfo=UTC)
    allocations = transactions_of(meter, "acme", "allocation")
    assert [t.amount for t in allocations] == [1_000, 1_000]
    assert_books_balance(meter)


def test_calendar_month_rollover(meter: CreditMeter, clock: Clock) -> None:
    meter.put_plan("pro", allowances={"*": 2_000})
    meter.put_feature("chat", rates={"tokens": 1})
    meter.create_account("acme", plan="pro")
    first = meter.balance("acme")
    assert first.period_start == datetime(2026, 3, 1, tzinfo=UTC)
    assert first.period_end == datetime(2026, 4, 1, tzinfo=UTC)
    meter.charge("acme", "chat", credits=500)

    clock.now = datetime(2026, 3, 31, 23, 59, tzinfo=UTC)
    assert meter.balance("acme").available == 1_500
    clock.now = datetime(2026, 4, 1, tzinfo=UTC)
    balance = meter.balance("acme")

    assert balance.available == 2_000
    assert balance.period_start == datetime(2026, 4, 1, tzinfo=UTC)
    assert balance.period_end == datetime(2026, 5, 1, tzinfo=UTC)
    assert [t.amount for t in transactions_of(meter, "acme", "expiry")] == [-1_500]

    # Two periods later, untouched in between: one refresh and one expiry per boundary
    # crossed, each dated at its boundary, as if the account had been touched every day.
    clock.now = datetime(2026, 6, 15, tzinfo=UTC)
    balance = meter.balance("acme")
    assert balance.available == 2_000
    assert balance.period_start == datetime(2026, 6, 1, tzinfo=UTC)
    expiries = transactions_of(meter, "acme", "expiry")
    assert [t.amount for t in expiries] == [-2_000, -2_000, -1_500]
    assert [t.created_at.month for t in expiries] == [6, 5, 4]
    assert len(transactions_of(meter, "acme", "allocation")) == 4
    assert_books_balance(meter)


def test_anniversary_month_rollover(meter: CreditMeter, clock: Clock) -> None:
    meter.put_plan("pro", allowances={"*": 2_000}, period="anniversary_month")
    meter.put_feature("chat", rates={"tokens": 1})
    meter.create_account("acme", plan="pro")
    balance = meter.balance("acme")
    assert balance.period_start == datetime(2026, 3, 10, 12, tzinfo=UTC)
    assert balance.period_end == datetime(2026, 4, 10, 12, tzinfo=UTC)
    meter.charge("acme", "chat", credits=800)

    clock.now = datetime(2026, 4, 10, 11, 59, tzinfo=UTC)
    assert meter.balance("acme").available == 1_200
    clock.now = datetime(2026, 4, 10, 12, tzinfo=UTC)
    balance = meter.balance("acme")

    assert balance.available == 2_000
    assert balance.period_start == datetime(2026, 4, 10, 12, tzinfo=UTC)
    assert balance.period_end == datetime(2026, 5, 10, 12, tzinfo=UTC)
    assert [t.amount for t in transactions_of(meter, "acme", "expiry")] == [-1_200]
    assert_books_balance(meter)


def test_rollover_cap_carries_unused_allowance_into_a_rollover_grant(
    meter: CreditMeter, clock: Clock
) -> None:
    meter.put_plan("pro", allowances={"*": 1_000}, rollover_cap=300)
    meter.put_feature("chat", rates={"tokens": 1})
    meter.create_account("acme", plan="pro")
    meter.charge("acme", "chat", credits=400)

    clock.now = datetime(2026, 4, 1, 8, tzinfo=UTC)
    balance = meter.balance("acme")

    assert balance.available == 1_300
    [rollover] = transactions_of(meter, "acme", "rollover")
    assert rollover.amount == 0
    assert rollover.by_grant_source() == {GrantSource.ALLOWANCE: -300, GrantSource.ROLLOVER: 300}
    assert [t.amount for t in transactions_of(meter, "acme", "expiry")] == [-300]

    # By default the new allowance (priority 10) goes before the carried credits (15);
    # both expire at the end of the period.
    charge = meter.charge("acme", "chat", credits=100)
    [usage] = [t for t in transactions_of(meter, "acme", "usage") if t.id == charge.transaction_id]
    assert usage.by_grant_source() == {GrantSource.ALLOWANCE: -100}
    clock.now = datetime(2026, 5, 1, 8, tzinfo=UTC)
    balance = meter.balance("acme")
    # 300 of April's 900 unused allowance roll over (capped); the other 600 and the 300
    # carried from March expire.
    assert balance.available == 1_300
    assert [t.amount for t in transactions_of(meter, "acme", "expiry")] == [-900, -300]
    assert_books_balance(meter)


# Enforcement modes.


def test_enforcement_observe_allows_and_reports_what_it_would_refuse(
    meter: CreditMeter,
) -> None:
    meter.change_settings({"enforcement": "observe"}, changed_by="test")
    meter.put_plan("starter", allowances={"*": 0}, features=["csv_export"])
    meter.put_feature("chat", rates={"tokens": 1})
    meter.put_feature("csv_export", rates={"calls": 5})
    meter.create_account("acme")
    meter.grant("acme", 100, source="purchase")

    charge = meter.charge("acme", "chat", credits=150)

    assert charge.would_refuse is not None
    assert charge.would_refuse.code == "insufficient_credits"
    assert charge.credits == 150
    assert charge.charged == 100
    assert charge.uncollected == 50
    assert charge.available_after == 0
    assert meter.balance("acme").available == 0

    meter.create_account("starter", plan="starter")
    meter.grant("starter", 100, source="purchase")
    outside = meter.charge("starter", "chat", credits=10)
    assert outside.would_refuse is not None
    assert outside.would_refuse.code == "feature_not_in_plan"
    assert outside.charged == 10
    assert meter.balance("starter").available == 90
    assert meter.charge("starter", "csv_export").would_refuse is None
    assert_books_balance(meter)


def test_enforcement_off_allows_without_reporting(meter: CreditMeter) -> None:
    meter.change_settings({"enforcement": "off"}, changed_by="test")
    meter.put_feature("chat", rates={"tokens": 1})
    meter.create_account("acme")
    meter.grant("acme", 100, source="purchase")

    charge = meter.charge("acme", "chat", credits=150)

    assert charge.would_refuse is None
    assert charge.charged == 100
    assert charge.uncollected == 50
    assert meter.balance("acme").available == 0
    check = meter.check("acme", "chat", credits=150)
    assert check.allowed is True
    assert check.reason is None
    assert_books_balance(meter)


def test_check_reports_without_changing_anything(meter: CreditMeter, pro: str) -> None:
    count = transaction_count(meter, pro)
    ok = meter.check(pro, "chat", credits=20_000)
    assert (ok.allowed, ok.cost, ok.available, ok.reason) == (True, 20_000, 20_000, None)
    short = meter.check(pro, "chat", credits=20_001)
    assert (short.allowed, short.reason) == (False, "insufficient_credits")
    assert transaction_count(meter, pro) == count
    assert meter.balance(pro).available == 20_000
    assert TransactionType.ALLOCATION in {t.type for t in meter.iter_transactions(pro)}
    assert_books_balance(meter)


# Consumption order and grant lifetimes.


def test_consumption_order_by_priority_then_expiry(meter: CreditMeter, clock: Clock) -> None:
    meter.put_plan("pro", allowances={"*": 100})
    meter.put_feature("chat", rates={"tokens": 1})
    meter.create_account("acme", plan="pro")
    meter.grant("acme", 100, source="purchase")
    meter.grant("acme", 100, source="admin")
    meter.grant("acme", 100, source="bonus")
    meter.grant("acme", 100, source="promotional", expires_at=clock.now + timedelta(days=7))

    drawn = []
    for _ in range(5):
        charge = meter.charge("acme", "chat", credits=100)
        [txn] = [
            t for t in transactions_of(meter, "acme", "usage") if t.id == charge.transaction_id
        ]
        drawn.append(txn.by_grant_source())

    assert drawn == [
        {GrantSource.ALLOWANCE: -100},
        {GrantSource.PROMOTIONAL: -100},
        {GrantSource.BONUS: -100},
        {GrantSource.ADMIN: -100},
        {GrantSource.PURCHASE: -100},
    ]
    assert meter.balance("acme").available == 0
    assert_books_balance(meter)


def test_an_operator_priority_changes_the_order(meter: CreditMeter) -> None:
    meter.put_plan("pro", allowances={"*": 1_000})
    meter.put_feature("chat", rates={"tokens": 1})
    meter.create_account("acme", plan="pro")
    purchase = meter.grant("acme", 500, source="purchase", priority=1)

    charge = meter.charge("acme", "chat", credits=600)

    [txn] = [t for t in transactions_of(meter, "acme", "usage") if t.id == charge.transaction_id]
    assert txn.by_grant_source() == {GrantSource.PURCHASE: -500, GrantSource.ALLOWANCE: -100}
    assert purchase.grant_id in {p.grant_id for p in txn.postings}
    assert meter.balance("acme").allowance.used == 100
    assert_books_balance(meter)


def test_a_grant_with_an_end_expires_in_the_ledger(meter: CreditMeter, clock: Clock) -> None:
    meter.put_feature("chat", rates={"tokens": 1})
    meter.create_account("acme")
    ends = clock.now + timedelta(days=7)
    meter.grant("acme", 500, source="promotional", expires_at=ends)
    meter.grant("acme", 100, source="purchase")
    meter.charge("acme", "chat", credits=200)

    clock.advance(days=7)
    balance = meter.balance("acme")

    assert balance.available == 100
    [expiry] = transactions_of(meter, "acme", "expiry")
    assert (expiry.amount, expiry.created_at) == (-300, ends)
    assert_books_balance(meter)


def test_anniversary_month_anchored_on_the_31st(meter: CreditMeter, clock: Clock) -> None:
    meter.put_plan("pro", allowances={"*": 100}, period="anniversary_month")
    clock.now = datetime(2026, 1, 31, 9, tzinfo=UTC)
    meter.create_account("acme", plan="pro")
    assert meter.balance("acme").period_end == datetime(2026, 2, 28, 9, tzinfo=UTC)

    clock.now = datetime(2026, 3, 1, tzinfo=UTC)
    balance = meter.balance("acme")
    assert balance.period_start == datetime(2026, 2, 28, 9, tzinfo=UTC)
    assert balance.period_end == datetime(2026, 3, 31, 9, tzinfo=UTC)
    assert balance.available == 100
    assert len(transactions_of(meter, "acme", "allocation")) == 2
    assert_books_balance(meter)


def test_usage_of_a_limited_pool_is_not_counted_against_an_unlimited_pool(
    meter: CreditMeter,
) -> None:
    meter.put_plan("mixed", allowances={"chat": None, "image": 100})
    meter.put_feature("chat", rates={"tokens": 1})
    meter.put_feature("image", rates={"images": 10})
    meter.create_account("acme", plan="mixed")

    meter.charge("acme", "image", usage={"images": 3})

    balance = meter.balance("acme")
    assert balance.pools["image"].allowance.used == 30
    assert balance.pools["image"].available == 70
    assert balance.pools["chat"].unlimited is True
    assert balance.pools["chat"].allowance.used == 0
    assert balance.pools["chat"].allowance.limit is None
    assert_books_balance(meter)
