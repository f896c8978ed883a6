"""Grants and the consumption order (DESIGN §3).

A charge draws from the active grants that match its pool: lower priority number first,
then a grant of the feature's own pool before a grant for every pool, then the grant that
expires soonest (never-expiring last), then the oldest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from creditmeter.core.errors import AllowanceState
from creditmeter.core.pricing import pool_matches
from creditmeter.core.types import (
    PURCHASED_SOURCES,
    AccountId,
    Credits,
    GrantId,
    GrantSource,
    PoolName,
)


@dataclass(frozen=True)
class Grant:
    id: GrantId
    account_id: AccountId
    source: GrantSource
    pool: PoolName
    priority: int
    amount: Credits
    remaining: Credits
    held: Credits
    effective_at: datetime
    expires_at: datetime | None
    created_at: datetime
    period_start: datetime | None = None
    reference: str | None = None
    voided_at: datetime | None = None
    """When an admin voided it: it holds nothing since and is never drawn or refilled."""

    @property
    def free(self) -> Credits:
        """What is neither spent nor reserved by a pending hold."""
        return self.remaining - self.held

    def moved(self, *, amount: Credits = 0, remaining: Credits = 0, held: Credits = 0) -> Grant:
        """This grant with its counts moved by a posting or a hold. Built field by field:
        a charge moves a grant or two, and ``dataclasses.replace`` costs twice as much."""
        return Grant(
            id=self.id,
            account_id=self.account_id,
            source=self.source,
            pool=self.pool,
            priority=self.priority,
            amount=self.amount + amount,
            remaining=self.remaining + remaining,
            held=self.held + held,
            effective_at=self.effective_at,
            expires_at=self.expires_at,
            created_at=self.created_at,
            period_start=self.period_start,
            reference=self.reference,
            voided_at=self.voided_at,
        )

    def is_active(self, at: datetime) -> bool:
        return (
            self.voided_at is None
            and self.effective_at <= at
            and (self.expires_at is None or at < self.expires_at)
        )

    def is_expired(self, at: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= at


@dataclass(frozen=True)
class Draw:
    """Credits taken from (or reserved against) one grant."""

    grant_id: GrantId
    credits: Credits


def drawable(grants: Iterable[Grant], pool: PoolName | None, at: datetime) -> list[Grant]:
    """The grants a charge of ``pool`` (``None``: of any pool) may draw at ``at``."""
    return [
        g
        for g in grants
        if g.free > 0 and g.is_active(at) and (pool is None or pool_matches(g.pool, pool))
    ]


def consumption_order(grants: Iterable[Grant], pool: PoolName | None, at: datetime) -> list[Grant]:
    """The grants a charge of ``pool`` (``None``: of any pool) may draw at ``at``, in the
    order it draws them."""
    return sorted(drawable(grants, pool, at), key=order_key(pool))


OrderKey = tuple[int, bool, bool, datetime, datetime, str]


def order_key(pool: PoolName | None) -> Callable[[Grant], OrderKey]:
    """The consumption order's key of a grant for a charge of ``pool``: a total order
    (the grant's id breaks ties)."""
    return lambda g: (
        g.priority,
        g.pool != pool,
        g.expires_at is None,
        g.expires_at or g.created_at,
        g.created_at,
        g.id,
    )


def plan_draws(ordered: Iterable[Grant], credits: Credits) -> tuple[list[Draw], Credits]:
    """Draws covering ``credits`` from grants in order, and the part they could not cover."""
    draws: list[Draw] = []
    needed = credits
    if needed == 0:
        return draws, needed
    for grant in ordered:  # an iterable that may read grants as it goes: no more than needed
        take = min(grant.free, needed)
        if take > 0:
            draws.append(Draw(grant.id, take))
            needed -= take
            if needed == 0:
                break
    return draws, needed


def free_credits(grants: Iterable[Grant], pool: PoolName, at: datetime) -> Credits:
    return sum(g.free for g in drawable(grants, pool, at))


def purchased_free(grants: Iterable[Grant], pool: PoolName, at: datetime) -> Credits:
    return sum(g.free for g in drawable(grants, pool, at) if g.source in PURCHASED_SOURCES)


def allowance_state(
    grants: Iterable[Grant],
    period_start: datetime,
    pool: PoolName | None,
    unlimited_used: Credits | None = None,
) -> AllowanceState:
    """Used and limit of the period's allowance, for one pool (and ``*``) or all pools.

    ``unlimited_used`` is given when the allowance is unlimited: the credits recorded in the
    period, which no grant shows because none is drawn.
    """
    current = [
        g
        for g in grants
        if g.source is GrantSource.ALLOWANCE
        and g.period_start == period_start
        and (pool is None or pool_matches(g.pool, pool))
    ]
    if unlimited_used is not None:
        return AllowanceState(used=unlimited_used, limit=None, percentage=None)
    used = sum(g.amount - g.remaining for g in current)
    limit = sum(g.amount for g in current)
    percentage = used * 100 // limit if limit > 0 else None
    return AllowanceState(used=used, limit=limit, percentage=percentage)


def merge_draws(draws: Iterable[Draw]) -> list[Draw]:
    """Draws with one entry per grant, in the order each grant first appears."""
    merged: dict[GrantId, Credits] = {}
    for d in draws:
        merged[d.grant_id] = merged.get(d.grant_id, 0) + d.credits
    return [Draw(g, c) for g, c in merged.items() if c]
