"""Metering: authorize → settle / release, one-shot charges, and price checks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

from creditmeter.core.errors import (
    AccountSuspended,
    FeatureNotInPlan,
    HoldNotPending,
    InsufficientCredits,
    InvalidRequest,
    NotFound,
    Refusal,
    TotalOutOfRange,
)
from creditmeter.core.grants import (
    Draw,
    allowance_state,
    free_credits,
    plan_draws,
    purchased_free,
)
from creditmeter.core.ids import new_id
from creditmeter.core.metadata import checked
from creditmeter.core.models import catalogue_model
from creditmeter.core.plans import Plan
from creditmeter.core.pricing import (
    Feature,
    Quantity,
    credit_amount,
    normalize_usage,
    price_cost_plus,
    price_feature,
    provider_cost_of,
)
from creditmeter.core.records import Charge, CheckResult, Hold, Refused, UsageRecord
from creditmeter.core.settings import Settings, balance_warnings
from creditmeter.core.types import (
    MAX_PERIOD_USAGE,
    AccountStatus,
    Credits,
    Enforcement,
    HoldStatus,
)
from creditmeter.core.usage import UsageEvent
from creditmeter.service.locked_account import LockedAccount
from creditmeter.service.maintenance import expire_grants, plan_of
from creditmeter.store import catalog, holds, prices, usage
from creditmeter.store.holds import FoundHold
from creditmeter.store.usage import NewUsage


@dataclass(frozen=True)
class Rated:
    """A usage priced under a feature's rule in force."""

    feature: Feature
    quantities: dict[str, Quantity]
    credits: Credits
    unknown_model: bool = False
    """Priced at the feature's default rates: it has none for the model."""
    provider_cost: Decimal | None = None
    """A cost-plus feature's: the usage at the price book's prices for the model, in USD."""
    price_book_version: int | None = None
    """The price-book version of those prices."""


def rate(
    account: LockedAccount,
    settings: Settings,
    feature_key: str,
    usage_: Mapping[str, object] | None,
    credits: object,
    model: str | None,
) -> Rated:
    feature = account.memo(
        ("feature", feature_key), lambda: catalog.get_feature(account.conn, feature_key)
    )
    if feature is None:
        raise NotFound("feature", feature_key)
    if credits is not None:
        if usage_:
            raise InvalidRequest("give usage or credits, not both")
        return Rated(feature, {}, credit_amount(credits, "credits"))
    quantities = normalize_usage(usage_)
    if feature.rule.cost_plus:
        version, usd_per_million = _model_prices(account, model)
        cost_plus = price_cost_plus(
            feature, quantities, model, usd_per_million, settings.credits_per_usd
        )
        return Rated(
            feature,
            quantities,
            cost_plus.credits,
            provider_cost=cost_plus.provider_cost,
            price_book_version=version,
        )
    priced = price_feature(feature, quantities, model)
    return Rated(feature, quantities, priced.credits, priced.unknown_model)


def _model_prices(
    account: LockedAccount, model: str | None
) -> tuple[int | None, dict[str, Decimal] | None]:
    """The latest price-book version and its prices for the catalogue's model that
    ``model`` names, by unit (``None``: none for it)."""
    latest = account.memo(("price_book", ""), lambda: prices.latest(account.conn))
    known = None if model is None else catalogue_model(model)
    if latest is None or known is None:
        return None, None
    provider, model_id = known.split(":", 1)
    found = account.memo(
        ("model_prices", f"{latest.version}:{known}"),
        lambda: prices.prices(account.conn, latest.version, provider=provider, model=model_id),
    )
    if not found:
        return latest.version, None
    return latest.version, {p.unit: p.usd_per_million for p in found}


def _provider_cost(rated: Rated, given: Decimal | None) -> Decimal | None:
    """The provider's cost to record, checked before anything changes: a cost-plus
    feature's computed one (the usage may not give one), else the one given."""
    if rated.provider_cost is None:
        return None if given is None else provider_cost_of(given)
    if given is not None:
        raise InvalidRequest(
            f"feature {rated.feature.key!r} is cost-plus: it computes the provider's cost, "
            "which the usage may not give"
        )
    return provider_cost_of(rated.provider_cost)


def _refusal(account: LockedAccount, plan: Plan | None, feature: Feature) -> Refusal | None:
    """Why this account may not use this feature at all now, if it may not."""
    status = account.row.account.status
    if status is not AccountStatus.ACTIVE:
        return AccountSuspended(account.id, status.value)
    if plan is not None and not plan.allows(feature.key):
        return FeatureNotInPlan(feature.key, plan.key)
    return None


