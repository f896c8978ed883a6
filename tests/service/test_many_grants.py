"""An account with more live grants than a use case loads with its lock is read through
the order indexes, only as far as each use case needs: every outcome is the same as on
an account whose grants are all in memory."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from creditmeter import CreditMeter, InsufficientCredits
from creditmeter.store import grants as grants_store
from tests.conftest import Clock


def _scenario(meter: CreditMeter, clock: Clock, account: str) -> dict[str, Any]:
    """Grants of every kind the consumption order sorts by, then operations that draw
    across many of them; what they returned and what each grant has left."""
    now = clock()
    meter.create_account(account)
    meter.grant(account, 50, source="purchase", reference="lasting")
    meter.grant(account, 30, source="promotional", expires_at=now + timedelta(days=10))
    meter.grant(account, 20, pool="chat", expires_at=now + timedelta(days=5), reference="own")
    meter.grant(account, 40, source="bonus", expires_at=now + timedelta(days=5))
    meter.grant(account, 10, source="purchase", pool="images", reference="other pool")
    meter.grant(account, 100, effective_at=now + timedelta(days=1), reference="later")
    meter.grant(account, 60, expires_at=now + timedelta(days=2), reference="ends soon")
    for i in range(12):
        meter.grant(account, 5, source="purchase", reference=f"small {i}")
    outcomes: list[Any] = []
    charge = meter.charge(account, "chat", credits=45)
    outcomes.append((charge.charged, charge.debited, charge.available_after))
    hold = meter.authorize(account, "chat", credits=70)
    outcomes.append((hold.credits, hold.reserved))
    settled = meter.settle(hold.id, credits=80)
    outcomes.append((settled.charged, settled.debited, settled.available_after))
    charge = meter.charge(account, "chat", credits=120)
    outcomes.append((charge.charged, charge.debited, charge.available_after))
    balance = meter.balance(account)
    outcomes.append((balance.available, balance.purchased_available, balance.held))
    clock.advance(days=3)  # the grant that ends soon lapses; "later" begins
    hold = meter.authorize(account, "chat", credits=25)
    released = meter.release(hold.id)
    outcomes.append((hold.reserved, released.status))
    with pytest.raises(InsufficientCredits) as short:  # counts every grant it may draw
        meter.charge(account, "chat", credits=500)
    refusal = short.value
    outcomes.append((refusal.available, refusal.purchased_available, refusal.allowance))
    charge = meter.charge(account, "chat", credits=70)
    outcomes.append((charge.charged, charge.debited, charge.available_after))
    left = {
        (g.reference or g.source, g.expires_at): (g.remaining, g.held)
        for g in meter.grants(account, include_spent=True)
    }
    return {"outcomes": outcomes, "left": left, "balance": meter.balance(account)}


@pytest.mark.parametrize("cap", [0, 2])
def test_outcomes_do_not_depend_on_how_many_grants_are_loaded(
    meter: CreditMeter, clock: Clock, monkeypatch: pytest.MonkeyPatch, cap: int
) -> None:
    meter.put_feature("chat", rates={"tokens": 1}, pool="chat")
    start = clock()
    in_memory = _scenario(meter, clock, "in_memory")
    clock.now = start
    monkeypatch.setattr(grants_store, "LOAD_CAP", cap)
    through_indexes = _scenario(meter, clock, "through_indexes")

    assert through_indexes["outcomes"] == in_memory["outcomes"]
    assert through_indexes["left"] == in_memory["left"]
    a, b = in_memory["balance"], through_indexes["balance"]
    assert (b.available, b.purchased_available, b.held, b.debt) == (
        a.available,
        a.purchased_available,
        a.held,
        a.debt,
    )
    assert meter.verify() == []
