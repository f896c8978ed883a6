"""``verify`` finds purchases credited other than exactly once (I6), and the database
itself refuses a payment event stored twice (I5)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from creditmeter import CreditMeter
from creditmeter.core.payments import Purchase
from creditmeter.service.verify import Violation
from creditmeter.store.tables import ledger_transactions, payment_events
from tests.service.payment_events import charge_refunded, deliver, drain, session_completed
from tests.service.test_verify import tamper


@pytest.fixture
def bought(meter: CreditMeter) -> Purchase:
    """A purchase of 1,100 credits for 999 cents, fulfilled, a third refunded."""
    meter.put_package("starter", credits=1000, bonus_credits=100, price=999, currency="usd")
    meter.create_account("acme")
    checkout = meter.checkout("acme", "starter", success_url="https://a/ok")
    purchase = meter.purchase(checkout.purchase_id)
    deliver(meter, "checkout.session.completed", session_completed(purchase))
    drain(meter)
    deliver(meter, "charge.refunded", charge_refunded(meter.purchase(purchase.id), 333))
    drain(meter)
    assert meter.verify() == []
    return meter.purchase(purchase.id)


def i6(meter: CreditMeter) -> list[Violation]:
    found = meter.verify()
    assert {v.invariant for v in found} == {"I6"}
    return found


def test_a_credited_purchase_marked_failed_is_found(meter: CreditMeter, bought: Purchase) -> None:
    tamper(
        meter,
        "UPDATE purchases SET status = 'failed', transaction_id = NULL WHERE id = :id",
        id=bought.id,
    )
    [violation] = i6(meter)
    assert violation.subject == bought.id
    assert "failed purchase of 1100 credits credited by 1 transactions" in violation.message


def test_a_second_purchase_transaction_is_found(meter: CreditMeter, bought: Purchase) -> None:
    with meter.db.engine.begin() as conn:
        conn.execute(
            ledger_transactions.insert().values(
                id="txn_again",
                account_id="acme",
                type="purchase",
                amount=0,
                balance_before=0,
                balance_after=0,
                description="the same purchase, credited again",
                purchase_id=bought.id,
                metadata={},
                created_at=datetime.now(UTC),
            )
        )
    [violation] = i6(meter)
    assert "credited by 2 transactions" in violation.message


def test_a_fulfilled_purchase_with_no_purchase_transaction_is_found(
    meter: CreditMeter, bought: Purchase
) -> None:
    tamper(
        meter,
        "UPDATE ledger_transactions SET type = 'grant' WHERE id = :txn",
        txn=bought.transaction_id,
    )
    [violation] = i6(meter)
    assert "credited by 0 transactions" in violation.message


def test_a_clawback_that_disagrees_with_its_reversals_is_found(
    meter: CreditMeter, bought: Purchase
) -> None:
    tamper(
        meter,
        "UPDATE purchases SET credits_clawed_back = credits_clawed_back + 1 WHERE id = :id",
        id=bought.id,
    )
    [violation] = i6(meter)
    assert "reversals took back 366, it says 367" in violation.message


def test_a_refunded_purchase_not_clawed_back_in_full_is_found(
    meter: CreditMeter, bought: Purchase
) -> None:
    tamper(
        meter,
        "UPDATE purchases SET status = 'refunded', amount_refunded = amount_paid WHERE id = :id",
        id=bought.id,
    )
    [violation] = i6(meter)
    assert violation.subject == bought.id


def test_a_purchase_transaction_of_no_purchase_is_found(
    meter: CreditMeter, bought: Purchase
) -> None:
    tamper(
        meter,
        "UPDATE ledger_transactions SET purchase_id = 'pur_nobody'"
        " WHERE purchase_id = :id AND type = 'reversal'",
        id=bought.id,
    )
    subjects = {v.subject for v in i6(meter)}
    assert bought.id in subjects  # its reversal is gone
    assert len(subjects) == 2  # and the reversal credits a purchase that does not exist


def test_an_event_id_is_stored_once(meter: CreditMeter, bought: Purchase) -> None:
    [event, *_] = meter.payment_events()
    with pytest.raises(IntegrityError), meter.db.engine.begin() as conn:
        conn.execute(
            payment_events.insert().values(
                id=event["id"],
                provider="dev",
                type="checkout.session.completed",
                payload="{}",
                status="received",
                received_at=datetime.now(UTC),
            )
        )
    with meter.db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(payment_events)).scalar() == 2