def _shortage(
    account: LockedAccount,
    settings: Settings,
    feature: Feature,
    required: Credits,
    available: Credits,
) -> InsufficientCredits:
    return InsufficientCredits(
        required=required,
        available=available,
        allowance=allowance_state(account.grants, account.row.account.period_start, feature.pool),
        purchased_available=purchased_free(account.grants, feature.pool, account.now),
        upgrade_url=settings.upgrade_url,
    )


def _enforce(settings: Settings, refusal: Refusal | None) -> Refused | None:
    """Raise a refusal when enforcing; report it when observing; ignore it when off."""
    if refusal is None or settings.enforcement is Enforcement.OFF:
        return None
    if settings.enforcement is Enforcement.ENFORCE:
        raise refusal
    return Refused(refusal.code, refusal.message)


def _count_unlimited(account: LockedAccount, pool: str, credits: Credits) -> None:
    """Count a usage of an unlimited allowance, first of what the charge writes: a usage
    that would take the period's count past ``MAX_PERIOD_USAGE`` writes nothing."""
    start = account.row.account.period_start
    if not usage.add_unlimited(account.conn, account.id, pool, start, credits):
        raise TotalOutOfRange(
            f"account {account.id!r} may use at most {MAX_PERIOD_USAGE} credits of the "
            f"unlimited allowance of pool {pool!r} in a period"
        )


def _headroom(account: LockedAccount) -> Credits:
    return max(account.row.account.overdraft_limit - account.row.debt, 0)


def authorize(
    account: LockedAccount,
    settings: Settings,
    rated: Rated,
    *,
    ttl: timedelta,
    model: str | None,
    member: str | None,
    metadata: Mapping[str, Any],
    balancing: bool = False,
) -> Hold:
    """Reserve the estimate's credits from the grants. ``balancing``: when the grants hold
    less (and enforcement is on), reserve what they hold and make the hold for that; it is
    refused only when they hold nothing. Overdraft room never counts: a hold reserves only
    credits that exist."""
    metadata = checked(metadata)
    plan = plan_of(account)
    feature = rated.feature
    refused = _enforce(settings, _refusal(account, plan, feature))
    unlimited = plan is not None and plan.is_unlimited(feature.pool)
    credits, requested = rated.credits, None
    draws: list[Draw] = []
    if not unlimited:
        draws, short = plan_draws(account.in_order(feature.pool), rated.credits)
        available = rated.credits - short
        shrinks = balancing and settings.enforcement is Enforcement.ENFORCE
        if short and shrinks and available:
            credits, requested = available, rated.credits
        elif short:
            shortage = _shortage(account, settings, feature, rated.credits, available)
            refused = _enforce(settings, shortage) or refused
    hold = Hold(
        id=new_id("hold"),
        account_id=account.id,
        feature=feature.key,
        credits=credits,
        reserved=account.reserve(draws),
        status=HoldStatus.PENDING,
        created_at=account.now,
        expires_at=account.now + ttl,
        would_refuse=refused,
        requested=requested,
    )
    account.record_hold(
        holds.NewHold(
            hold,
            pool=feature.pool,
            unlimited=unlimited,
            model=model,
            member=member,
            estimate=_plain(rated.quantities),
            metadata=dict(metadata),
            allocations=draws,
        )
    )
    account.lower_due(hold.expires_at)
    return hold


def _pending(account: LockedAccount, hold: Hold) -> None:
    """Refuse a hold that is no longer pending. The hold was read before its account was
    locked: one past its expiry has been (or is about to be) expired by bringing the
    account up to date, and one that another writer finished in between makes its
    conditional update miss, which undoes the use case and runs it again."""
    if hold.status is not HoldStatus.PENDING:
        raise HoldNotPending(hold.id, hold.status.value)
    if hold.expires_at <= account.now:
        raise HoldNotPending(hold.id, HoldStatus.EXPIRED.value)


