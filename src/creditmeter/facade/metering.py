"""Metering: holds, charges and checks; grants, refunds and voids."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any, TypeVar, Unpack

from creditmeter.core.audit import LIBRARY, Actor
from creditmeter.core.errors import CreditMeterError, InvalidRequest, NotFound
from creditmeter.core.meter import Conveniences
from creditmeter.core.records import (
    Charge,
    CheckResult,
    GrantResult,
    Hold,
    Transaction,
)
from creditmeter.core.settings import Settings
from creditmeter.core.types import HoldStatus
from creditmeter.core.usage import UsageEvent, UsageFields
from creditmeter.facade.base import MeterBase
from creditmeter.service import (
    batch,
    metering,
)
from creditmeter.service import grants as grants_service
from creditmeter.service.locked_account import LockedAccount
from creditmeter.service.unit_of_work import keyed
from creditmeter.store import holds

T = TypeVar("T")


class MeteringVerbs(MeterBase, Conveniences):
    def authorize(
        self,
        account_id: str,
        feature: str,
        *,
        estimate: Mapping[str, int | str | Decimal] | None = None,
        credits: int | None = None,
        model: str | None = None,
        member: str | None = None,
        ttl: timedelta | None = None,
        metadata: Mapping[str, Any] | None = None,
        balancing: bool = False,
        idempotency_key: str | None = None,
    ) -> Hold:
        """Reserve the estimate's credits; raises ``InsufficientCredits`` if short.
        ``balancing=True`` reserves what the grants hold up to the estimate instead (the
        hold's ``credits``, with ``requested`` the estimate's price) and raises only when
        they hold nothing: for work that can shrink to fit."""

        params = {
            "account": account_id,
            "feature": feature,
            "estimate": estimate,
            "credits": credits,
            "model": model,
            "member": member,
            "ttl": None if ttl is None else ttl.total_seconds(),
            "metadata": metadata,
        }
        if balancing:  # absent otherwise: keys stored before it existed keep their print
            params["balancing"] = True
        authorize = partial(
            metering.authorize_estimate,
            feature=feature,
            estimate=estimate,
            credits=credits,
            model=model,
            member=member,
            ttl=ttl,
            metadata=metadata,
            balancing=balancing,
        )
        key = keyed(idempotency_key, "authorize", params, Hold)
        return self._metering.on_account(account_id, authorize, key, spends=True)

    def settle(
        self,
        hold_id: str,
        *,
        usage: Mapping[str, int | str | Decimal] | None = None,
        credits: int | None = None,
        model: str | None = None,
        member: str | None = None,
        success: bool = True,
        metadata: Mapping[str, Any] | None = None,
        provider_cost: Decimal | None = None,
        idempotency_key: str | None = None,
    ) -> Charge:
        """Charge a hold's actual usage (its estimate if none is given) and release the
        rest; ``success=False`` releases it all and records the usage at no cost."""
        params = {
            "hold": hold_id,
            "usage": usage,
            "credits": credits,
            "model": model,
            "member": member,
            "success": success,
            "metadata": metadata,
            "provider_cost": provider_cost,
        }
        settle = partial(
            metering.settle,
            usage_=usage,
            credits=credits,
            model=model,
            member=member,
            success=success,
            metadata=metadata or {},
            provider_cost=provider_cost,
        )
        key = keyed(idempotency_key, "settle", params, Charge)
        return self._metering.on_hold(hold_id, settle, key, spends=True)

    def release(self, hold_id: str, *, idempotency_key: str | None = None) -> Hold:
        """Return all of a hold's credits: the operation did not happen."""
        key = keyed(idempotency_key, "release", {"hold": hold_id}, Hold)
        return self._metering.on_hold(hold_id, metering.release_hold, key)

    def pending_holds(self) -> int:
        """How many holds are pending in the whole database and not past their expiry
        (those are released by the next touch of their account)."""
        with self.db.read() as conn:
            return holds.count_pending(conn, self._now())

    def pending_holds_of(self, account_id: str, *, limit: int = 100) -> list[Hold]:
        """The account's pending holds that are not past their expiry, oldest first."""
        self.account(account_id)
        with self.db.read() as conn:
            return holds.pending_of(conn, account_id, self._now(), limit)

    def hold(self, hold_id: str) -> Hold:
        """A hold as it is now: one past its expiry is released (and reported expired)."""
        with self.db.read() as conn:
            found = holds.get(conn, hold_id)
        if found is None:
            raise NotFound("hold", hold_id)
        hold = found.hold
        if hold.status is HoldStatus.PENDING and hold.expires_at <= self._now():
            self._units.on_account(hold.account_id, lambda account, _: None)
            return self.hold(hold_id)
        return hold

    def charge(self, account_id: str, feature: str, **fields: Unpack[UsageFields]) -> Charge:
        """Record a usage and charge it in one step; raises ``InsufficientCredits`` if short.
        The fields are those of :class:`UsageEvent`."""
        event = UsageEvent(account_id, feature, **fields)
        charge = partial(metering.charge_usage, event=event)
        key = keyed(event.idempotency_key, "charge", event.params(), Charge)
        return self._metering.on_account(account_id, charge, key, spends=True)

    def charge_many(self, events: Sequence[UsageEvent]) -> list[Charge | CreditMeterError]:
        """Charge many usage events at once, each as ``charge`` would (its own idempotency
        key, its own refusal), in one database transaction that locks their accounts in
        the order of their ids: the result for each event, in order, is its charge or the
        error that refused it."""
        return self._units.run(lambda uow: batch.charge_many(uow, events))

    def check(
        self,
        account_id: str,
        feature: str,
        *,
        usage: Mapping[str, int | str | Decimal] | None = None,
        credits: int | None = None,
        model: str | None = None,
    ) -> CheckResult:
        """Would this usage be allowed now, and what would it cost? Changes nothing."""
        check = partial(
            metering.check_usage, feature=feature, usage=usage, credits=credits, model=model
        )
        return self._units.read_account(account_id, check)

    def grant(
        self,
        account_id: str,
        amount: int,
        *,
        source: str = "admin",
        pool: str | None = None,
        priority: int | None = None,
        expires_at: datetime | None = None,
        effective_at: datetime | None = None,
        reason: str | None = None,
        reference: str | None = None,
        idempotency_key: str | None = None,
        actor: Actor = LIBRARY,
    ) -> GrantResult:
        params = {
            "account": account_id,
            "amount": amount,
            "source": source,
            "pool": pool,
            "priority": priority,
            "expires_at": expires_at,
            "effective_at": effective_at,
            "reason": reason,
            "reference": reference,
        }
        return self._units.on_account(
            account_id,
            lambda account, _: grants_service.grant(
                account,
                amount,
                source=source,
                pool=pool,
                priority=priority,
                expires_at=expires_at,
                effective_at=effective_at,
                reason=reason,
                reference=reference,
                actor=actor,
            ),
            keyed(idempotency_key, "grant", params, GrantResult),
        )

    def refund(
        self,
        account_id: str,
        *,
        usage_id: str | None = None,
        amount: int | None = None,
        reason: str | None = None,
        idempotency_key: str | None = None,
        actor: Actor = LIBRARY,
    ) -> Transaction:
        """Give a usage's credits back to the grants they came from, or ``amount`` credits
        as a new refund grant."""
        if (usage_id is None) == (amount is None):
            raise InvalidRequest("refund either a usage_id or an amount")
        params = {"account": account_id, "usage": usage_id, "amount": amount, "reason": reason}

        def refund(account: LockedAccount, _: Settings) -> Transaction:
            if usage_id is not None:
                return grants_service.refund_usage(account, usage_id, reason, actor)
            assert amount is not None
            return grants_service.refund_credits(account, amount, reason, actor)

        key = keyed(idempotency_key, "refund", params, Transaction)
        return self._units.on_account(account_id, refund, key)

    def void_grant(
        self,
        account_id: str,
        grant_id: str,
        *,
        reason: str,
        held: str = "refuse",
        idempotency_key: str | None = None,
        actor: Actor = LIBRARY,
    ) -> Transaction:
        """Take the credits left in a grant away, as a ``void`` transaction; the grant is
        never drawn from or refilled again. Credits of it that pending holds reserve raise
        ``GrantHeld`` (naming the holds) unless ``held="release"``, which releases those
        holds first."""
        params = {"account": account_id, "grant": grant_id, "reason": reason, "held": held}
        return self._units.on_account(
            account_id,
            lambda account, _: grants_service.void_grant(
                account, grant_id, reason=reason, held=held, actor=actor
            ),
            keyed(idempotency_key, "void_grant", params, Transaction),
        )
