"""Accounts: creation, changes, suspension, plan changes, refunds, and what is refused."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from creditmeter import AccountSuspended, CreditMeter, InvalidRequest, NotFound
from creditmeter.core.types import GrantSource
from tests.conftest import Clock


def assert_books_balance(meter: CreditMeter) -> None:
    assert meter.verify() == []


def transaction_count(meter: CreditMeter, account_id: str) -> int:
    return len(list(meter.iter_transactions(account_id)))


@pytest.fixture
def catalog(meter: CreditMeter) -> None:
    meter.put_feature("chat", rates={"tokens": 1})
    meter.put_plan("basic", allowances={"*": 1_000})
    meter.put_plan("pro", allowances={"*": 5_000})


# Creating, reading and changing accounts.


def test_create_and_get(meter: CreditMeter, catalog: None, clock: Clock) -> None:
    created = meter.create_account(
        "acme", name="Acme Inc.", plan="basic", metadata={"region": "eu"}, overdraft_limit=50
    )

    assert created.id == "acme"
    assert created.name == "Acme Inc."
    assert created.plan == "basic"
    assert created.pending_plan is None
    assert created.status == "active"
    assert created.created_at == clock.now
    assert created.period_start == datetime(2026, 3, 1, tzinfo=UTC)
    assert created.period_end == datetime(2026, 4, 1, tzinfo=UTC)
    assert created.overdraft_limit == 50
    assert created.metadata == {"region": "eu"}
    assert meter.account("acme") == created
    assert meter.list_accounts() == [created]
    balance = meter.balance("acme")
    assert (balance.available, balance.allowance.limit) == (1_000, 1_000)
    [allocation] = list(meter.iter_transactions("acme"))
    assert allocation.type == "allocation"
    assert allocation.amount == 1_000
    assert_books_balance(meter)


def test_create_without_a_plan_has_nothing(meter: CreditMeter) -> None:
    account = meter.create_account("solo")
    assert account.name == "solo"
    assert account.plan is None
    balance = meter.balance("solo")
    assert (balance.available, balance.held, balance.debt) == (0, 0, 0)
    assert balance.allowance.limit == 0
    assert list(meter.iter_transactions("solo")) == []
    assert_books_balance(meter)


def test_create_again_returns_the_account_as_it_is(meter: CreditMeter, catalog: None) -> None:
    first = meter.create_account("acme", name="Acme", plan="basic")
    again = meter.create_account("acme", name="Other name", plan="pro")
    assert again == first
    assert meter.account("acme").plan == "basic"
    assert meter.balance("acme").available == 1_000
    assert_books_balance(meter)


def test_update_name_metadata_and_overdraft(meter: CreditMeter, catalog: None) -> None:
    meter.create_account("acme", name="Acme", metadata={"a": 1})

    updated = meter.update_account("acme", name="Acme GmbH", metadata={"b": 2}, overdraft_limit=300)

    assert (updated.name, updated.metadata, updated.overdraft_limit) == (
        "Acme GmbH",
        {"b": 2},
        300,
    )
    assert meter.account("acme") == updated
    charge = meter.charge("acme", "chat", credits=200)
    assert (charge.debited, charge.available_after) == (200, -200)
    with pytest.raises(InvalidRequest):
        meter.update_account("acme", overdraft_limit=100)
    assert meter.account("acme").overdraft_limit == 300
    assert_books_balance(meter)


@pytest.mark.parametrize("status", ["suspended", "blocked"])
def test_suspended_account_is_refused(meter: CreditMeter, catalog: None, status: str) -> None:
    meter.create_account("acme", plan="basic")
    assert meter.update_account("acme", status=status).status == status
    count = transaction_count(meter, "acme")

    with pytest.raises(AccountSuspended) as refused:
        meter.charge("acme", "chat", credits=10)
    assert (refused.value.account_id, refused.value.status) == ("acme", status)
    assert refused.value.code == "account_suspended"
    with pytest.raises(AccountSuspended):
        meter.authorize("acme", "chat", credits=10)
    assert meter.check("acme", "chat", credits=10).reason == "account_suspended"
    assert meter.balance("acme").status == status
    assert meter.balance("acme").available == 1_000
    assert transaction_count(meter, "acme") == count

    meter.update_account("acme", status="active")
    assert meter.charge("acme", "chat", credits=10).available_after == 990
    assert_books_balance(meter)


def test_unknown_status_is_refused(meter: CreditMeter) -> None:
    meter.create_account("acme")
    with pytest.raises(InvalidRequest):
        meter.update_account("acme", status="deleted")
    assert meter.account("acme").status == "active"
    assert_books_balance(meter)


# Plan changes.


def test_upgrade_tops_the_allowance_up_now(meter: CreditMeter, catalog: None) -> None:
    meter.create_account("acme", plan="basic")
    meter.charge("acme", "chat", credits=400)

    account = meter.change_plan("acme", "pro")

    assert (account.plan, account.pending_plan) == ("pro", None)
    balance = meter.balance("acme")
    assert balance.available == 4_600
    assert (balance.allowance.used, balance.allowance.limit) == (400, 5_000)
    assert balance.allowance.percentage == 8
    allocations = list(meter.iter_transactions("acme", types=("allocation",)))
    assert sorted(t.amount for t in allocations) == [1_000, 4_000]
    assert_books_balance(meter)


def test_upgrade_adds_the_allowance_of_a_new_pool(meter: CreditMeter) -> None:
    meter.put_feature("chat", rates={"tokens": 1})
    meter.put_feature("image", rates={"images": 10})
    meter.put_plan("basic", allowances={"chat": 100})
    meter.put_plan("plus", allowances={"chat": 100, "image": 50})
    meter.create_account("acme", plan="basic")

    meter.change_plan("acme", "plus")

    balance = meter.balance("acme")
    assert balance.available == 150
    assert balance.pools["image"].available == 50
    assert balance.pools["chat"].available == 100
    assert meter.charge("acme", "image", usage={"images": 5}).charged == 50
    assert_books_balance(meter)


def test_downgrade_waits_for_the_next_period(
    meter: CreditMeter, catalog: None, clock: Clock
) -> None:
    meter.create_account("acme", plan="pro")
    meter.charge("acme", "chat", credits=1_500)

    account = meter.change_plan("acme", "basic")

    assert (account.plan, account.pending_plan) == ("pro", "basic")
    balance = meter.balance("acme")
    assert (balance.available, balance.allowance.limit) == (3_500, 5_000)

    clock.now = datetime(2026, 4, 1, 9, tzinfo=UTC)
    account = meter.account("acme")
    assert (account.plan, account.pending_plan) == ("basic", None)
    balance = meter.balance("acme")
    assert (balance.available, balance.allowance.limit, balance.allowance.used) == (1_000, 1_000, 0)
    [expiry] = list(meter.iter_transactions("acme", types=("expiry",)))
    assert expiry.amount == -3_500
    assert_books_balance(meter)


def test_change_to_an_unknown_plan_is_refused(meter: CreditMeter, catalog: None) -> None:
    meter.create_account("acme", plan="basic")
    with pytest.raises(NotFound) as missing:
        meter.change_plan("acme", "platinum")
    assert (missing.value.kind, missing.value.key) == ("plan", "platinum")
    assert meter.account("acme").plan == "basic"
    assert meter.balance("acme").available == 1_000
    assert_books_balance(meter)


# Refunds.


def test_refund_of_a_usage_returns_credits_to_their_grants(
    meter: CreditMeter, catalog: None
) -> None:
    meter.create_account("acme")
    bonus = meter.grant("acme", 300, source="bonus")
    purchase = meter.grant("acme", 1_000, source="purchase")
    charge = meter.charge("acme", "chat", credits=500)
    assert meter.balance("acme").available == 800

    refund = meter.refund("acme", usage_id=charge.usage_id, reason="bad answer")

    assert refund.type == "refund"
    assert refund.amount == 500
    assert (refund.balance_before, refund.balance_after) == (800, 1_300)
    assert refund.usage_id == charge.usage_id
    assert refund.description == "bad answer"
    by_grant = {p.grant_id: p.amount for p in refund.postings if p.grant_id is not None}
    assert by_grant == {bonus.grant_id: 300, purchase.grant_id: 200}
    assert [p.amount for p in refund.postings if p.ledger_account == "refund"] == [-500]
    balance = meter.balance("acme")
    assert (balance.available, balance.purchased_available) == (1_300, 1_000)
    assert meter.usage_record(charge.usage_id).refunded == 500

    count = transaction_count(meter, "acme")
    with pytest.raises(InvalidRequest):
        meter.refund("acme", usage_id=charge.usage_id)
    assert transaction_count(meter, "acme") == count
    assert meter.balance("acme").available == 1_300
    assert_books_balance(meter)


def test_refund_of_a_usage_whose_grant_expired_makes_a_refund_grant(
    meter: CreditMeter, catalog: None, clock: Clock
) -> None:
    meter.create_account("acme", plan="basic")
    charge = meter.charge("acme", "chat", credits=300)
    clock.now = datetime(2026, 4, 2, tzinfo=UTC)

    refund = meter.refund("acme", usage_id=charge.usage_id)

    assert refund.amount == 300
    assert refund.by_grant_source() == {GrantSource.REFUND: 300}
    assert meter.balance("acme").available == 1_300
    assert_books_balance(meter)


def test_refund_of_a_usage_in_debt_clears_the_debt(meter: CreditMeter, catalog: None) -> None:
    meter.create_account("acme", overdraft_limit=1_000)
    meter.grant("acme", 100, source="purchase")
    charge = meter.charge("acme", "chat", credits=400)
    assert meter.balance("acme").debt == 300

    refund = meter.refund("acme", usage_id=charge.usage_id)

    assert refund.amount == 400
    balance = meter.balance("acme")
    assert (balance.available, balance.debt) == (100, 0)
    assert_books_balance(meter)


def test_refund_of_an_amount_is_a_new_refund_grant(meter: CreditMeter, catalog: None) -> None:
    meter.create_account("acme", plan="basic")

    refund = meter.refund("acme", amount=250, reason="outage credit")

    assert refund.type == "refund"
    assert refund.amount == 250
    assert (refund.balance_before, refund.balance_after) == (1_000, 1_250)
    assert refund.description == "outage credit"
    assert refund.by_grant_source() == {GrantSource.REFUND: 250}
    assert [p.amount for p in refund.postings if p.ledger_account == "refund"] == [-250]
    assert meter.balance("acme").available == 1_250
    assert_books_balance(meter)


def test_refund_of_another_accounts_usage_is_not_found(meter: CreditMeter, catalog: None) -> None:
    meter.create_account("acme", plan="basic")
    meter.create_account("globex", plan="basic")
    charge = meter.charge("acme", "chat", credits=100)

    with pytest.raises(NotFound):
        meter.refund("globex", usage_id=charge.usage_id)

    assert meter.balance("globex").available == 1_000
    assert meter.usage_record(charge.usage_id).refunded == 0
    assert_books_balance(meter)


def test_refund_needs_exactly_one_of_usage_and_amount(meter: CreditMeter, catalog: None) -> None:
    meter.create_account("acme", plan="basic")
    charge = meter.charge("acme", "chat", credits=100)
    with pytest.raises(InvalidRequest):
        meter.refund("acme")
    with pytest.raises(InvalidRequest):
        meter.refund("acme", usage_id=charge.usage_id, amount=100)
    assert meter.balance("acme").available == 900
    assert_books_balance(meter)


# Unknown things.


def test_unknown_things_are_not_found(meter: CreditMeter, catalog: None) -> None:
    meter.create_account("acme", plan="basic")
    count = transaction_count(meter, "acme")
    calls: list[tuple[str, str, Callable[[], object]]] = [
        ("account", "nope", lambda: meter.account("nope")),
        ("account", "nope", lambda: meter.balance("nope")),
        ("account", "nope", lambda: meter.charge("nope", "chat", credits=1)),
        ("account", "nope", lambda: meter.authorize("nope", "chat", credits=1)),
        ("account", "nope", lambda: meter.grant("nope", 10)),
        ("account", "nope", lambda: meter.refund("nope", amount=10)),
        ("account", "nope", lambda: meter.update_account("nope", name="x")),
        ("account", "nope", lambda: meter.change_plan("nope", "pro")),
        ("account", "nope", lambda: meter.transactions("nope")),
        ("account", "nope", lambda: meter.usage("nope")),
        ("account", "nope", lambda: meter.usage_summary("nope")),
        ("feature", "teleport", lambda: meter.charge("acme", "teleport", credits=1)),
        ("feature", "teleport", lambda: meter.authorize("acme", "teleport", credits=1)),
        ("feature", "teleport", lambda: meter.check("acme", "teleport", credits=1)),
        ("hold", "hold_x", lambda: meter.settle("hold_x")),
        ("hold", "hold_x", lambda: meter.release("hold_x")),
        ("hold", "hold_x", lambda: meter.hold("hold_x")),
        ("usage", "use_x", lambda: meter.usage_record("use_x")),
        ("usage", "use_x", lambda: meter.refund("acme", usage_id="use_x")),
        ("plan", "platinum", lambda: meter.create_account("new", plan="platinum")),
    ]
    for kind, key, call in calls:
        with pytest.raises(NotFound) as missing:
            call()
        assert (missing.value.kind, missing.value.key) == (kind, key)
        assert missing.value.code == "not_found"

    assert [a.id for a in meter.list_accounts()] == ["acme"]
    assert meter.balance("acme").available == 1_000
    assert transaction_count(meter, "acme") == count
    assert_books_balance(meter)


# Bad input.


def _bad(value: object) -> Any:
    """A value of a type the API does not accept, past the type checker."""
    return value


BAD_REQUESTS: dict[str, Callable[[CreditMeter], object]] = {
    "grant_negative": lambda m: m.grant("acme", -5),
    "grant_zero": lambda m: m.grant("acme", 0),
    "grant_float": lambda m: m.grant("acme", _bad(1.5)),
    "grant_whole_float": lambda m: m.grant("acme", _bad(10.0)),
    "grant_bool": lambda m: m.grant("acme", _bad(True)),
    "grant_string": lambda m: m.grant("acme", _bad("10")),
    "grant_decimal": lambda m: m.grant("acme", _bad(Decimal(10))),
    "grant_unknown_source": lambda m: m.grant("acme", 10, source="gift"),
    "grant_allowance_by_hand": lambda m: m.grant("acme", 10, source="allowance"),
    "grant_expired": lambda m: m.grant("acme", 10, expires_at=datetime(2026, 3, 1, tzinfo=UTC)),
    "grant_float_priority": lambda m: m.grant("acme", 10, priority=_bad(1.5)),
    "charge_negative_credits": lambda m: m.charge("acme", "chat", credits=-1),
    "charge_float_credits": lambda m: m.charge("acme", "chat", credits=_bad(2.5)),
    "charge_whole_float_credits": lambda m: m.charge("acme", "chat", credits=_bad(3.0)),
    "charge_float_usage": lambda m: m.charge("acme", "chat", usage={"tokens": _bad(1.5)}),
    "charge_negative_usage": lambda m: m.charge("acme", "chat", usage={"tokens": -1}),
    "charge_nan_usage": lambda m: m.charge("acme", "chat", usage={"tokens": "NaN"}),
    "charge_text_usage": lambda m: m.charge("acme", "chat", usage={"tokens": "many"}),
    "charge_unknown_unit": lambda m: m.charge("acme", "chat", usage={"words": 3}),
    "charge_usage_and_credits": lambda m: m.charge("acme", "chat", usage={"tokens": 3}, credits=3),
    "authorize_negative": lambda m: m.authorize("acme", "chat", credits=-1),
    "authorize_unknown_unit": lambda m: m.authorize("acme", "chat", estimate={"words": 1}),
    "authorize_zero_ttl": lambda m: m.authorize("acme", "chat", credits=1, ttl=timedelta(0)),
    "authorize_negative_ttl": lambda m: m.authorize(
        "acme", "chat", credits=1, ttl=timedelta(seconds=-1)
    ),
    "authorize_ttl_too_long": lambda m: m.authorize(
        "acme", "chat", credits=1, ttl=timedelta(days=2)
    ),
    "refund_negative": lambda m: m.refund("acme", amount=-3),
    "refund_float": lambda m: m.refund("acme", amount=_bad(2.5)),
    "create_empty_id": lambda m: m.create_account(""),
    "create_blank_id": lambda m: m.create_account("   "),
    "create_negative_overdraft": lambda m: m.create_account("neg", overdraft_limit=-1),
    "update_negative_overdraft": lambda m: m.update_account("acme", overdraft_limit=-1),
    "transactions_unknown_type": lambda m: m.transactions("acme", types=("theft",)),
    "transactions_zero_limit": lambda m: m.transactions("acme", limit=0),
    "transactions_bad_cursor": lambda m: m.transactions("acme", cursor="%%%"),
    "summary_unknown_grouping": lambda m: m.usage_summary("acme", group_by="hour"),
    "feature_float_rate": lambda m: m.put_feature("cheap", rates={"tokens": _bad(0.1)}),
    "feature_without_rates": lambda m: m.put_feature("free", rates={}),
    "plan_float_allowance": lambda m: m.put_plan("odd", allowances={"*": _bad(1.5)}),
    "plan_unknown_period": lambda m: m.put_plan("odd", allowances={"*": 1}, period="weekly"),
    "settings_float_bonus": lambda m: m.change_settings(
        {"welcome_bonus": _bad(1.5)}, changed_by="test"
    ),
    "settings_unknown_name": lambda m: m.change_settings({"colour": "red"}, changed_by="test"),
}


def test_bad_input_is_refused_and_changes_nothing(meter: CreditMeter, catalog: None) -> None:
    meter.create_account("acme", plan="basic")
    meter.charge("acme", "chat", credits=100)
    count = transaction_count(meter, "acme")
    settings = meter.settings()

    accepted = []
    for name, request in BAD_REQUESTS.items():
        try:
            request(meter)
        except InvalidRequest:
            continue
        accepted.append(name)

    assert accepted == []
    balance = meter.balance("acme")
    assert (balance.available, balance.held, balance.debt) == (900, 0, 0)
    assert transaction_count(meter, "acme") == count
    assert len(meter.usage("acme").data) == 1
    assert [a.id for a in meter.list_accounts()] == ["acme"]
    assert [f.key for f in meter.features()] == ["chat"]
    assert sorted(p.key for p in meter.plans()) == ["basic", "pro"]
    assert meter.settings() == settings
    assert len(meter.settings_history()) == 0
    assert_books_balance(meter)