def settle(
    account: LockedAccount,
    settings: Settings,
    found: FoundHold,
    usage_: Mapping[str, object] | None,
    credits: int | None,
    *,
    model: str | None,
    member: str | None,
    success: bool,
    metadata: Mapping[str, Any],
    provider_cost: Decimal | None,
) -> Charge:
    """Charge the actual usage: from the held grants first, then any other grant; the
    part no grant covers becomes debt up to the overdraft limit, the rest uncollected."""
    hold, details = found.hold, found.details
    _pending(account, hold)
    metadata = checked({**details["metadata"], **metadata})
    hold_id = hold.id
    model = model or details["model"]
    member = member or details["member"]
    if usage_ is None and credits is None:  # the estimate (or what a balancing hold got) was right
        usage_ = None if hold.requested is not None else details["estimate"] or None
        credits = None if usage_ else hold.credits
    rated = rate(account, settings, hold.feature, usage_, credits, model)
    provider_cost = _provider_cost(rated, provider_cost)
    if not success:
        rated = replace(rated, credits=0)
    allocations = found.allocations
    account.unreserve(allocations)
    charge = _charge(
        account,
        settings,
        rated,
        preferred=allocations,
        unlimited=details["unlimited"],
        model=model,
        member=member,
        success=success,
        metadata=metadata,
        provider_cost=provider_cost,
        hold_id=hold_id,
        would_refuse=None,
    )
    account.finish_hold(holds.Finished(hold_id, HoldStatus.SETTLED, account.now, charge.usage_id))
    expire_grants(account)
    settled = replace(hold, status=HoldStatus.SETTLED, usage_id=charge.usage_id)
    return replace(charge, available_after=account.available, hold=settled)


def release_hold(account: LockedAccount, _: Settings, found: FoundHold) -> Hold:
    """Give all of the hold's credits back: the ``release`` verb."""
    return release(account, found)


def release(account: LockedAccount, found: FoundHold) -> Hold:
    hold = found.hold
    _pending(account, hold)
    account.unreserve(found.allocations)
    account.finish_hold(holds.Finished(hold.id, HoldStatus.RELEASED, account.now))
    expire_grants(account)
    return replace(hold, status=HoldStatus.RELEASED)


def authorize_estimate(
    account: LockedAccount,
    settings: Settings,
    *,
    feature: str,
    estimate: Mapping[str, int | str | Decimal] | None,
    credits: int | None,
    model: str | None,
    member: str | None,
    ttl: timedelta | None,
    metadata: Mapping[str, Any] | None,
    balancing: bool,
) -> Hold:
    """Rate the estimate and reserve its credits for ``ttl`` (by default the settings'
    hold lifetime): the ``authorize`` verb."""
    seconds = settings.default_hold_ttl_seconds if ttl is None else ttl.total_seconds()
    if not 0 < seconds <= settings.max_hold_ttl_seconds:
        raise InvalidRequest(
            f"ttl must be more than 0 and at most {settings.max_hold_ttl_seconds} s"
        )
    rated = rate(account, settings, feature, estimate, credits, model)
    return authorize(
        account,
        settings,
        rated,
        ttl=timedelta(seconds=seconds),
        model=model,
        member=member,
        metadata=metadata or {},
        balancing=balancing,
    )


def charge_usage(account: LockedAccount, settings: Settings, event: UsageEvent) -> Charge:
    """Rate ``event`` and charge it in one step: the ``charge`` verb, and each event of a
    batch."""
    rated = rate(account, settings, event.feature, event.usage, event.credits, event.model)
    return charge(account, settings, rated, event)


def check_usage(
    account: LockedAccount,
    settings: Settings,
    *,
    feature: str,
    usage: Mapping[str, int | str | Decimal] | None,
    credits: int | None,
    model: str | None,
) -> CheckResult:
    """Whether the usage would be allowed now, and its price: the ``check`` verb."""
    return check(account, settings, rate(account, settings, feature, usage, credits, model))


def charge(account: LockedAccount, settings: Settings, rated: Rated, event: UsageEvent) -> Charge:
    """Charge ``event`` priced as ``rated``."""
    metadata = checked(event.metadata or {})
    provider_cost = _provider_cost(rated, event.provider_cost)
    plan = plan_of(account)
    feature = rated.feature
    refused = _enforce(settings, _refusal(account, plan, feature))
    unlimited = plan is not None and plan.is_unlimited(feature.pool)
    if not unlimited:
        # Counted only as far as the charge needs (the whole when short).
        available = account.free_up_to(feature.pool, rated.credits) + _headroom(account)
        if available < rated.credits:
            shortage = _shortage(account, settings, feature, rated.credits, available)
            refused = _enforce(settings, shortage) or refused
    return _charge(
        account,
        settings,
        rated,
        preferred=(),
        unlimited=unlimited,
        model=event.model,
        member=event.member,
        success=True,
        metadata=metadata,
        provider_cost=provider_cost,
        hold_id=None,
        would_refuse=refused,
        event=event,
    )


