"""The meter against a model of its grants and holds in plain Python (DESIGN §3–5).

A hypothesis state machine grants, charges, authorizes, settles, releases, refunds and
moves the clock on one account of a real ``CreditMeter`` (a new database per run, on
each engine, made from the session's migrated template), and does the same to a
dictionary of grants and holds that follows the documented rules: charges draw in
consumption order (lower priority number first, the feature's own pool before ``*``,
soonest expiry, oldest), a settle draws from the held grants first and then from any
other, expired credits leave the balance. After every step the meter's available and
held credits are the model's and the books verify.
"""

from __future__ import annotations

import calendar
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from creditmeter import CreditMeter, HoldNotPending, InsufficientCredits, InvalidRequest
from creditmeter.core.records import Transaction
from creditmeter.core.types import ANY_POOL, DEFAULT_PRIORITY, GrantSource
from tests import templates
from tests.conftest import ENGINES, Clock, postgres_schema_url

ACCOUNT = "acme"
START = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
FEATURE_POOLS = {"chat": "chat", "image": "image"}
ALLOWANCES = {"chat": 40, ANY_POOL: 25}
"""The plan's allowance per pool; the amounts differ, so a new grant's pool shows in it."""
WELCOME_BONUS = 15

MODEL_SETTINGS = settings(
    max_examples=25,
    stateful_step_count=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def cost(feature: str, units: int) -> int:
    """What the price book below charges for ``units`` of a feature."""
    return math.ceil(units / 2) if feature == "chat" else 7 * units


def usage_of(feature: str, units: int) -> dict[str, int]:
    return {"tokens": units} if feature == "chat" else {"images": units}


def month_containing(at: datetime) -> tuple[datetime, datetime]:
    start = at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    days = calendar.monthrange(start.year, start.month)[1]
    return start, start + timedelta(days=days)


Template = Path | templates.PostgresqlTemplate
"""The session's migrated template of an engine (tests/conftest.py)."""


class ScratchDatabase:
    """A migrated database for one run, made from the template: a copy of the SQLite file,
    or a new PostgreSQL schema made by the template's statements."""

    def __init__(self, template: Template, directory: Path) -> None:
        self.template = template
        self.path = directory / f"{templates.new_schema_name('m')}.db"
        self.schema = ""
        if isinstance(template, Path):
            self.url = templates.copy_sqlite_template(template, self.path)
            return
        self.schema = templates.create_postgresql_schema(
            template.admin, template.statements, prefix="m"
        )
        self.url = postgres_schema_url(self.schema)

    def drop(self) -> None:
        if isinstance(self.template, Path):
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
            return
        templates.drop_postgresql_schema(self.template.admin, self.schema)


@dataclass
class ModelGrant:
    id: str
    pool: str
    priority: int
    remaining: int
    expires_at: datetime | None
    created_at: datetime
    held: int = 0

    @property
    def free(self) -> int:
        return self.remaining - self.held

    def is_active(self, at: datetime) -> bool:
        return self.expires_at is None or at < self.expires_at


@dataclass
class ModelHold:
    id: str
    feature: str
    credits: int
    allocations: list[tuple[str, int]]
    expires_at: datetime


@dataclass
class ModelUsage:
    id: str
    draws: list[tuple[str, int]] = field(default_factory=list)
    refunded: bool = False


def merged(draws: Iterable[tuple[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for grant_id, credits in draws:
        total[grant_id] = total.get(grant_id, 0) + credits
    return total


class MeterModel(RuleBasedStateMachine):
    def __init__(self, template: Template, directory: Path) -> None:
        super().__init__()
        self.scratch = ScratchDatabase(template, directory)
        self.clock = Clock(START)
        self.meter = CreditMeter(self.scratch.url, clock=self.clock)
        self.grants: dict[str, ModelGrant] = {}
        self.holds: dict[str, ModelHold] = {}
        self.finished_holds: list[str] = []
        self.usages: list[ModelUsage] = []
        self.period_start, self.period_end = month_containing(START)
        try:
            self.open_the_account()
        except BaseException:
            self.teardown()
            raise

    def open_the_account(self) -> None:
        """The price book, a plan with a pool's and an all-pools allowance, a welcome bonus,
        and the account, whose first grants the model learns from its ledger."""
        self.meter.put_feature("chat", rates={"tokens": "0.5"}, pool="chat")
        self.meter.put_feature("image", rates={"images": 7}, pool="image")
        self.meter.put_plan("team", allowances=ALLOWANCES)
        self.meter.change_settings({"welcome_bonus": WELCOME_BONUS}, changed_by="model")
        self.meter.create_account(ACCOUNT, plan="team")
        for txn in self.meter.transactions(ACCOUNT).data:
            if txn.type.value == "allocation":
                self.learn_allowance(txn)
            else:
                (leg,) = [p for p in txn.postings if p.grant_id is not None]
                assert leg.grant_id is not None
                assert leg.amount == WELCOME_BONUS
                self.add_grant(
                    leg.grant_id, ANY_POOL, DEFAULT_PRIORITY[GrantSource.BONUS], leg.amount
                )

    def teardown(self) -> None:
        self.meter.close()
        self.scratch.drop()

    # The model.

    @property
    def now(self) -> datetime:
        return self.clock.now

    def add_grant(
        self,
        grant_id: str,
        pool: str,
        priority: int,
        credits: int,
        expires_at: datetime | None = None,
    ) -> None:
        assert grant_id not in self.grants
        self.grants[grant_id] = ModelGrant(grant_id, pool, priority, credits, expires_at, self.now)

    def learn_allowance(self, txn: Transaction) -> None:
        """The allowance grants of the current period, told apart by their amounts."""
        pools = {credits: pool for pool, credits in ALLOWANCES.items()}
        legs = [p for p in txn.postings if p.grant_id is not None]
        assert sorted(p.amount for p in legs) == sorted(ALLOWANCES.values())
        for leg in legs:
            assert leg.grant_id is not None
            self.add_grant(
                leg.grant_id,
                pools[leg.amount],
                DEFAULT_PRIORITY[GrantSource.ALLOWANCE],
                leg.amount,
                self.period_end,
            )

    def order(self, pool: str, taken: Mapping[str, int] | None = None) -> list[ModelGrant]:
        """The grants a charge of ``pool`` may draw now, in the documented order."""
        taken = taken or {}
        usable = [
            g
            for g in self.grants.values()
            if g.free - taken.get(g.id, 0) > 0
            and g.is_active(self.now)
            and g.pool in (pool, ANY_POOL)
        ]
        never = datetime.max.replace(tzinfo=UTC)
        return sorted(
            usable,
            key=lambda g: (
                g.priority,
                g.pool == ANY_POOL,
                g.expires_at or never,
                g.created_at,
                g.id,
            ),
        )

    def plan_draws(
        self, pool: str, credits: int, taken: Mapping[str, int] | None = None
    ) -> tuple[list[tuple[str, int]], int]:
        taken = taken or {}
        draws: list[tuple[str, int]] = []
        needed = credits
        for g in self.order(pool, taken):
            take = min(g.free - taken.get(g.id, 0), needed)
            if take > 0:
                draws.append((g.id, take))
                needed -= take
        return draws, needed

    def draw(self, draws: Iterable[tuple[str, int]]) -> None:
        for grant_id, credits in draws:
            self.grants[grant_id].remaining -= credits
            assert self.grants[grant_id].free >= 0

    def unreserve(self, hold: ModelHold) -> None:
        for grant_id, credits in hold.allocations:
            self.grants[grant_id].held -= credits

    def expire_grants(self) -> None:
        for g in self.grants.values():
            if not g.is_active(self.now) and g.free > 0:
                g.remaining = g.held

    def available(self, pool: str | None = None) -> int:
        if pool is None:
            return sum(g.free for g in self.grants.values())
        return sum(g.free for g in self.order(pool))

    def held(self) -> int:
        return sum(g.held for g in self.grants.values())

    def finish(self, hold_id: str) -> ModelHold:
        hold = self.holds.pop(hold_id)
        self.unreserve(hold)
        self.finished_holds.append(hold_id)
        return hold

    # Rules.

    @rule(
        amount=st.integers(1, 60),
        source=st.sampled_from(["admin", "purchase", "promotional"]),
        pool=st.sampled_from([None, "chat", "image"]),
        priority=st.sampled_from([None, 5, 25, 45]),
        lifetime=st.sampled_from([None, timedelta(hours=1), timedelta(days=3), timedelta(days=45)]),
    )
    def grant(
        self,
        amount: int,
        source: str,
        pool: str | None,
        priority: int | None,
        lifetime: timedelta | None,
    ) -> None:
        expires_at = None if lifetime is None else self.now + lifetime
        result = self.meter.grant(
            ACCOUNT, amount, source=source, pool=pool, priority=priority, expires_at=expires_at
        )
        chosen = DEFAULT_PRIORITY[GrantSource(source)] if priority is None else priority
        self.add_grant(result.grant_id, pool or ANY_POOL, chosen, amount, expires_at)
        assert result.available_after == self.available()

    @rule(
        feature=st.sampled_from(sorted(FEATURE_POOLS)),
        units=st.integers(0, 30),
        by_usage=st.booleans(),
    )
    def charge(self, feature: str, units: int, by_usage: bool) -> None:
        if by_usage and feature == "image":
            units %= 5
        credits = cost(feature, units) if by_usage else units
        usage = usage_of(feature, units) if by_usage else None
        pool = FEATURE_POOLS[feature]
        if self.available(pool) < credits:
            with pytest.raises(InsufficientCredits):
                self.meter.charge(
                    ACCOUNT, feature, usage=usage, credits=None if by_usage else credits
                )
            return
        charge = self.meter.charge(
            ACCOUNT, feature, usage=usage, credits=None if by_usage else credits
        )
        draws, short = self.plan_draws(pool, credits)
        assert short == 0
        self.draw(draws)
        self.usages.append(ModelUsage(charge.usage_id, draws))
        assert (charge.credits, charge.charged, charge.uncollected) == (credits, credits, 0)
        assert charge.available_after == self.available()

    @rule(
        feature=st.sampled_from(sorted(FEATURE_POOLS)),
        units=st.integers(0, 30),
        by_usage=st.booleans(),
        ttl=st.sampled_from([timedelta(minutes=5), timedelta(hours=1), timedelta(hours=20)]),
    )
    def authorize(self, feature: str, units: int, by_usage: bool, ttl: timedelta) -> None:
        if by_usage and feature == "image":
            units %= 5
        credits = cost(feature, units) if by_usage else units
        estimate = usage_of(feature, units) if by_usage else None
        draws, short = self.plan_draws(FEATURE_POOLS[feature], credits)
        if short:
            with pytest.raises(InsufficientCredits):
                self.meter.authorize(
                    ACCOUNT,
                    feature,
                    estimate=estimate,
                    credits=None if by_usage else credits,
                    ttl=ttl,
                )
            return
        hold = self.meter.authorize(
            ACCOUNT, feature, estimate=estimate, credits=None if by_usage else credits, ttl=ttl
        )
        for grant_id, reserved in draws:
            self.grants[grant_id].held += reserved
        self.holds[hold.id] = ModelHold(hold.id, feature, credits, draws, self.now + ttl)
        assert (hold.credits, hold.reserved, hold.expires_at) == (credits, credits, self.now + ttl)

    @precondition(lambda self: self.holds)
    @rule(
        data=st.data(),
        how=st.sampled_from(["estimate", "credits", "usage", "failed"]),
        units=st.integers(0, 40),
    )
    def settle(self, data: st.DataObject, how: str, units: int) -> None:
        hold_id = data.draw(st.sampled_from(sorted(self.holds)), label="hold")
        feature = self.holds[hold_id].feature
        if feature == "image":
            units %= 6
        if how == "estimate":
            charge = self.meter.settle(hold_id)
            actual = self.holds[hold_id].credits
        elif how == "credits":
            charge = self.meter.settle(hold_id, credits=units)
            actual = units
        elif how == "usage":
            charge = self.meter.settle(hold_id, usage=usage_of(feature, units))
            actual = cost(feature, units)
        else:
            charge = self.meter.settle(hold_id, success=False)
            actual = 0
        hold = self.finish(hold_id)
        draws: list[tuple[str, int]] = []
        short = actual
        for grant_id, reserved in hold.allocations:
            take = min(reserved, short)
            if take:
                draws.append((grant_id, take))
                short -= take
        more, short = self.plan_draws(FEATURE_POOLS[feature], short, merged(draws))
        draws += more
        self.draw(draws)
        self.expire_grants()
        self.usages.append(ModelUsage(charge.usage_id, draws))
        assert (charge.credits, charge.charged, charge.uncollected) == (
            actual,
            actual - short,
            short,
        )
        assert charge.hold_id == hold_id
        assert self.meter.hold(hold_id).status.value == "settled"

    @precondition(lambda self: self.holds)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        hold_id = data.draw(st.sampled_from(sorted(self.holds)), label="hold")
        released = self.meter.release(hold_id)
        self.finish(hold_id)
        self.expire_grants()
        assert released.status.value == "released"

    @precondition(lambda self: self.finished_holds)
    @rule(data=st.data(), settling=st.booleans())
    def finish_a_finished_hold(self, data: st.DataObject, settling: bool) -> None:
        hold_id = data.draw(st.sampled_from(self.finished_holds), label="finished hold")
        if settling:
            with pytest.raises(HoldNotPending):
                self.meter.settle(hold_id)
        else:
            with pytest.raises(HoldNotPending):
                self.meter.release(hold_id)

    @precondition(lambda self: self.usages)
    @rule(data=st.data())
    def refund(self, data: st.DataObject) -> None:
        usage = data.draw(st.sampled_from(self.usages), label="usage")
        if usage.refunded or not usage.draws:
            with pytest.raises(InvalidRequest):
                self.meter.refund(ACCOUNT, usage_id=usage.id)
            return
        txn = self.meter.refund(ACCOUNT, usage_id=usage.id)
        usage.refunded = True
        to_new_grant = 0
        for grant_id, credits in merged(usage.draws).items():
            g = self.grants[grant_id]
            if g.is_active(self.now):
                g.remaining += credits
            else:
                to_new_grant += credits
        new = {p.grant_id for p in txn.postings if p.grant_id is not None} - set(self.grants)
        if to_new_grant:
            (grant_id,) = new
            self.add_grant(grant_id, ANY_POOL, DEFAULT_PRIORITY[GrantSource.REFUND], to_new_grant)
        else:
            assert not new
        assert txn.amount == sum(c for _, c in usage.draws)

    @rule(
        step=st.sampled_from(
            [
                timedelta(minutes=10),
                timedelta(hours=2),
                timedelta(days=1),
                timedelta(days=9),
                timedelta(days=25),
            ]
        )
    )
    def advance_the_clock(self, step: timedelta) -> None:
        self.clock.advance(seconds=step.total_seconds())
        for hold in [h for h in self.holds.values() if h.expires_at <= self.now]:
            self.finish(hold.id)
        if self.now >= self.period_end:
            self.period_start, self.period_end = month_containing(self.now)
            self.meter.balance(ACCOUNT)
            newest = self.meter.transactions(ACCOUNT, types=("allocation",), limit=1).data[0]
            assert newest.created_at == self.period_start
            self.learn_allowance(newest)
        self.expire_grants()

    @rule()
    def sweep(self) -> None:
        self.meter.sweep()

    # What must hold after every step.

    @invariant()
    def balance_is_the_models(self) -> None:
        balance = self.meter.balance(ACCOUNT)
        assert (balance.available, balance.held, balance.debt) == (
            self.available(),
            self.held(),
            0,
        )
        assert (balance.period_start, balance.period_end) == (self.period_start, self.period_end)
        for pool, pool_balance in balance.pools.items():
            assert pool_balance.available == self.available(pool), pool

    @invariant()
    def books_verify(self) -> None:
        assert self.meter.verify() == []


@pytest.mark.parametrize("engine", ENGINES)
def test_meter_behaves_like_the_model(
    engine: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    template: Template = request.getfixturevalue(f"{engine}_template")

    class OnThisEngine(MeterModel):
        def __init__(self) -> None:
            super().__init__(template, tmp_path)

    run_state_machine_as_test(OnThisEngine, settings=MODEL_SETTINGS)
