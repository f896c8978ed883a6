"""The consumption order, the split of a charge over grants, and allowance state."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from creditmeter.core.errors import AllowanceState
from creditmeter.core.grants import (
    Draw,
    Grant,
    allowance_state,
    consumption_order,
    free_credits,
    merge_draws,
    plan_draws,
    purchased_free,
)
from creditmeter.core.types import GrantSource

NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)
PERIOD = datetime(2026, 3, 1, tzinfo=UTC)


def grant(
    grant_id: str,
    amount: int = 100,
    *,
    remaining: int | None = None,
    held: int = 0,
    source: GrantSource = GrantSource.PURCHASE,
    pool: str = "*",
    priority: int = 40,
    effective_at: datetime = NOW - timedelta(days=5),
    expires_at: datetime | None = None,
    created_at: datetime = NOW - timedelta(days=5),
    period_start: datetime | None = None,
) -> Grant:
    return Grant(
        id=grant_id,
        account_id="acme",
        source=source,
        pool=pool,
        priority=priority,
        amount=amount,
        remaining=amount if remaining is None else remaining,
        held=held,
        effective_at=effective_at,
        expires_at=expires_at,
        created_at=created_at,
        period_start=period_start,
    )


def ids(grants: list[Grant]) -> list[str]:
    return [g.id for g in grants]


def test_free_is_remaining_less_held() -> None:
    assert grant("g", 100, remaining=60, held=25).free == 35


def test_a_grant_is_active_from_effective_at_until_just_before_expires_at() -> None:
    g = grant("g", effective_at=NOW, expires_at=NOW + timedelta(days=1))
    assert not g.is_active(NOW - timedelta(microseconds=1))
    assert g.is_active(NOW)
    assert g.is_active(NOW + timedelta(days=1) - timedelta(microseconds=1))
    assert not g.is_active(NOW + timedelta(days=1))
    assert not g.is_expired(NOW)
    assert g.is_expired(NOW + timedelta(days=1))
    assert not grant("forever").is_expired(NOW + timedelta(days=10_000))


def test_lower_priority_number_goes_first_whatever_else() -> None:
    grants = [
        grant("purchase", priority=40, pool="llm", expires_at=NOW + timedelta(hours=1)),
        grant("allowance", priority=10, expires_at=NOW + timedelta(days=20)),
        grant("bonus", priority=20, created_at=NOW - timedelta(days=100)),
    ]
    assert ids(consumption_order(grants, "llm", NOW)) == ["allowance", "bonus", "purchase"]


def test_within_a_priority_the_features_own_pool_goes_before_star() -> None:
    grants = [
        grant("star", expires_at=NOW + timedelta(hours=1), created_at=NOW - timedelta(days=9)),
        grant("llm", pool="llm", created_at=NOW - timedelta(days=1)),
    ]
    assert ids(consumption_order(grants, "llm", NOW)) == ["llm", "star"]


def test_soonest_expiry_first_and_never_expiring_last() -> None:
    grants = [
        grant("never", created_at=NOW - timedelta(days=300)),
        grant("month", expires_at=NOW + timedelta(days=30)),
        grant("week", expires_at=NOW + timedelta(days=7)),
        grant("never-newer", created_at=NOW - timedelta(days=1)),
    ]
    assert ids(consumption_order(grants, "llm", NOW)) == ["week", "month", "never", "never-newer"]


def test_same_expiry_oldest_first() -> None:
    expiry = NOW + timedelta(days=3)
    grants = [
        grant("newer", expires_at=expiry, created_at=NOW - timedelta(days=1)),
        grant("older", expires_at=expiry, created_at=NOW - timedelta(days=2)),
    ]
    assert ids(consumption_order(grants, "llm", NOW)) == ["older", "newer"]


def test_never_expiring_grants_go_oldest_first() -> None:
    grants = [
        grant("b", created_at=NOW - timedelta(days=1)),
        grant("a", created_at=NOW - timedelta(days=2)),
        grant("c", created_at=NOW - timedelta(hours=1)),
    ]
    assert ids(consumption_order(grants, "llm", NOW)) == ["a", "b", "c"]


def test_the_default_priorities_put_allowance_then_bonus_then_purchase() -> None:
    grants = [
        grant("purchase", source=GrantSource.PURCHASE, priority=40),
        grant("bonus", source=GrantSource.BONUS, priority=20),
        grant("allowance", source=GrantSource.ALLOWANCE, priority=10),
    ]
    assert ids(consumption_order(grants, "llm", NOW)) == ["allowance", "bonus", "purchase"]


def test_unusable_grants_are_left_out() -> None:
    grants = [
        grant("usable"),
        grant("other-pool", pool="images"),
        grant("not-yet", effective_at=NOW + timedelta(seconds=1)),
        grant("expired", expires_at=NOW),
        grant("long-expired", expires_at=NOW - timedelta(days=1)),
        grant("spent", remaining=0),
        grant("all-held", remaining=40, held=40),
        grant("starts-now", effective_at=NOW),
    ]
    assert set(ids(consumption_order(grants, "llm", NOW))) == {"usable", "starts-now"}


def test_a_charge_of_the_star_pool_draws_only_star_grants() -> None:
    grants = [grant("llm", pool="llm"), grant("star")]
    assert ids(consumption_order(grants, "*", NOW)) == ["star"]


def test_plan_draws_splits_a_charge_across_grants_in_order() -> None:
    ordered = [grant("a", 30), grant("b", 50, held=20), grant("c", 100)]
    draws, short = plan_draws(ordered, 70)
    assert draws == [Draw("a", 30), Draw("b", 30), Draw("c", 10)]
    assert short == 0


def test_plan_draws_from_one_grant_when_it_suffices() -> None:
    draws, short = plan_draws([grant("a", 30), grant("b", 50)], 30)
    assert draws == [Draw("a", 30)]
    assert short == 0


def test_plan_draws_reports_what_it_cannot_cover() -> None:
    draws, short = plan_draws([grant("a", 30), grant("b", 50, remaining=10)], 100)
    assert draws == [Draw("a", 30), Draw("b", 10)]
    assert short == 60


def test_plan_draws_of_nothing_draws_nothing() -> None:
    assert plan_draws([grant("a", 30)], 0) == ([], 0)
    assert plan_draws([], 25) == ([], 25)


def test_plan_draws_skips_a_grant_with_nothing_free() -> None:
    draws, short = plan_draws([grant("a", 30, held=30), grant("b", 50)], 10)
    assert draws == [Draw("b", 10)]
    assert short == 0


def test_free_and_purchased_credits_count_usable_grants_only() -> None:
    grants = [
        grant("allowance", 500, remaining=300, source=GrantSource.ALLOWANCE, priority=10),
        grant("purchase", 1000, held=100, source=GrantSource.PURCHASE),
        grant("recharge", 200, source=GrantSource.AUTO_RECHARGE, pool="llm"),
        grant("images", 700, source=GrantSource.PURCHASE, pool="images"),
        grant("expired", 999, source=GrantSource.PURCHASE, expires_at=NOW),
    ]
    assert free_credits(grants, "llm", NOW) == 300 + 900 + 200
    assert purchased_free(grants, "llm", NOW) == 900 + 200
    assert free_credits(grants, "images", NOW) == 300 + 900 + 700
    assert purchased_free(grants, "images", NOW) == 900 + 700


def test_allowance_state_counts_this_periods_allowance_grants() -> None:
    grants = [
        grant("star", 1000, remaining=250, source=GrantSource.ALLOWANCE, period_start=PERIOD),
        grant(
            "llm",
            200,
            remaining=200,
            source=GrantSource.ALLOWANCE,
            pool="llm",
            period_start=PERIOD,
        ),
        grant(
            "images",
            100,
            remaining=0,
            source=GrantSource.ALLOWANCE,
            pool="images",
            period_start=PERIOD,
        ),
        grant(
            "last-month",
            1000,
            remaining=0,
            source=GrantSource.ALLOWANCE,
            period_start=PERIOD - timedelta(days=28),
        ),
        grant("bought", 5000, remaining=1, source=GrantSource.PURCHASE),
    ]
    assert allowance_state(grants, PERIOD, "llm") == AllowanceState(
        used=750, limit=1200, percentage=62
    )
    assert allowance_state(grants, PERIOD, None) == AllowanceState(
        used=850, limit=1300, percentage=65
    )
    assert allowance_state(grants, PERIOD, "images") == AllowanceState(
        used=850, limit=1100, percentage=77
    )
    assert allowance_state(grants, PERIOD, "llm").remaining == 450


def test_allowance_state_without_allowance_grants_has_no_percentage() -> None:
    state = allowance_state([grant("bought")], PERIOD, "llm")
    assert state == AllowanceState(used=0, limit=0, percentage=None)
    assert state.remaining == 0


def test_allowance_state_of_an_unlimited_allowance_reports_the_usage() -> None:
    state = allowance_state([], PERIOD, "llm", unlimited_used=1234)
    assert state == AllowanceState(used=1234, limit=None, percentage=None)
    assert state.remaining is None


def test_merge_draws_sums_per_grant_in_first_appearance_order() -> None:
    merged = merge_draws([Draw("b", 5), Draw("a", 3), Draw("b", 7), Draw("c", 1), Draw("a", 2)])
    assert merged == [Draw("b", 12), Draw("a", 5), Draw("c", 1)]


def test_merge_draws_drops_grants_that_net_to_zero() -> None:
    assert merge_draws([Draw("a", 4), Draw("b", 1), Draw("a", -4)]) == [Draw("b", 1)]
    assert merge_draws([]) == []


free_grants = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=1000),
        st.integers(min_value=0, max_value=1000),
    ),
    max_size=8,
).map(
    lambda pairs: [
        grant(f"g{i}", max(a, b), remaining=max(a, b), held=min(a, b))
        for i, (a, b) in enumerate(pairs)
    ]
)


@given(ordered=free_grants, need=st.integers(min_value=0, max_value=5000))
def test_plan_draws_never_overdraws_and_covers_what_it_can(ordered: list[Grant], need: int) -> None:
    draws, short = plan_draws(ordered, need)
    free = {g.id: g.free for g in ordered}
    total_free = sum(free.values())
    drawn = sum(d.credits for d in draws)
    assert drawn == min(need, total_free)
    assert short == need - drawn
    assert all(0 < d.credits <= free[d.grant_id] for d in draws)
    assert len({d.grant_id for d in draws}) == len(draws)
    # Draws follow the order, and every grant before the last one drawn is drawn in full.
    order = [g.id for g in ordered if g.free > 0]
    assert [d.grant_id for d in draws] == order[: len(draws)]
    assert all(d.credits == free[d.grant_id] for d in draws[:-1])


priorities = st.sampled_from([10, 20, 40])
expiries = st.one_of(
    st.none(), st.integers(min_value=-2, max_value=5).map(lambda d: NOW + timedelta(days=d))
)


@given(
    specs=st.lists(
        st.tuples(
            priorities,
            st.sampled_from(["*", "llm", "images"]),
            expiries,
            st.integers(min_value=0, max_value=30),
            st.booleans(),
        ),
        max_size=10,
    )
)
def test_consumption_order_is_sorted_by_the_documented_key(
    specs: list[tuple[int, str, datetime | None, int, bool]],
) -> None:
    grants = [
        grant(
            f"g{i:02}",
            remaining=remaining,
            priority=priority,
            pool=pool,
            expires_at=expires_at,
            created_at=NOW - timedelta(days=age),
        )
        for i, (priority, pool, expires_at, age, spent) in enumerate(specs)
        for remaining in [0 if spent else 100]
    ]
    ordered = consumption_order(grants, "llm", NOW)
    assert {g.id for g in ordered} == {
        g.id for g in grants if g.free > 0 and g.is_active(NOW) and g.pool in ("*", "llm")
    }
    for first, second in itertools.pairwise(ordered):
        assert first.priority <= second.priority
        if first.priority < second.priority:
            continue
        assert (first.pool != "llm") <= (second.pool != "llm")
        if first.pool != second.pool:
            continue
        if first.expires_at is None:
            assert second.expires_at is None
        elif second.expires_at is not None:
            assert first.expires_at <= second.expires_at
        if first.expires_at == second.expires_at:
            assert first.created_at <= second.created_at


def test_a_moved_grant_keeps_every_other_field() -> None:
    # Every field set to a value that is not its default, so one left behind shows.
    g = Grant(
        id="g1",
        account_id="acme",
        source=GrantSource.PURCHASE,
        pool="images",
        priority=7,
        amount=100,
        remaining=60,
        held=10,
        effective_at=NOW,
        expires_at=NOW + timedelta(days=30),
        created_at=NOW - timedelta(days=1),
        period_start=PERIOD,
        reference="pi_1",
    )
    expected = replace(g, amount=101, remaining=58, held=13)
    assert g.moved(amount=1, remaining=-2, held=3) == expected