def _charge(
    account: LockedAccount,
    settings: Settings,
    rated: Rated,
    *,
    preferred: Sequence[Draw],
    unlimited: bool,
    model: str | None,
    member: str | None,
    success: bool,
    metadata: Mapping[str, Any],
    provider_cost: Decimal | None,
    hold_id: str | None,
    would_refuse: Refused | None,
    event: UsageEvent | None = None,
) -> Charge:
    """``provider_cost``: checked, as ``_provider_cost`` gives it; ``event``: a one-step
    charge's, whose other fields the usage record stores as given."""
    feature = rated.feature
    draws: list[Draw] = []
    short = 0 if unlimited else rated.credits
    for allocation in preferred:
        take = min(allocation.credits, short)
        if take:
            draws.append(Draw(allocation.grant_id, take))
            short -= take
    if short:
        taken = {d.grant_id: d.credits for d in draws}
        others = (
            g.moved(held=taken[g.id]) if g.id in taken else g
            for g in account.in_order(feature.pool)
        )
        more, short = plan_draws(others, short)
        draws += more
    debited = min(short, _headroom(account))
    if unlimited and rated.credits:
        _count_unlimited(account, feature.pool, rated.credits)
    usage_id = new_id("use")
    txn = account.consume(
        draws,
        debited,
        _describe(rated, model),
        usage_id=usage_id,
        hold_id=hold_id,
        metadata={"feature": feature.key, "model": model, "member": member},
    )
    record = UsageRecord(
        id=usage_id,
        account_id=account.id,
        feature=feature.key,
        feature_version=feature.version,
        model=model,
        member=member,
        quantities=_plain(rated.quantities),
        credits=rated.credits,
        charged=sum(d.credits for d in draws),
        debited=debited,
        uncollected=short - debited,
        refunded=0,
        unlimited=unlimited,
        success=success,
        hold_id=hold_id,
        created_at=account.now,
        metadata=dict(metadata),
        unknown_model=rated.unknown_model,
        price_book_version=rated.price_book_version,
        provider_cost=provider_cost,
    )
    account.record_usage(NewUsage(record, feature.pool, provider_cost, txn.id, event))
    start = account.row.account.period_start
    allowance = allowance_state(account.period_allowances(), start, feature.pool)
    available = account.available
    return Charge(
        usage_id=usage_id,
        account_id=account.id,
        feature=feature.key,
        credits=rated.credits,
        charged=record.charged,
        debited=debited,
        uncollected=record.uncollected,
        available_after=available,
        transaction_id=txn.id,
        hold_id=hold_id,
        warnings=tuple(balance_warnings(settings, available, allowance, unlimited=unlimited)),
        would_refuse=would_refuse,
        unknown_model=rated.unknown_model,
    )


def check(account: LockedAccount, settings: Settings, rated: Rated) -> CheckResult:
    """Whether a usage would be allowed now, and what it would cost; changes nothing."""
    plan = plan_of(account)
    feature = rated.feature
    available = free_credits(account.grants, feature.pool, account.now) + _headroom(account)
    refusal = _refusal(account, plan, feature)
    unlimited = plan is not None and plan.is_unlimited(feature.pool)
    if refusal is None and not unlimited and available < rated.credits:
        refusal = _shortage(account, settings, feature, rated.credits, available)
    allowance = allowance_state(account.grants, account.row.account.period_start, feature.pool)
    enforcing = settings.enforcement is Enforcement.ENFORCE
    return CheckResult(
        allowed=refusal is None or not enforcing,
        cost=rated.credits,
        available=available,
        reason=None if refusal is None or settings.enforcement is Enforcement.OFF else refusal.code,
        warnings=tuple(
            balance_warnings(settings, account.available, allowance, unlimited=unlimited)
        ),
    )


def _describe(rated: Rated, model: str | None) -> str:
    on = f" on {model}" if model else ""
    return f"{rated.feature.name}{on}: {rated.credits:,} credits"


def _plain(quantities: Mapping[str, Quantity]) -> dict[str, int | str]:
    """Quantities as JSON: integers as they are, fractions as decimal strings."""
    return {unit: q if isinstance(q, int) else str(q) for unit, q in quantities.items()}
