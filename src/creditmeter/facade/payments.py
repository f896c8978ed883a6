"""Credit packs, purchases, refunds and auto-recharge."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy.engine import Connection

from creditmeter.core import payments as payments_core
from creditmeter.core.audit import LIBRARY, Actor
from creditmeter.core.errors import InvalidRequest
from creditmeter.core.identifiers import identifier
from creditmeter.core.payments import (
    AutoRecharge,
    Checkout,
    Package,
    PaymentEvent,
    Purchase,
    UiMode,
)
from creditmeter.core.records import (
    Page,
)
from creditmeter.facade.base import MeterBase
from creditmeter.service import (
    payment_events,
    purchases,
    purchasing,
)
from creditmeter.service.unit_of_work import keyed
from creditmeter.store import idempotency as idempotency_store
from creditmeter.store import payments as payments_store

T = TypeVar("T")


class PaymentVerbs(MeterBase):
    def put_package(
        self,
        package_id: str,
        *,
        credits: int,
        price: int,
        currency: str,
        name: str | None = None,
        bonus_credits: int = 0,
        popular: bool = False,
        best_value: bool = False,
        active: bool = True,
        sort_order: int = 0,
        stripe_price_id: str | None = None,
        actor: Actor = LIBRARY,
    ) -> Package:
        """Create a credit pack, or replace it (purchases keep what they were sold)."""
        pack = payments_core.package(
            identifier(package_id, "a package id"),
            name=name or package_id,
            credits=credits,
            bonus_credits=bonus_credits,
            price=payments_core.money(price, currency),
            popular=popular,
            best_value=best_value,
            active=active,
            sort_order=sort_order,
            stripe_price_id=stripe_price_id,
        )
        self._write(lambda conn, now: purchases.put_package(conn, now, pack, actor))
        return pack

    def package(self, package_id: str) -> Package:
        with self.db.read() as conn:
            return purchases.get_package(conn, package_id)

    def packages(self, *, include_inactive: bool = False) -> list[Package]:
        """The packs for sale in their sort order (all of them with ``include_inactive``)."""
        with self.db.read() as conn:
            return payments_store.list_packages(conn, include_inactive=include_inactive)

    def add_boost_packages(
        self,
        price: int,
        currency: str,
        *,
        base_credits: int | None = None,
        actor: Actor = LIBRARY,
    ) -> list[Package]:
        """Write the three boost packs (0.5×, 1× +10 %, 2× +15 %) derived from
        ``base_credits`` priced at ``price``; by default the smallest plan's allowance."""
        base_price = payments_core.money(price, currency)
        if base_credits is None:
            with self.db.read() as conn:
                base_credits = purchases.smallest_plan_allowance(conn)
        packs = payments_core.boost_packs(base_credits, base_price)

        def write(conn: Connection, now: datetime) -> None:
            for pack in packs:
                purchases.put_package(conn, now, pack, actor)

        self._write(write)
        return packs

    def checkout(
        self,
        account_id: str,
        package_id: str,
        *,
        ui_mode: str = "hosted",
        success_url: str | None = None,
        cancel_url: str | None = None,
        save_payment_method: bool = False,
        idempotency_key: str | None = None,
        by_account: bool = False,
    ) -> Checkout:
        """Start buying a package: a pending purchase and the provider's checkout for it.
        The account is credited when the payment provider confirms the payment.

        ``by_account``: the account itself asks (with its own API key), so its
        ``idempotency_key`` is the account's, apart from the operator's keys."""
        self._selling()
        try:
            mode = UiMode(ui_mode)
        except ValueError:
            modes = ", ".join(m.value for m in UiMode)
            raise InvalidRequest(f"ui_mode must be one of {modes}") from None
        if mode is not UiMode.ELEMENTS and not success_url:
            raise InvalidRequest(f"a {mode.value} checkout needs a success_url")
        params = {
            "account": account_id,
            "package": package_id,
            "ui_mode": mode.value,
            "success_url": success_url,
            "cancel_url": cancel_url,
            "save_payment_method": save_payment_method,
        }
        owner = account_id if by_account else idempotency_store.OPERATOR
        return purchasing.checkout(
            self._units,
            self.payments,
            account_id,
            package_id,
            mode=mode,
            success_url=success_url,
            cancel_url=cancel_url,
            save_payment_method=save_payment_method,
            key=keyed(idempotency_key, "checkout", params, Purchase, owner),
        )

    def purchase(self, purchase_id: str) -> Purchase:
        return purchasing.get(self._units, purchase_id)

    def purchases(
        self, account_id: str, *, limit: int = 50, cursor: str | None = None
    ) -> Page[Purchase]:
        """The account's purchases, newest first; pass ``next_cursor`` back for more."""
        self.account(account_id)
        if not 1 <= limit <= 500:
            raise InvalidRequest("limit must be 1 to 500")
        with self.db.read() as conn:
            found = payments_store.list_purchases(conn, account_id, before=cursor, limit=limit + 1)
        page = found[:limit]
        return Page(tuple(page), page[-1].id if len(found) > limit else None)

    def refund_purchase(
        self,
        purchase_id: str,
        *,
        amount: int | None = None,
        reason: str | None = None,
        idempotency_key: str | None = None,
        actor: Actor = LIBRARY,
    ) -> Purchase:
        """Refund a fulfilled purchase, all of what is left or ``amount`` minor units of
        it, through the payment provider, and claw its credits back pro rata. A retry
        with the same ``idempotency_key`` refunds nothing more."""
        params = {"purchase": purchase_id, "amount": amount, "reason": reason}
        key = keyed(idempotency_key, "refund_purchase", params, Purchase)
        return purchasing.refund(
            self._units, self.payments, purchase_id, amount, reason, key, actor
        )

    def set_auto_recharge(
        self,
        account_id: str,
        *,
        enabled: bool,
        threshold: int,
        package: str | None = None,
        payment_method: str | None = None,
        monthly_cap: int | None = None,
    ) -> AutoRecharge:
        """Recharge the account with ``package`` off-session, charged to the saved
        ``payment_method``, whenever its available credits fall below ``threshold``; at
        most ``monthly_cap`` minor units a calendar month. Setting it again clears the
        count of failures."""
        if enabled:
            self._selling()
        return self._units.on_account(
            account_id,
            lambda account, _: purchases.configure_auto_recharge(
                account,
                enabled=enabled,
                threshold=threshold,
                package_id=package,
                payment_method=payment_method,
                monthly_cap=monthly_cap,
            ),
            spends=True,
        )

    def auto_recharge(self, account_id: str) -> AutoRecharge:
        self.account(account_id)
        with self.db.read() as conn:
            found = payments_store.get_auto_recharge(conn, account_id)
        return found or AutoRecharge(account_id, False, 0, None, None, None)

    def receive_payment_event(self, payload: bytes, signature: str | None) -> bool:
        """Verify a webhook delivery and store its event with a job to apply it; ``False``
        for an event received before. Raises ``InvalidSignature``, changing nothing."""
        return self._receive(payment_events.checked(self.payments.parse_event(payload, signature)))

    def payment_events(
        self, *, status: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Stored events, newest first: their type, what handling them did and why."""
        with self.db.read() as conn:
            return payments_store.list_events(
                conn, statuses=() if status is None else (status,), limit=limit
            )

    def _receive(self, event: PaymentEvent) -> bool:
        received = self._write(
            lambda conn, now: payment_events.receive(conn, now, event, self.payments.name)
        )
        if received:
            self._jobs_queued()
        return received

    def payment_customer(self, account_id: str) -> str:
        """The account's customer at the payment provider, made on first need."""
        return purchasing.customer(self._units, self.payments, account_id)
