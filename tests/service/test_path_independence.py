"""What an account ends up with does not depend on who looked at it, or when (DESIGN §7).

Hypothesis draws a schedule of usage, holds, grants and clock jumps over several months
and runs it twice, each time in a new database of the engine: once read every day, with
the drawn reads and sweeps between the steps, and once with no reads and no sweeps. Every
step answers the same in both (a charge refused in one is refused in the other), and at
the end both accounts hold the same credits, owe the same debt and have the same ledger
totals by transaction type, and the books verify.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from creditmeter import CreditMeter, HoldNotPending, InsufficientCredits
from tests.conftest import ENGINES, Clock
from tests.service.test_model import ScratchDatabase, Template

START = datetime(2026, 1, 20, 9, tzinfo=UTC)
END = datetime(2026, 5, 3, tzinfo=UTC)
ACCOUNT = "acme"


@dataclass(frozen=True)
class Advance:
    hours: int


@dataclass(frozen=True)
class Charge:
    credits: int


@dataclass(frozen=True)
class Authorize:
    credits: int
    ttl_hours: int


@dataclass(frozen=True)
class Settle:
    used: int | None
    """``None``: release the hold."""


@dataclass(frozen=True)
class Grant:
    credits: int
    days: int


@dataclass(frozen=True)
class Look:
    sweep: bool
    """A sweep of every account due, or a read of the account's balance."""


Step = Advance | Charge | Authorize | Settle | Grant | Look

steps = st.one_of(
    st.builds(Advance, st.sampled_from([1, 2, 6, 20, 24 * 3, 24 * 9, 24 * 17, 24 * 33])),
    st.builds(Charge, st.integers(1, 90)),
    st.builds(Authorize, st.integers(1, 90), st.sampled_from([1, 3, 24])),
    st.builds(Settle, st.none() | st.integers(0, 90)),
    st.builds(Grant, st.integers(1, 60), st.sampled_from([2, 20, 45])),
    st.builds(Look, st.booleans()),
)


def run(template: Template, directory: Path, schedule: list[Step], *, looking: bool) -> object:
    """Everything the schedule's steps answered, and what the account ends up with."""
    database = ScratchDatabase(template, directory)
    clock = Clock(START)
    answers: list[object] = []
    try:
        with CreditMeter(database.url, clock=clock) as meter:
            meter.put_plan("monthly", allowances={"*": 100}, rollover_cap=50)
            meter.put_feature("chat", rates={"tokens": 1})
            meter.create_account(ACCOUNT, plan="monthly", overdraft_limit=20)
            holds: list[str] = []
            for step in schedule:
                match step:
                    case Advance(hours):
                        advance(meter, clock, clock.now + timedelta(hours=hours), looking)
                    case Charge(credits):
                        try:
                            answers.append(meter.charge(ACCOUNT, "chat", credits=credits).charged)
                        except InsufficientCredits as refused:
                            answers.append(("refused", refused.available))
                    case Authorize(credits, ttl_hours):
                        try:
                            hold = meter.authorize(
                                ACCOUNT, "chat", credits=credits, ttl=timedelta(hours=ttl_hours)
                            )
                            holds.append(hold.id)
                            answers.append(hold.credits)
                        except InsufficientCredits as refused:
                            answers.append(("refused", refused.available))
                    case Settle(used) if holds:
                        hold_id = holds.pop(0)
                        try:
                            if used is None:
                                answers.append(meter.release(hold_id).status.value)
                            else:
                                answers.append(meter.settle(hold_id, credits=used).charged)
                        except HoldNotPending as finished:
                            answers.append(("not pending", finished.status))
                    case Grant(credits, days):
                        expires_at = clock.now + timedelta(days=days)
                        answers.append(
                            meter.grant(
                                ACCOUNT, credits, source="promotional", expires_at=expires_at
                            ).amount
                        )
                    case Look(sweep) if looking:
                        if sweep:
                            meter.sweep()
                        else:
                            meter.balance(ACCOUNT)
            advance(meter, clock, END, looking)
            balance = meter.balance(ACCOUNT)
            totals: Counter[str] = Counter()
            for txn in meter.iter_transactions(ACCOUNT):
                totals[txn.type.value] += txn.amount
            assert meter.verify() == []
            return answers, (balance.available, balance.held, balance.debt), dict(totals)
    finally:
        database.drop()


def advance(meter: CreditMeter, clock: Clock, to: datetime, looking: bool) -> None:
    """Move the clock to ``to``; when ``looking``, a day at a time, reading the balance
    after each day."""
    while looking and clock.now + timedelta(days=1) < to:
        clock.advance(days=1)
        meter.balance(ACCOUNT)
    clock.now = to


@pytest.mark.parametrize("engine", ENGINES)
def test_reads_and_sweeps_change_nothing_an_account_ends_up_with(
    engine: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    template: Template = request.getfixturevalue(f"{engine}_template")

    @settings(
        max_examples=20,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(st.lists(steps, min_size=5, max_size=30))
    def same_either_way(schedule: list[Step]) -> None:
        looked = run(template, tmp_path, schedule, looking=True)
        unlooked = run(template, tmp_path, schedule, looking=False)
        assert looked == unlooked

    same_either_way()
