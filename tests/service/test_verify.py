"""``verify`` finds each broken invariant of the books, and names what breaks it.

A small real ledger is built through the library, found clean, then tampered with by raw
SQL, one invariant at a time, within what the database's own constraints allow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa

from creditmeter import CreditMeter
from creditmeter.service.verify import Violation
from creditmeter.store.tables import ledger_transactions
from tests.conftest import Clock


@dataclass(frozen=True)
class Ledger:
    meter: CreditMeter
    allowance: str  # acme's allowance grant: 500, all spent
    purchase: str  # acme's purchased grant: 300, 150 spent, 50 held
    first_usage: str  # acme's 250-credit chat, from the allowance
    first_txn: str
    split_usage: str  # acme's 400-credit chat, split over allowance and purchase
    split_txn: str
    hold: str  # acme's pending 50-credit hold
    debt_usage: str  # beta's 30-credit image: 10 from its grant, 20 on overdraft


@pytest.fixture
def ledger(meter: CreditMeter, clock: Clock) -> Ledger:
    meter.put_feature("chat", rates={"input_tokens": "0.01", "output_tokens": "0.03"}, pool="llm")
    meter.put_feature("image", rates={"calls": 30}, pool="images")
    meter.put_plan("pro", allowances={"llm": 500}, features=["chat"])
    meter.create_account("acme", plan="pro")
    meter.create_account("beta", overdraft_limit=50)
    purchase = meter.grant("acme", 300, source="purchase").grant_id
    clock.advance(minutes=1)
    first = meter.charge("acme", "chat", usage={"input_tokens": 10_000, "output_tokens": 5_000})
    clock.advance(minutes=1)
    split = meter.charge("acme", "chat", usage={"input_tokens": 10_000, "output_tokens": 10_000})
    clock.advance(minutes=1)
    hold = meter.authorize("acme", "chat", credits=50)
    meter.grant("beta", 10, source="admin")
    debt = meter.charge("beta", "image")
    with meter.db.read() as conn:
        allowance = conn.execute(
            sa.text("SELECT id FROM grants WHERE account_id = 'acme' AND source = 'allowance'")
        ).scalar_one()
    assert (first.credits, first.charged) == (250, 250)
    assert (split.credits, split.charged) == (400, 400)
    assert (debt.charged, debt.debited) == (10, 20)
    assert hold.reserved == 50
    assert first.transaction_id is not None
    assert split.transaction_id is not None
    acme = meter.balance("acme")
    assert (acme.available, acme.held) == (100, 50)
    assert meter.balance("beta").available == -20
    assert meter.verify() == []
    return Ledger(
        meter=meter,
        allowance=allowance,
        purchase=purchase,
        first_usage=first.usage_id,
        first_txn=first.transaction_id,
        split_usage=split.usage_id,
        split_txn=split.transaction_id,
        hold=hold.id,
        debt_usage=debt.usage_id,
    )


def tamper(meter: CreditMeter, *statements: str, **params: Any) -> None:
    with meter.db.engine.begin() as conn:
        for statement in statements:
            result = conn.execute(sa.text(statement), params)
            assert result.rowcount == 1, statement


def found(violations: list[Violation]) -> set[tuple[str, str]]:
    return {(v.invariant, v.subject) for v in violations}


def test_a_clean_ledger_has_no_violations(ledger: Ledger) -> None:
    assert ledger.meter.verify() == []


def test_a_posting_amount_changed_unbalances_the_books_i1(ledger: Ledger) -> None:
    tamper(
        ledger.meter,
        "UPDATE postings SET amount = amount + 1"
        " WHERE transaction_id = :txn AND ledger_account = 'consumption'",
        txn=ledger.split_txn,
    )
    assert {v.subject: v.message for v in ledger.meter.verify()} == {
        "ledger": "postings sum to 1, not 0",
        ledger.split_txn: "postings sum to 1",
    }


def test_credits_moved_between_grants_are_found_in_both_i2(ledger: Ledger) -> None:
    tamper(
        ledger.meter,
        "UPDATE grants SET remaining = remaining - 10 WHERE id = :purchase",
        "UPDATE grants SET remaining = remaining + 10 WHERE id = :allowance",
        purchase=ledger.purchase,
        allowance=ledger.allowance,
    )
    violations = ledger.meter.verify()
    # The running totals of free credits moved with neither grant: I3 sees both.
    assert found(violations) == {
        ("I2", ledger.purchase),
        ("I2", ledger.allowance),
        ("I3", "acme/*/purchase"),
        ("I3", "acme/llm/allowance"),
    }
    (purchase,) = (v for v in violations if v.subject == ledger.purchase)
    assert "remaining 140 of amount 300, postings leave 150" in purchase.message


def test_a_grant_grown_in_remaining_and_amount_is_found_i2(ledger: Ledger) -> None:
    tamper(
        ledger.meter,
        "UPDATE grants SET remaining = remaining + 25, amount = amount + 25 WHERE id = :g",
        g=ledger.purchase,
    )
    violations = ledger.meter.verify()
    # The account's stored balance and its running total of free purchased credits no
    # longer match what its grants hold: I3 sees both.
    assert found(violations) == {
        ("I2", ledger.purchase),
        ("I3", "acme"),
        ("I3", "acme/*/purchase"),
    }
    (grant,) = (v for v in violations if v.invariant == "I2")
    assert "remaining 175 of amount 325, postings leave 150" in grant.message


def test_a_grant_holding_more_than_its_holds_reserve_is_found_i2(ledger: Ledger) -> None:
    tamper(ledger.meter, "UPDATE grants SET held = held + 1 WHERE id = :g", g=ledger.purchase)
    violations = ledger.meter.verify()
    assert found(violations) == {("I2", ledger.purchase), ("I3", "acme/*/purchase")}
    (grant,) = (v for v in violations if v.invariant == "I2")
    assert "held 51, pending holds reserve 50" in grant.message


def test_a_running_total_of_free_credits_changed_is_found_i3(ledger: Ledger) -> None:
    tamper(
        ledger.meter,
        "UPDATE grant_free SET free = free + 3 WHERE account_id = 'acme' AND source = 'purchase'",
    )
    violations = ledger.meter.verify()
    assert found(violations) == {("I3", "acme/*/purchase")}
    # 300 bought, 150 spent, 50 held: 100 free.
    assert "running total of free credits 103, its grants hold 100 free" in violations[0].message


def test_an_account_balance_changed_is_found_i3(ledger: Ledger) -> None:
    tamper(ledger.meter, "UPDATE accounts SET balance = balance + 7 WHERE id = 'acme'")
    violations = ledger.meter.verify()
    assert found(violations) == {("I3", "acme")}
    assert "stored balance 157" in violations[0].message
    assert "replay gives balance 150" in violations[0].message


def test_a_transaction_whose_balances_do_not_move_by_its_amount_is_found_i3(
    ledger: Ledger,
) -> None:
    tamper(
        ledger.meter,
        "UPDATE ledger_transactions SET balance_after = balance_after + 1 WHERE id = :txn",
        txn=ledger.first_txn,
    )
    assert found(ledger.meter.verify()) == {("I3", ledger.first_txn)}


def test_a_hold_reserving_other_than_its_allocations_is_found_i4(ledger: Ledger) -> None:
    # The account's held total moves with the hold, so only the allocations disagree.
    tamper(
        ledger.meter,
        "UPDATE holds SET reserved = reserved - 1 WHERE id = :hold",
        "UPDATE accounts SET held = held - 1 WHERE id = 'acme'",
        hold=ledger.hold,
    )
    violations = ledger.meter.verify()
    assert found(violations) == {("I4", ledger.hold)}
    assert "reserves 49 of 50, allocations hold 50" in violations[0].message


def test_an_account_below_its_overdraft_limit_is_found_i4(ledger: Ledger) -> None:
    tamper(ledger.meter, "UPDATE accounts SET overdraft_limit = 10 WHERE id = 'beta'")
    violations = ledger.meter.verify()
    assert found(violations) == {("I4", "beta")}
    assert "available -20, debt 20, overdraft limit 10" in violations[0].message


def test_a_second_usage_transaction_for_one_usage_is_found_i5(ledger: Ledger) -> None:
    with ledger.meter.db.engine.begin() as conn:
        conn.execute(
            ledger_transactions.insert().values(
                id="txn_replayed",
                account_id="acme",
                type="usage",
                amount=0,
                balance_before=100,
                balance_after=100,
                description="the same usage, charged again",
                usage_id=ledger.first_usage,
                hold_id=None,
                metadata={},
                created_at=ledger.meter.clock(),
            )
        )
    violations = ledger.meter.verify()
    assert found(violations) == {("I5", ledger.first_usage)}
    assert "charged by 2 usage transactions" in violations[0].message


def test_a_usage_record_disagreeing_with_its_transaction_is_found_i5(ledger: Ledger) -> None:
    tamper(
        ledger.meter,
        "UPDATE usage_records SET charged = charged - 1, uncollected = uncollected + 1"
        " WHERE id = :usage",
        usage=ledger.split_usage,
    )
    violations = ledger.meter.verify()
    # The record no longer agrees with its day's usage sums either (I3).
    assert {v for v in found(violations) if v[0] != "I3"} == {("I5", ledger.split_usage)}
    assert [v.invariant for v in violations] == ["I5", "I3"]
    assert "drawing 400, record says 399 + 0 debt" in violations[0].message


def test_a_usage_with_no_transaction_is_found_i5(ledger: Ledger) -> None:
    tamper(
        ledger.meter,
        "UPDATE ledger_transactions SET type = 'refund' WHERE id = :txn",
        txn=ledger.first_txn,
    )
    assert found(ledger.meter.verify()) == {("I5", ledger.first_usage)}
