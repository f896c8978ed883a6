"""An account with more live grants than a use case loads with its lock is read through
the order indexes, only as far as each use case needs: every outcome is the same as on
an account whose grants are all in memory, and a balance, read from running totals, is
what the grants hold."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from creditmeter import CreditMeter, InsufficientCredits
from creditmeter.core.grants import drawable
from creditmeter.core.pricing import pool_matches
from creditmeter.core.types import PURCHASED_SOURCES
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


def _as_grants_say(meter: CreditMeter, account: str, clock: Clock) -> dict[str, Any]:
    """What a balance reports, summed over the account's grants as they stand."""
    active = drawable(meter.grants(account, include_spent=True), None, clock())
    return {
        "purchased": sum(g.free for g in active if g.source in PURCHASED_SOURCES),
        "pools": {
            pool: sum(g.free for g in active if pool_matches(g.pool, pool))
            for pool in ("*", "chat")
        },
    }


def _as_balance_says(meter: CreditMeter, account: str) -> dict[str, Any]:
    balance = meter.balance(account)
    return {
        "purchased": balance.purchased_available,
        "pools": {pool: b.available for pool, b in balance.pools.items()},
    }


@pytest.mark.parametrize("cap", [0, grants_store.LOAD_CAP])
def test_a_balance_is_what_the_grants_hold_through_every_change(
    meter: CreditMeter, clock: Clock, monkeypatch: pytest.MonkeyPatch, cap: int
) -> None:
    """The running totals a balance reads stay what the grants hold free through grants,
    charges, holds, voids, refunds, grants that begin later and grants that end (read at
    a time past their end, before any sweep)."""
    monkeypatch.setattr(grants_store, "LOAD_CAP", cap)
    meter.put_feature("chat", rates={"tokens": 1}, pool="chat")
    meter.put_plan("team", allowances={"*": 40, "chat": 30})
    meter.create_account("acme", plan="team")
    now = clock()

    def same() -> None:
        assert _as_balance_says(meter, "acme") == _as_grants_say(meter, "acme", clock)
        assert meter.verify() == []

    for i in range(12):
        source = "purchase" if i % 2 else "promotional"
        meter.grant("acme", 5 + i, source=source, expires_at=now + timedelta(hours=i + 1))
    meter.grant("acme", 25, pool="chat", effective_at=now + timedelta(hours=3))
    doomed = meter.grant("acme", 9, source="bonus").grant_id
    same()
    charge = meter.charge("acme", "chat", credits=100)
    same()
    hold = meter.authorize("acme", "chat", credits=30)
    same()
    meter.settle(hold.id, credits=12)
    same()
    meter.release(meter.authorize("acme", "chat", credits=8).id)
    meter.void_grant("acme", doomed, reason="given by mistake")
    same()
    meter.refund("acme", usage_id=charge.usage_id)
    meter.refund("acme", amount=4)
    same()
    held = meter.authorize("acme", "chat", credits=60, ttl=timedelta(hours=6))
    clock.advance(hours=4)  # grants end (the held part waits), the later one begins
    same()
    meter.settle(held.id, credits=20)
    same()
    clock.advance(days=40)  # into the next period: every dated grant has ended
    same()
    meter.sweep()
    same()
