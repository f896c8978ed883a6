"""Idempotency keys: a retry has its effect once and returns the first result; the same
key with other parameters is a conflict; concurrent retries apply once."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest

from creditmeter import CreditMeter, IdempotencyConflict
from creditmeter.core.payments import Money, Purchase, PurchaseKind, PurchaseStatus
from creditmeter.core.records import Account, Charge, GrantResult, Hold, Posting, Transaction
from creditmeter.core.settings import BalanceWarning
from creditmeter.core.types import AccountStatus, GrantSource, HoldStatus, TransactionType
from creditmeter.service import idempotency
from creditmeter.store import idempotency as idempotency_store
from tests.conftest import Clock

T = TypeVar("T")
THREADS = 8


def assert_books_balance(meter: CreditMeter) -> None:
    assert meter.verify() == []


def transaction_count(meter: CreditMeter, account_id: str) -> int:
    return len(list(meter.iter_transactions(account_id)))


@pytest.fixture
def acme(meter: CreditMeter) -> str:
    meter.put_feature("chat", rates={"tokens": 1})
    meter.create_account("acme")
    meter.grant("acme", 1_000, source="purchase")
    return "acme"


@pytest.fixture
def meters(migrated_url: str, clock: Clock, meter: CreditMeter) -> Iterator[list[CreditMeter]]:
    """One more ``CreditMeter`` per thread on the database of ``meter`` (already migrated)."""
    opened = [CreditMeter(migrated_url, clock=clock, migrate=False) for _ in range(THREADS)]
    try:
        yield opened
    finally:
        for m in opened:
            m.close()


def in_threads(meters: list[CreditMeter], call: Callable[[CreditMeter], T]) -> list[T]:
    with ThreadPoolExecutor(max_workers=len(meters)) as pool:
        return list(pool.map(call, meters))


# Retries return the first result and change nothing more.


def test_charge_retried(meter: CreditMeter, acme: str) -> None:
    first = meter.charge(acme, "chat", usage={"tokens": 300}, idempotency_key="charge-1")
    count = transaction_count(meter, acme)

    again = meter.charge(acme, "chat", usage={"tokens": 300}, idempotency_key="charge-1")

    assert again == first
    assert first.charged == 300
    assert first.available_after == 700
    assert meter.balance(acme).available == 700
    assert transaction_count(meter, acme) == count
    assert len(meter.usage(acme).data) == 1
    assert_books_balance(meter)


def test_grant_retried(meter: CreditMeter, acme: str) -> None:
    first = meter.grant(acme, 500, source="promotional", idempotency_key="grant-1")
    again = meter.grant(acme, 500, source="promotional", idempotency_key="grant-1")

    assert again == first
    assert first.amount == 500
    assert first.available_after == 1_500
    assert meter.balance(acme).available == 1_500
    assert len(list(meter.iter_transactions(acme, types=("grant",)))) == 2
    assert_books_balance(meter)


def test_authorize_retried(meter: CreditMeter, acme: str) -> None:
    first = meter.authorize(acme, "chat", credits=400, idempotency_key="hold-1")
    again = meter.authorize(acme, "chat", credits=400, idempotency_key="hold-1")

    assert again == first
    assert first.reserved == 400
    balance = meter.balance(acme)
    assert balance.held == 400
    assert balance.available == 600
    assert_books_balance(meter)


def test_settle_retried(meter: CreditMeter, acme: str) -> None:
    hold = meter.authorize(acme, "chat", credits=400)
    first = meter.settle(hold.id, credits=250, idempotency_key="settle-1")
    count = transaction_count(meter, acme)

    again = meter.settle(hold.id, credits=250, idempotency_key="settle-1")

    assert again == first
    assert first.charged == 250
    assert first.available_after == 750
    balance = meter.balance(acme)
    assert (balance.available, balance.held) == (750, 0)
    assert transaction_count(meter, acme) == count
    assert_books_balance(meter)


def test_release_retried(meter: CreditMeter, acme: str) -> None:
    hold = meter.authorize(acme, "chat", credits=400)
    first = meter.release(hold.id, idempotency_key="release-1")
    again = meter.release(hold.id, idempotency_key="release-1")

    assert again == first
    assert first.status == "released"
    balance = meter.balance(acme)
    assert (balance.available, balance.held) == (1_000, 0)
    assert_books_balance(meter)


def test_refund_of_a_usage_retried(meter: CreditMeter, acme: str) -> None:
    charge = meter.charge(acme, "chat", credits=300)
    first = meter.refund(acme, usage_id=charge.usage_id, idempotency_key="refund-1")
    again = meter.refund(acme, usage_id=charge.usage_id, idempotency_key="refund-1")

    assert again == first
    assert first.amount == 300
    assert meter.balance(acme).available == 1_000
    assert meter.usage_record(charge.usage_id).refunded == 300
    assert_books_balance(meter)


def test_refund_of_an_amount_retried(meter: CreditMeter, acme: str) -> None:
    first = meter.refund(acme, amount=120, reason="outage", idempotency_key="refund-2")
    again = meter.refund(acme, amount=120, reason="outage", idempotency_key="refund-2")

    assert again == first
    assert first.amount == 120
    assert meter.balance(acme).available == 1_120
    assert len(list(meter.iter_transactions(acme, types=("refund",)))) == 1
    assert_books_balance(meter)


def test_create_account_retried_by_id(meter: CreditMeter) -> None:
    meter.change_settings({"welcome_bonus": 250}, changed_by="test")
    first = meter.create_account("acme", name="Acme")
    again = meter.create_account("acme", name="Acme")

    assert again == first
    assert meter.balance("acme").available == 250
    assert transaction_count(meter, "acme") == 1
    assert_books_balance(meter)


def test_create_account_takes_an_idempotency_key(meter: CreditMeter) -> None:
    """DESIGN §4: every mutating call takes an idempotency key; creating an account can
    grant credits (welcome bonus, first allowance)."""
    meter.change_settings({"welcome_bonus": 250}, changed_by="test")
    create: Callable[..., Account] = meter.create_account

    first = create("acme", name="Acme", idempotency_key="create-1")
    again = create("acme", name="Acme", idempotency_key="create-1")

    assert again == first
    assert meter.balance("acme").available == 250
    with pytest.raises(IdempotencyConflict):
        create("other", name="Other", idempotency_key="create-1")
    assert meter.list_accounts() == [first]
    assert_books_balance(meter)


def test_key_replays_after_time_has_passed(meter: CreditMeter, acme: str, clock: Clock) -> None:
    first = meter.charge(acme, "chat", credits=100, idempotency_key="charge-1")
    clock.advance(hours=5)
    assert meter.charge(acme, "chat", credits=100, idempotency_key="charge-1") == first
    assert meter.balance(acme).available == 900
    assert_books_balance(meter)


# The same key with other parameters is a conflict and changes nothing.


CHARGE_CONFLICTS: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"credits": 100}, {"credits": 101}),
    ({"credits": 100}, {"usage": {"tokens": 100}}),
    ({"credits": 100, "model": "a"}, {"credits": 100, "model": "b"}),
    ({"credits": 100, "member": "ann"}, {"credits": 100}),
    ({"credits": 100, "metadata": {"x": 1}}, {"credits": 100, "metadata": {"x": 2}}),
]


def test_charge_with_the_same_key_and_other_parameters_conflicts(
    meter: CreditMeter, acme: str
) -> None:
    for i, (first, second) in enumerate(CHARGE_CONFLICTS):
        key = f"k{i}"
        meter.charge(acme, "chat", idempotency_key=key, **first)
        count = transaction_count(meter, acme)

        with pytest.raises(IdempotencyConflict) as conflict:
            meter.charge(acme, "chat", idempotency_key=key, **second)

        assert conflict.value.key == key
        assert conflict.value.code == "idempotency_conflict"
        assert meter.balance(acme).available == 900 - 100 * i
        assert transaction_count(meter, acme) == count
    assert len(meter.usage(acme).data) == len(CHARGE_CONFLICTS)
    assert_books_balance(meter)


def test_same_key_on_another_account_conflicts(meter: CreditMeter, acme: str) -> None:
    meter.create_account("globex")
    meter.grant("globex", 1_000, source="purchase")
    meter.charge(acme, "chat", credits=100, idempotency_key="k")

    with pytest.raises(IdempotencyConflict):
        meter.charge("globex", "chat", credits=100, idempotency_key="k")

    assert meter.balance("globex").available == 1_000
    assert meter.balance(acme).available == 900
    assert_books_balance(meter)


def test_same_key_for_another_verb_conflicts(meter: CreditMeter, acme: str) -> None:
    meter.grant(acme, 100, idempotency_key="k")
    hold = meter.authorize(acme, "chat", credits=100)

    with pytest.raises(IdempotencyConflict):
        meter.charge(acme, "chat", credits=100, idempotency_key="k")
    with pytest.raises(IdempotencyConflict):
        meter.refund(acme, amount=100, idempotency_key="k")
    with pytest.raises(IdempotencyConflict):
        meter.authorize(acme, "chat", credits=100, idempotency_key="k")
    with pytest.raises(IdempotencyConflict):
        meter.settle(hold.id, idempotency_key="k")
    with pytest.raises(IdempotencyConflict):
        meter.release(hold.id, idempotency_key="k")

    assert meter.hold(hold.id).status == "pending"
    balance = meter.balance(acme)
    assert (balance.available, balance.held) == (1_000, 100)
    assert_books_balance(meter)


def test_grant_with_the_same_key_and_another_amount_conflicts(
    meter: CreditMeter, acme: str
) -> None:
    meter.grant(acme, 100, idempotency_key="k")
    with pytest.raises(IdempotencyConflict):
        meter.grant(acme, 200, idempotency_key="k")
    with pytest.raises(IdempotencyConflict):
        meter.grant(acme, 100, source="purchase", idempotency_key="k")
    assert meter.balance(acme).available == 1_100
    assert_books_balance(meter)


def test_settle_with_the_same_key_and_another_usage_conflicts(
    meter: CreditMeter, acme: str
) -> None:
    hold = meter.authorize(acme, "chat", credits=400)
    meter.settle(hold.id, credits=250, idempotency_key="s")
    with pytest.raises(IdempotencyConflict):
        meter.settle(hold.id, credits=300, idempotency_key="s")
    assert meter.balance(acme).available == 750
    assert_books_balance(meter)


def test_authorize_with_the_same_key_and_another_estimate_conflicts(
    meter: CreditMeter, acme: str
) -> None:
    meter.authorize(acme, "chat", credits=400, idempotency_key="a")
    with pytest.raises(IdempotencyConflict):
        meter.authorize(acme, "chat", credits=500, idempotency_key="a")
    assert meter.balance(acme).held == 400
    assert_books_balance(meter)


def test_refund_with_the_same_key_and_another_amount_conflicts(
    meter: CreditMeter, acme: str
) -> None:
    meter.refund(acme, amount=10, idempotency_key="r")
    with pytest.raises(IdempotencyConflict):
        meter.refund(acme, amount=11, idempotency_key="r")
    assert meter.balance(acme).available == 1_010
    assert_books_balance(meter)


# Concurrent retries.


def test_concurrent_charges_with_one_key_apply_once(
    meter: CreditMeter, acme: str, meters: list[CreditMeter]
) -> None:
    results = in_threads(
        meters, lambda m: m.charge(acme, "chat", credits=100, idempotency_key="same")
    )

    assert len(results) == THREADS
    assert all(r == results[0] for r in results)
    assert results[0].available_after == 900
    assert meter.balance(acme).available == 900
    assert len(meter.usage(acme).data) == 1
    assert_books_balance(meter)


def test_concurrent_grants_with_one_key_apply_once(
    meter: CreditMeter, acme: str, meters: list[CreditMeter]
) -> None:
    results = in_threads(meters, lambda m: m.grant(acme, 50, idempotency_key="same"))

    assert all(r == results[0] for r in results)
    assert meter.balance(acme).available == 1_050
    assert_books_balance(meter)


def test_concurrent_settles_with_one_key_apply_once(
    meter: CreditMeter, acme: str, meters: list[CreditMeter]
) -> None:
    hold = meter.authorize(acme, "chat", credits=300)
    results = in_threads(meters, lambda m: m.settle(hold.id, credits=200, idempotency_key="s"))

    assert all(r == results[0] for r in results)
    assert results[0].charged == 200
    balance = meter.balance(acme)
    assert (balance.available, balance.held) == (800, 0)
    assert_books_balance(meter)


def test_concurrent_creates_of_one_account_grant_the_bonus_once(
    meter: CreditMeter, meters: list[CreditMeter]
) -> None:
    meter.change_settings({"welcome_bonus": 10_000}, changed_by="test")
    results = in_threads(meters, lambda m: m.create_account("new", name="New"))

    assert all(r == results[0] for r in results)
    assert meter.balance("new").available == 10_000
    assert transaction_count(meter, "new") == 1
    assert_books_balance(meter)


def test_concurrent_distinct_keys_each_apply(
    meter: CreditMeter, acme: str, meters: list[CreditMeter]
) -> None:
    keyed = list(enumerate(meters))
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        results = list(
            pool.map(
                lambda im: im[1].charge(acme, "chat", credits=10, idempotency_key=f"k{im[0]}"),
                keyed,
            )
        )

    assert len({r.usage_id for r in results}) == THREADS
    assert meter.balance(acme).available == 1_000 - 10 * THREADS
    assert_books_balance(meter)


# Results stored by earlier versions still replay.

STORED_AT = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
HOLD = Hold(
    id="hold_1",
    account_id="acme",
    feature="chat",
    credits=100,
    reserved=100,
    status=HoldStatus.SETTLED,
    created_at=STORED_AT,
    expires_at=STORED_AT + timedelta(minutes=15),
    usage_id="use_2",
)
HOLD_STORED = {
    "id": "hold_1",
    "account_id": "acme",
    "feature": "chat",
    "credits": 100,
    "reserved": 100,
    "status": "settled",
    "created_at": "2026-03-10T12:00:00+00:00",
    "expires_at": "2026-03-10T12:15:00+00:00",
    "usage_id": "use_2",
    "would_refuse": None,
    "requested": None,
}
SETTLED = Charge(
    usage_id="use_2",
    account_id="acme",
    feature="chat",
    credits=50,
    charged=50,
    debited=0,
    uncollected=0,
    available_after=650,
    transaction_id="txn_2",
    hold_id="hold_1",
    warnings=(BalanceWarning(code="balance_low", message="balance is low: 650 credits left"),),
    hold=HOLD,
)
SETTLED_STORED = {
    "usage_id": "use_2",
    "account_id": "acme",
    "feature": "chat",
    "credits": 50,
    "charged": 50,
    "debited": 0,
    "uncollected": 0,
    "available_after": 650,
    "transaction_id": "txn_2",
    "hold_id": "hold_1",
    "warnings": [{"code": "balance_low", "message": "balance is low: 650 credits left"}],
    "would_refuse": None,
    "hold": HOLD_STORED,
    "unknown_model": False,
}
REFUND = Transaction(
    id="txn_3",
    account_id="acme",
    type=TransactionType.REFUND,
    amount=300,
    balance_before=650,
    balance_after=950,
    description="usage use_1 refunded",
    created_at=STORED_AT,
    postings=(
        Posting("account:acme", 300, "grt_1", GrantSource.PURCHASE),
        Posting("refund", -300, None, None),
    ),
    usage_id="use_1",
    metadata={"reason": "test"},
)
REFUND_STORED = {
    "id": "txn_3",
    "account_id": "acme",
    "type": "refund",
    "amount": 300,
    "balance_before": 650,
    "balance_after": 950,
    "description": "usage use_1 refunded",
    "created_at": "2026-03-10T12:00:00+00:00",
    "postings": [
        {
            "ledger_account": "account:acme",
            "amount": 300,
            "grant_id": "grt_1",
            "grant_source": "purchase",
        },
        {"ledger_account": "refund", "amount": -300, "grant_id": None, "grant_source": None},
    ],
    "usage_id": "use_1",
    "hold_id": None,
    "metadata": {"reason": "test"},
    "purchase_id": None,
}
ACCOUNT = Account(
    id="acme",
    name="Acme",
    plan=None,
    pending_plan=None,
    status=AccountStatus.ACTIVE,
    created_at=STORED_AT,
    period_start=datetime(2026, 3, 1, tzinfo=UTC),
    period_end=datetime(2026, 4, 1, tzinfo=UTC),
    overdraft_limit=0,
    metadata={"team": "x"},
)
ACCOUNT_STORED = {
    "id": "acme",
    "name": "Acme",
    "plan": None,
    "pending_plan": None,
    "status": "active",
    "created_at": "2026-03-10T12:00:00+00:00",
    "period_start": "2026-03-01T00:00:00+00:00",
    "period_end": "2026-04-01T00:00:00+00:00",
    "overdraft_limit": 0,
    "metadata": {"team": "x"},
}
PURCHASE = Purchase(
    id="pur_1",
    account_id="acme",
    package_id="pkg_1",
    kind=PurchaseKind.CHECKOUT,
    status=PurchaseStatus.PENDING,
    credits=1_000,
    bonus_credits=100,
    price=Money(1_000, "usd"),
    provider="dev",
    created_at=STORED_AT,
    session_id="cs_1",
)
PURCHASE_STORED = {
    "id": "pur_1",
    "account_id": "acme",
    "package_id": "pkg_1",
    "kind": "checkout",
    "status": "pending",
    "credits": 1000,
    "bonus_credits": 100,
    "price": {"amount": 1000, "currency": "usd"},
    "provider": "dev",
    "created_at": "2026-03-10T12:00:00+00:00",
    "session_id": "cs_1",
    "payment_intent_id": None,
    "amount_paid": 0,
    "amount_refunded": 0,
    "credits_clawed_back": 0,
    "clawback_debt": 0,
    "credits_unrecovered": 0,
    "failure_reason": None,
    "paid_at": None,
    "fulfilled_at": None,
    "transaction_id": None,
}
# A settle stored before charges kept their hold.
SETTLED_WITHOUT_HOLD_STORED = {k: v for k, v in SETTLED_STORED.items() if k != "hold"}


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        (HOLD_STORED, HOLD),
        (SETTLED_STORED, SETTLED),
        (SETTLED_WITHOUT_HOLD_STORED, dataclasses.replace(SETTLED, hold=None)),
        (REFUND_STORED, REFUND),
        (ACCOUNT_STORED, ACCOUNT),
        (PURCHASE_STORED, PURCHASE),
        (
            {
                "grant_id": "grt_1",
                "transaction_id": "txn_1",
                "amount": 1000,
                "available_after": 1000,
            },
            GrantResult("grt_1", "txn_1", 1_000, 1_000),
        ),
    ],
    ids=["hold", "settle", "settle-without-hold", "refund", "account", "purchase", "grant"],
)
def test_a_result_stored_by_an_earlier_version_replays(
    meter: CreditMeter, stored: dict[str, Any], expected: object
) -> None:
    with meter.db.write() as conn:
        idempotency_store.record(conn, "old-key", "op", "print", stored, STORED_AT)
    with meter.db.read() as conn:
        replayed = idempotency.replay(conn, "old-key", "op", "print", type(expected))

    assert replayed == expected


def test_a_result_replays_as_it_was_returned(meter: CreditMeter) -> None:
    records = [HOLD, SETTLED, REFUND, ACCOUNT, PURCHASE]
    with meter.db.write() as conn:
        for n, record in enumerate(records):
            idempotency.remember(conn, f"key-{n}", "op", "print", record, STORED_AT)
    with meter.db.read() as conn:
        replayed = [
            idempotency.replay(conn, f"key-{n}", "op", "print", type(record))
            for n, record in enumerate(records)
        ]

    assert replayed == records
