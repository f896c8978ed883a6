"""The library: ``CreditMeter``, with verbs named after the domain.

Each verb is one use case in one database transaction. Verbs that change an account lock
its row first (on SQLite the whole database: ``BEGIN IMMEDIATE``), bring it up to date
(expired holds, period rollover, expiry), do their work, and store their result under the
idempotency key, if one is given, in the same transaction.
"""

from __future__ import annotations

import random
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import IO, Any, TypeVar

import httpx2
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError

from creditmeter.core import payments as payments_core
from creditmeter.core.audit import LIBRARY, Action, Actor, AuditEntry
from creditmeter.core.errors import CreditMeterError, InvalidRequest, NotFound
from creditmeter.core.grants import Grant
from creditmeter.core.identifiers import identifier
from creditmeter.core.ids import new_id
from creditmeter.core.keys import ApiKey
from creditmeter.core.models import ModelPrice, PriceBookVersion
from creditmeter.core.notifications import NotificationPreferences
from creditmeter.core.payments import (
    AutoRecharge,
    Checkout,
    Package,
    PaymentDeclined,
    PaymentError,
    PaymentEvent,
    PaymentsNotConfigured,
    Purchase,
    PurchaseKind,
    PurchaseStatus,
    UiMode,
)
from creditmeter.core.plans import Plan
from creditmeter.core.portal import LINK_LIFETIME, PortalSession
from creditmeter.core.pricing import Feature
from creditmeter.core.records import (
    Account,
    Balance,
    Charge,
    CheckResult,
    GrantResult,
    Hold,
    Page,
    Transaction,
    UsageGroup,
    UsageRecord,
)
from creditmeter.core.rerating import RerateBooking, RerateReport
from creditmeter.core.settings import Settings
from creditmeter.core.stats import (
    AccountPage,
    DailyUsage,
    FeatureStats,
    Forecast,
    ModelStats,
    SystemStats,
)
from creditmeter.core.types import HoldStatus
from creditmeter.core.usage import UsageEvent
from creditmeter.core.webhooks import DISABLE_AFTER, Delivery, WebhookEndpoint
from creditmeter.payments.dev import DevProvider
from creditmeter.payments.off import MESSAGE as PAYMENTS_OFF
from creditmeter.payments.off import PaymentsOff
from creditmeter.payments.provider import CheckoutRequest, PaymentProvider
from creditmeter.service import accounts as accounts_service
from creditmeter.service import (
    alerts,
    idempotency,
    jobs,
    mail,
    metering,
    payment_events,
    purchases,
    queries,
    rerating,
)
from creditmeter.service import api_keys as api_keys_service
from creditmeter.service import audit as audit_service
from creditmeter.service import catalog as catalog_service
from creditmeter.service import grants as grants_service
from creditmeter.service import portal_sessions as portal_sessions_service
from creditmeter.service import prices as prices_service
from creditmeter.service import settings as settings_service
from creditmeter.service import stats as stats_service
from creditmeter.service import webhooks as webhooks_service
from creditmeter.service.book import AccountBook, Appends
from creditmeter.service.mail import EmailSettings
from creditmeter.service.maintenance import lock_current_and_key, lock_current_many
from creditmeter.service.purchases import Outcome
from creditmeter.service.verify import Violation, verify
from creditmeter.store import accounts, catalog, database, holds, outbox, usage
from creditmeter.store import api_keys as api_keys_store
from creditmeter.store import grants as grants_store
from creditmeter.store import idempotency as idempotency_store
from creditmeter.store import notifications as notifications_store
from creditmeter.store import payments as payments_store
from creditmeter.store import prices as prices_store
from creditmeter.store import secrets as secrets_store
from creditmeter.store import webhooks as webhooks_store
from creditmeter.store.accounts import AccountRow
from creditmeter.store.database import DEFAULT_TIMEOUTS, Database, Timeouts, pipelined
from creditmeter.store.errors import ConcurrentUpdate
from creditmeter.store.migrate import upgrade as upgrade_schema

T = TypeVar("T")
Clock = Callable[[], datetime]
ATTEMPTS = 5


def utc_now() -> datetime:
    return datetime.now(UTC)


class CreditMeter:
    """Credits, allowances, holds and a double-entry ledger on SQLite or PostgreSQL.

    ``CreditMeter()`` uses ``creditmeter.db`` in the working directory; pass a SQLAlchemy
    URL (``postgresql://…``) for PostgreSQL. The schema is migrated on first use unless
    ``migrate=False``. ``timeouts`` bound how long a lock is waited for or kept by a
    process that stopped (:class:`~creditmeter.store.database.Timeouts`).
    ``webhook_timeout`` is the seconds a webhook receiver has to answer;
    ``webhook_disable_after`` the failed deliveries in a row that disable an endpoint;
    ``webhook_allow_private`` lets webhooks go to private and loopback addresses.
    """

    def __init__(
        self,
        database_url: str | None = None,
        *,
        clock: Clock = utc_now,
        migrate: bool = True,
        pool_size: int = 5,
        payments: PaymentProvider | None = None,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        webhook_timeout: float = 10.0,
        webhook_disable_after: int = DISABLE_AFTER,
        retry_random: random.Random | None = None,
        webhook_allow_private: bool = False,
        email: EmailSettings | None = None,
    ) -> None:
        self.db = Database(database_url, pool_size=pool_size, timeouts=timeouts)
        self.clock = clock
        self.webhook_timeout = webhook_timeout
        self.webhook_disable_after = webhook_disable_after
        self.webhook_allow_private = webhook_allow_private
        """Whether webhooks may go to private, loopback, link-local … addresses (off: a
        server that sends webhooks must not be a way into its own network)."""
        self.email = email
        self._http: httpx2.Client | None = None
        self._http_lock = threading.Lock()
        """How events are emailed (SMTP, sender, templates); ``None``: they are not."""
        self.retry_random = retry_random or random.Random()
        """Draws the jitter of deliveries' retries (a seeded one makes them known)."""
        self.payments: PaymentProvider = payments or DevProvider()
        """Where credits are sold: the development provider unless another is given
        (``PaymentsOff()``: nowhere)."""
        self._secrets: dict[str, str] = {}
        self.payments.connect(self._receive, self._secret)
        self.charge_observers: list[Callable[[Charge], None]] = []
        """Called with every charge (one-shot or settle) once it is committed; a retry
        that replays an idempotency key is not a new charge."""
        self._remembered_settings: tuple[int, Settings] | None = None
        self._remembered_catalog: tuple[int, dict[tuple[str, str], object]] | None
        self._remembered_catalog = None
        self._local = threading.local()
        """What this thread's last use case left to do after its commit."""
        self.job_listeners: list[Callable[[], None]] = []
        """Called when jobs were queued that a worker should run soon."""
        if migrate:
            upgrade_schema(self.db)

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
        self.db.dispose()

    def __enter__(self) -> CreditMeter:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # Catalog and settings.

    def put_feature(
        self,
        key: str,
        *,
        rates: Mapping[str, int | str | Decimal] | None = None,
        models: Mapping[str, Mapping[str, int | str | Decimal]] | None = None,
        multiplier: int | str | Decimal | None = None,
        pool: str | None = None,
        name: str | None = None,
        unknown_models: str = "refuse",
        cost_plus: bool = False,
        actor: Actor = LIBRARY,
    ) -> Feature:
        """Create or change a priced feature; a change is a new version of its rule.
        ``unknown_models``: a model that ``models`` cannot price is refused
        (``"refuse"``) or priced at ``rates`` (``"default_rates"``). ``cost_plus``: priced
        from the provider's cost at the price book's model prices instead of ``rates``;
        its ``multiplier`` defaults to the settings' default multiplier (else to 1)."""
        rule = {
            "rates": rates or {},
            "models": models or {},
            "multiplier": multiplier,
            "unknown_models": unknown_models,
            "cost_plus": cost_plus,
        }
        return self._write(
            lambda conn, now: catalog_service.put_feature(
                conn, now, key, name=name, pool=pool, rule=rule, actor=actor
            )
        )

    def features(self) -> list[Feature]:
        with self.db.read() as conn:
            return catalog.list_features(conn)

    def sync_prices(
        self, providers: Sequence[str] | None = None, *, actor: Actor = LIBRARY
    ) -> PriceBookVersion:
        """A new price-book version with the price catalogue's model prices of
        ``providers`` (default: every provider); the latest version if nothing changed."""
        chosen = None if providers is None else list(providers)
        return self._write(lambda conn, now: prices_service.sync(conn, now, chosen, actor))

    def price_book_versions(self) -> list[PriceBookVersion]:
        with self.db.read() as conn:
            return prices_store.versions(conn)

    def model_prices(
        self,
        *,
        version: int | None = None,
        provider: str | None = None,
        model: str | None = None,
    ) -> tuple[PriceBookVersion | None, list[ModelPrice]]:
        """A price-book version (default: the latest; none before the first sync) and its
        model prices, of one provider or model if asked."""
        with self.db.read() as conn:
            return prices_service.model_prices(conn, version, provider, model)

    def rerate(
        self,
        *,
        since: datetime,
        until: datetime,
        to_version: int,
        account: str | None = None,
    ) -> RerateReport:
        """What the usage of cost-plus features from ``since`` until ``until`` (of every
        account, or of ``account``) would be rated at under price-book version
        ``to_version``, beside what it was rated at. A report: nothing is booked."""
        if account is not None:
            self.account(account)
        start, end = queries.instant(since, "since"), queries.instant(until, "until")
        with self.db.read() as conn:
            return rerating.report(conn, start, end, to_version, account)

    def apply_rerate(
        self,
        *,
        since: datetime,
        until: datetime,
        to_version: int,
        account: str | None = None,
        idempotency_key: str | None = None,
        actor: Actor = LIBRARY,
    ) -> RerateBooking:
        """Book what :meth:`rerate` reports: per account whose re-rated credits differ,
        one ``adjustment`` transaction of the difference (an under-charge taken from its
        grants in consumption order, debt for what they lack; an over-charge given back as
        a ``refund`` grant). All accounts in one database transaction; a window of an
        account is booked once (``AlreadyRerated`` for one that overlaps a window booked
        before), and a retry with the same ``idempotency_key`` returns the first
        booking."""
        if account is not None:
            self.account(account)
        start, end = queries.instant(since, "since"), queries.instant(until, "until")
        params = {"since": start, "until": end, "version": to_version, "account": account}
        fingerprint = idempotency.fingerprint("apply_rerate", params)

        def replay(conn: Connection) -> RerateBooking | None:
            if idempotency_key is None:
                return None
            return idempotency.replay(
                conn, idempotency_key, "apply_rerate", fingerprint, RerateBooking
            )

        def apply(conn: Connection, now: datetime) -> RerateBooking:
            first = replay(conn)
            if first is not None:
                return first
            report = rerating.report(conn, start, end, to_version, account)
            lines = {line.key: line for line in report.accounts if line.difference}
            booking_id = new_id("rrt")
            appends = Appends()
            booked: list[Transaction] = []
            with self.db.account_locks(conn, *lines):
                locked = lock_current_many(conn, now, sorted(lines))
                # A retry that waited for the locks of the call it repeats finds its result.
                first = replay(conn)
                if first is not None:
                    return first
                for account_id in sorted(lines):
                    row, loaded = locked[account_id]
                    book = AccountBook(conn, row, now, self._catalog(row), appends, loaded=loaded)
                    txn = rerating.book_difference(book, report, lines[account_id], booking_id)
                    booked.append(txn)
                    audit_service.record(
                        conn,
                        now,
                        actor,
                        Action.RERATE_BOOKED,
                        account_id=account_id,
                        subject_id=txn.id,
                        details={
                            "rerate": booking_id,
                            "version": to_version,
                            "since": start.isoformat(),
                            "until": end.isoformat(),
                            "amount": txn.amount,
                        },
                    )
                    if alerts.check(book, settings_service.current(conn)):
                        self._local.jobs_queued = True
                    book.save()
                appends.write(conn)
                booking = RerateBooking(booking_id, to_version, start, end, account, tuple(booked))
                if idempotency_key is not None:
                    idempotency.remember(
                        conn, idempotency_key, "apply_rerate", fingerprint, booking, now
                    )
            return booking

        return self._write(apply)

    def put_plan(
        self,
        key: str,
        *,
        allowances: Mapping[str, int | None],
        features: list[str] | str = "*",
        period: str = "calendar_month",
        rollover_cap: int = 0,
        name: str | None = None,
        actor: Actor = LIBRARY,
    ) -> Plan:
        data = {
            "name": name or key,
            "allowances": dict(allowances),
            "features": features,
            "period": period,
            "rollover_cap": rollover_cap,
        }
        return self._write(lambda conn, now: catalog_service.put_plan(conn, now, key, data, actor))

    def plans(self) -> list[Plan]:
        with self.db.read() as conn:
            return catalog.list_plans(conn)

    def settings(self) -> Settings:
        with self.db.read() as conn:
            return settings_service.current(conn)

    def change_settings(
        self, changes: Mapping[str, object], *, changed_by: str, actor: Actor = LIBRARY
    ) -> Settings:
        return self._write(
            lambda conn, now: settings_service.change(conn, now, changes, changed_by, actor)
        )

    def settings_history(self) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            return settings_service.history(conn)

    # Accounts.

    def create_account(
        self,
        account_id: str,
        *,
        name: str | None = None,
        plan: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        overdraft_limit: int = 0,
        idempotency_key: str | None = None,
        actor: Actor = LIBRARY,
    ) -> Account:
        """Create an account, or return it as it is if the id exists (the welcome bonus
        and the first allowance are granted once, at creation)."""
        params = {
            "account": account_id,
            "name": name,
            "plan": plan,
            "metadata": metadata,
            "overdraft_limit": overdraft_limit,
        }
        fingerprint = idempotency.fingerprint("create_account", params)

        def create(conn: Connection, now: datetime) -> Account:
            if idempotency_key is not None:
                first = idempotency.replay(
                    conn, idempotency_key, "create_account", fingerprint, Account
                )
                if first is not None:
                    return first
            settings = settings_service.current(conn)
            account, _ = accounts_service.create(
                conn,
                settings,
                now,
                account_id,
                name=name,
                plan_key=plan,
                metadata=metadata or {},
                overdraft_limit=overdraft_limit,
                actor=actor,
            )
            if idempotency_key is not None:
                idempotency.remember(
                    conn, idempotency_key, "create_account", fingerprint, account, now
                )
            return account

        return self._write(create)

    def account(self, account_id: str) -> Account:
        return self._read_account(account_id, lambda book, _: book.row.account)

    def update_account(
        self,
        account_id: str,
        *,
        name: str | None = None,
        status: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        overdraft_limit: int | None = None,
        actor: Actor = LIBRARY,
    ) -> Account:
        return self._on_account(
            account_id,
            lambda book, _: accounts_service.update(
                book,
                name=name,
                status=status,
                metadata=metadata,
                overdraft_limit=overdraft_limit,
                actor=actor,
            ),
        )

    def change_plan(
        self, account_id: str, plan: str, *, immediately: bool = False, actor: Actor = LIBRARY
    ) -> Account:
        """Upgrade now (the allowance is topped up), or downgrade at the next period."""
        return self._on_account(
            account_id,
            lambda book, _: accounts_service.change_plan(
                book, plan, immediately=immediately, actor=actor
            ),
        )

    def add_member(self, account_id: str, member_id: str, *, name: str | None = None) -> None:
        self._write(
            lambda conn, now: accounts_service.add_member(
                conn, now, account_id, member_id, name or member_id
            )
        )

    def list_accounts(self, *, after: str | None = None, limit: int = 100) -> list[Account]:
        with self.db.read() as conn:
            return [row.account for row in accounts.list_all(conn, after=after, limit=limit)]

    # Metering.

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

        def authorize(book: AccountBook, settings: Settings) -> Hold:
            seconds = settings.default_hold_ttl_seconds if ttl is None else ttl.total_seconds()
            if not 0 < seconds <= settings.max_hold_ttl_seconds:
                raise InvalidRequest(
                    f"ttl must be more than 0 and at most {settings.max_hold_ttl_seconds} s"
                )
            rated = metering.rate(book, settings, feature, estimate, credits, model)
            return metering.authorize(
                book,
                settings,
                rated,
                ttl=timedelta(seconds=seconds),
                model=model,
                member=member,
                metadata=metadata or {},
                balancing=balancing,
            )

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
        return self._on_account(
            account_id,
            self._spending(authorize),
            key=idempotency_key,
            operation="authorize",
            params=params,
            result=Hold,
        )

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
        return self._on_hold(
            hold_id,
            lambda found: self._spending(
                lambda book, settings: metering.settle(
                    book,
                    settings,
                    found,
                    usage,
                    credits,
                    model=model,
                    member=member,
                    success=success,
                    metadata=metadata or {},
                    provider_cost=provider_cost,
                ),
            ),
            key=idempotency_key,
            operation="settle",
            params=params,
            result=Charge,
        )

    def release(self, hold_id: str, *, idempotency_key: str | None = None) -> Hold:
        """Return all of a hold's credits: the operation did not happen."""
        return self._on_hold(
            hold_id,
            lambda found: lambda book, _: metering.release(book, found),
            key=idempotency_key,
            operation="release",
            params={"hold": hold_id},
            result=Hold,
        )

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
            self._on_account(hold.account_id, lambda book, _: None)
            return self.hold(hold_id)
        return hold

    @contextmanager
    def holding(
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
    ) -> Iterator[HeldOperation]:
        """Authorize, run the block, settle. An exception in the block releases the hold;
        a block that ends without calling ``settle`` settles the estimate."""
        held = HeldOperation(
            self,
            self.authorize(
                account_id,
                feature,
                estimate=estimate,
                credits=credits,
                model=model,
                member=member,
                ttl=ttl,
                metadata=metadata,
            ),
        )
        try:
            yield held
        except BaseException:
            if held.charge is None:
                self.release(held.hold.id)
            raise
        if held.charge is None:
            held.settle()

    def charge(
        self,
        account_id: str,
        feature: str,
        *,
        usage: Mapping[str, int | str | Decimal] | None = None,
        credits: int | None = None,
        model: str | None = None,
        member: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        provider_cost: Decimal | None = None,
        idempotency_key: str | None = None,
    ) -> Charge:
        """Record a usage and charge it in one step; raises ``InsufficientCredits`` if short."""

        def charge(book: AccountBook, settings: Settings) -> Charge:
            rated = metering.rate(book, settings, feature, usage, credits, model)
            return metering.charge(
                book,
                settings,
                rated,
                model=model,
                member=member,
                metadata=metadata or {},
                provider_cost=provider_cost,
            )

        event = UsageEvent(
            account_id, feature, usage, credits, model, member, metadata, provider_cost
        )
        return self._on_account(
            account_id,
            self._spending(charge),
            key=idempotency_key,
            operation="charge",
            params=event.params(),
            result=Charge,
        )

    def charge_many(self, events: Sequence[UsageEvent]) -> list[Charge | CreditMeterError]:
        """Charge many usage events at once, each as ``charge`` would (its own idempotency
        key, its own refusal), in one database transaction that locks their accounts in
        the order of their ids: the result for each event, in order, is its charge or the
        error that refused it."""
        by_account: dict[str, list[int]] = {}
        for index, event in enumerate(events):
            by_account.setdefault(event.account_id, []).append(index)
        groups = {a: [events[i] for i in indexes] for a, indexes in by_account.items()}
        outcomes = self._write(partial(self._charge_groups, groups=groups))
        results: list[Charge | CreditMeterError | None] = [None] * len(events)
        for account_id, indexes in by_account.items():
            for index, (outcome, fresh) in zip(indexes, outcomes[account_id], strict=True):
                results[index] = self._observed(outcome, fresh)
        return [r for r in results if r is not None]

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
        return self._read_account(
            account_id,
            lambda book, settings: metering.check(
                book, settings, metering.rate(book, settings, feature, usage, credits, model)
            ),
        )

    # Grants and refunds.

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
        return self._on_account(
            account_id,
            lambda book, _: grants_service.grant(
                book,
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
            key=idempotency_key,
            operation="grant",
            params=params,
            result=GrantResult,
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

        def refund(book: AccountBook, _: Settings) -> Transaction:
            if usage_id is not None:
                return grants_service.refund_usage(book, usage_id, reason, actor)
            assert amount is not None
            return grants_service.refund_credits(book, amount, reason, actor)

        return self._on_account(
            account_id,
            refund,
            key=idempotency_key,
            operation="refund",
            params=params,
            result=Transaction,
        )

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
        return self._on_account(
            account_id,
            lambda book, _: grants_service.void_grant(
                book, grant_id, reason=reason, held=held, actor=actor
            ),
            key=idempotency_key,
            operation="void_grant",
            params=params,
            result=Transaction,
        )

    # Queries.

    def balance(self, account_id: str) -> Balance:
        return self._read_account(account_id, queries.balance)

    def transactions(
        self,
        account_id: str,
        *,
        types: tuple[str, ...] = (),
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[Transaction]:
        """The account's ledger, newest first; pass ``next_cursor`` back for the next page."""
        self.account(account_id)
        with self.db.read() as conn:
            return queries.transactions(
                conn,
                account_id,
                types=types,
                since=since,
                until=until,
                limit=limit,
                cursor=cursor,
            )

    def usage(
        self,
        account_id: str,
        *,
        feature: str | None = None,
        member: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[UsageRecord]:
        self.account(account_id)
        with self.db.read() as conn:
            return queries.usage_page(
                conn,
                account_id,
                feature=feature,
                member=member,
                since=since,
                until=until,
                limit=limit,
                cursor=cursor,
            )

    def usage_record(self, usage_id: str) -> UsageRecord:
        with self.db.read() as conn:
            record = usage.get(conn, usage_id)
        if record is None:
            raise NotFound("usage", usage_id)
        return record

    def usage_summary(
        self,
        account_id: str,
        *,
        group_by: str = "day",
        feature: str | None = None,
        member: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[UsageGroup]:
        grouping = queries.group_by(group_by)
        self.account(account_id)
        with self.db.read() as conn:
            return usage.summary(
                conn,
                self.db.dialect,
                account_id,
                grouping,
                feature=feature,
                member=member,
                since=queries.bound(since, "since"),
                until=queries.bound(until, "until"),
            )

    # Stats (docs/stats.md).

    def stats(
        self, *, since: datetime, until: datetime, currency: str | None = None
    ) -> SystemStats:
        """The admin overview of ``[since, until)``: credits issued and consumed, billable
        credits against the providers' cost and the margin, revenue by currency net of
        refunds (``currency``: that one only), accounts, balances and top consumers."""
        with self.db.read() as conn:
            return stats_service.system_stats(
                conn, self.db.dialect, settings_service.current(conn), since, until, currency
            )

    def model_stats(self, *, since: datetime, until: datetime) -> list[ModelStats]:
        """Usage of ``[since, until)`` by model (``""``: none named), with cost and margin."""
        with self.db.read() as conn:
            return stats_service.model_stats(
                conn, self.db.dialect, settings_service.current(conn), since, until
            )

    def feature_stats(self, *, since: datetime, until: datetime) -> list[FeatureStats]:
        """Usage of ``[since, until)`` by feature, with cost and margin."""
        with self.db.read() as conn:
            return stats_service.feature_stats(
                conn, self.db.dialect, settings_service.current(conn), since, until
            )

    def search_accounts(
        self,
        *,
        query: str | None = None,
        plan: str | None = None,
        status: str | None = None,
        level: str | None = None,
        sort: str = "id",
        descending: bool = False,
        after: str | None = None,
        limit: int = 50,
    ) -> AccountPage:
        """Accounts whose id or name contains ``query``, filtered by plan, status and level
        (``healthy``, ``low``, ``critical``), sorted by ``sort`` (id, name, plan, status,
        created_at, available) then id; pass ``next_cursor`` as ``after`` for the next page."""
        with self.db.read() as conn:
            return stats_service.search_accounts(
                conn,
                settings_service.current(conn),
                self._now(),
                query=query,
                plan=plan,
                status=status,
                level=level,
                sort=sort,
                descending=descending,
                after=after,
                limit=limit,
            )

    def daily_usage(
        self, account_id: str | None, *, since: datetime, until: datetime, by: str = "feature"
    ) -> list[DailyUsage]:
        """Billable credits per UTC day of ``[since, until)`` and feature, model or member
        (``by``), of one account or (``None``) of all."""
        if account_id is not None:
            self.account(account_id)
        with self.db.read() as conn:
            return stats_service.daily_usage(conn, self.db.dialect, account_id, since, until, by)

    def forecast(self, account_id: str) -> Forecast:
        """When the account's available credits run out at its burn rate of the last
        30 days. Not part of :meth:`balance`, which stays a read of running totals."""
        return self._read_account(
            account_id,
            lambda book, _: stats_service.forecast(book.conn, book.id, book.available, book.now),
        )

    def iter_transactions(self, account_id: str, **filters: Any) -> Iterator[Transaction]:
        """Every transaction matching the filters, newest first, a page at a time."""
        cursor = None
        while True:
            page = self.transactions(account_id, limit=500, cursor=cursor, **filters)
            yield from page.data
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def export_transactions_csv(self, account_id: str, out: IO[str], **filters: Any) -> int:
        """Write the account's ledger as CSV; returns the number of transactions written."""
        return queries.write_transactions_csv(self.iter_transactions(account_id, **filters), out)

    def grants(self, account_id: str, *, include_spent: bool = False) -> list[Grant]:
        """The account's grants in consumption order of priority and age; by default only
        those that still hold credits."""
        self.account(account_id)
        with self.db.read() as conn:
            return grants_store.list_for_account(conn, account_id, include_spent=include_spent)

    # The audit log.

    def audit_log(
        self,
        *,
        actor: str | None = None,
        account: str | None = None,
        actions: tuple[str, ...] = (),
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[AuditEntry]:
        """Who changed what, newest first; pass ``next_cursor`` back for the next page.
        ``actor``: a key's id, or a kind of actor (``api_key``, ``admin_key_env``,
        ``library``, ``cli``)."""
        with self.db.read() as conn:
            return audit_service.page(
                conn,
                actor=actor,
                account=account,
                actions=actions,
                since=since,
                until=until,
                limit=limit,
                cursor=cursor,
            )

    def iter_audit_log(self, **filters: Any) -> Iterator[AuditEntry]:
        """Every entry matching the filters, newest first, a page at a time."""
        cursor = None
        while True:
            page = self.audit_log(limit=500, cursor=cursor, **filters)
            yield from page.data
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def export_audit_log_csv(self, out: IO[str], **filters: Any) -> int:
        """Write the audit log as CSV; returns the number of entries written."""
        return audit_service.write_csv(self.iter_audit_log(**filters), out)

    # API keys.

    def create_api_key(
        self,
        role: str,
        *,
        account_id: str | None = None,
        name: str | None = None,
        actor: Actor = LIBRARY,
    ) -> tuple[ApiKey, str]:
        """A new API key and its secret, which is not stored and cannot be shown again."""
        return self._write(
            lambda conn, now: api_keys_service.create(conn, now, role, account_id, name, actor)
        )

    def revoke_api_key(self, key_id: str, *, actor: Actor = LIBRARY) -> None:
        self._write(lambda conn, now: api_keys_service.revoke(conn, now, key_id, actor))

    def api_keys(self) -> list[ApiKey]:
        with self.db.read() as conn:
            return api_keys_store.list_all(conn)

    def authenticate(self, secret: str) -> ApiKey | None:
        """The active key whose secret this is, if any. Read from the database every time,
        so that a key revoked by any process is refused by every other at once."""
        with self.db.read() as conn:
            return api_keys_store.active_by_digest(conn, api_keys_service.digest(secret))

    def api_key(self, key_id: str) -> ApiKey:
        """The key of this id, revoked or not (never its secret)."""
        with self.db.read() as conn:
            found = api_keys_store.get(conn, key_id)
        if found is None:
            raise NotFound("api key", key_id)
        return found

    # The dashboards.

    def create_portal_session(
        self,
        account_id: str,
        *,
        return_url: str | None = None,
        lifetime: timedelta = LINK_LIFETIME,
        actor: Actor = LIBRARY,
    ) -> tuple[PortalSession, str]:
        """A one-time link's session to the account's customer portal and the link's
        token, which is not stored and cannot be shown again."""
        return self._write(
            lambda conn, now: portal_sessions_service.create(
                conn, now, account_id, return_url, lifetime, actor
            )
        )

    def open_portal_session(self, token: str) -> PortalSession | None:
        """Use the link of this token: its session, or ``None`` if the token is unknown,
        already used or expired."""
        return self._write(lambda conn, now: portal_sessions_service.open_link(conn, now, token))

    def dashboard_secret(self) -> str:
        """The database's secret that signs the dashboards' session cookies, the same in
        every process on the database."""
        return self._secret("dashboard_sessions")

    # Outgoing webhooks.

    def create_webhook_endpoint(
        self,
        url: str,
        *,
        event_types: Sequence[str] = ("*",),
        description: str = "",
        enabled: bool = True,
        actor: Actor = LIBRARY,
    ) -> tuple[WebhookEndpoint, str]:
        """A new endpoint that hears ``event_types`` (``*``: all) and its signing secret
        (``whsec_…``), which cannot be shown again."""
        return self._write(
            lambda conn, now: webhooks_service.create(
                conn,
                now,
                url=url,
                event_types=list(event_types),
                description=description,
                enabled=enabled,
                actor=actor,
                allow_private=self.webhook_allow_private,
            )
        )

    def update_webhook_endpoint(
        self, endpoint_id: str, *, actor: Actor = LIBRARY, **changes: Any
    ) -> WebhookEndpoint:
        """Change some of ``url``, ``event_types``, ``description`` and ``enabled``."""
        return self._write(
            lambda conn, now: webhooks_service.update(
                conn, now, endpoint_id, changes, actor, self.webhook_allow_private
            )
        )

    def rotate_webhook_secret(
        self,
        endpoint_id: str,
        *,
        overlap: timedelta = timedelta(hours=24),
        actor: Actor = LIBRARY,
    ) -> tuple[WebhookEndpoint, str]:
        """A new signing secret for the endpoint, which cannot be shown again; the old one
        signs too for ``overlap`` (at most 7 days) by the meter's clock."""
        return self._write(
            lambda conn, now: webhooks_service.rotate_secret(conn, now, endpoint_id, overlap, actor)
        )

    def delete_webhook_endpoint(self, endpoint_id: str, *, actor: Actor = LIBRARY) -> None:
        self._write(lambda conn, now: webhooks_service.delete(conn, now, endpoint_id, actor))

    def notification_preferences(self, account_id: str) -> NotificationPreferences:
        """An account's billing email addresses and the channels of each event type."""
        with self.db.read() as conn:
            return mail.preferences(conn, account_id)

    def set_notification_preferences(
        self,
        account_id: str,
        *,
        emails: Sequence[str] = (),
        channels: Mapping[str, Sequence[str]] | None = None,
        actor: Actor = LIBRARY,
    ) -> NotificationPreferences:
        """Replace an account's preferences: the addresses that get its emails and, per
        event type or ``*``, the channels (``email``, ``webhook``) it is sent on."""
        return self._write(
            lambda conn, now: mail.put_preferences(
                conn,
                now,
                account_id,
                emails=list(emails),
                channels={k: list(v) for k, v in (channels or {}).items()},
                actor=actor,
            )
        )

    def email_deliveries(self, event_id: str) -> list[dict[str, Any]]:
        """The attempts to email an event, oldest first: recipient, attempt, error and
        the next retry."""
        with self.db.read() as conn:
            return notifications_store.deliveries(conn, event_id)

    def webhook_endpoint(self, endpoint_id: str) -> WebhookEndpoint:
        with self.db.read() as conn:
            return webhooks_service.get(conn, endpoint_id)

    def webhook_endpoints(self) -> list[WebhookEndpoint]:
        with self.db.read() as conn:
            return webhooks_store.list_all(conn)

    def webhook_deliveries(self, endpoint_id: str, *, limit: int = 100) -> list[Delivery]:
        """An endpoint's delivery attempts, newest first."""
        with self.db.read() as conn:
            webhooks_service.get(conn, endpoint_id)
            return webhooks_store.deliveries(conn, endpoint_id, limit)

    def redeliver_webhook(self, endpoint_id: str, delivery_id: str) -> bool:
        """Queue the event of one of the endpoint's deliveries to it again, with the same
        ``webhook-id``; ``False`` if that delivery was redelivered already."""
        queued = self._write(
            lambda conn, now: webhooks_service.redeliver(conn, now, endpoint_id, delivery_id)
        )
        if queued:
            self._jobs_queued()
        return queued

    # Credit packs, purchases and auto-recharge.

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
        fingerprint = idempotency.fingerprint("checkout", params)
        owner = account_id if by_account else idempotency_store.OPERATOR

        def start(conn: Connection, now: datetime) -> Purchase:
            if idempotency_key is not None:
                first = idempotency.replay(
                    conn, idempotency_key, "checkout", fingerprint, Purchase, owner
                )
                if first is not None:
                    return first  # the provider's call below is idempotent by purchase
            purchase = purchases.start(
                conn,
                now,
                account_id,
                package_id,
                kind=PurchaseKind.CHECKOUT,
                provider=self.payments.name,
            )
            if idempotency_key is not None:
                idempotency.remember(
                    conn, idempotency_key, "checkout", fingerprint, purchase, now, owner
                )
            return purchase

        purchase = self._write(start)
        with self.db.read() as conn:
            pack = purchases.get_package(conn, purchase.package_id)
        request = CheckoutRequest(
            purchase=purchase,
            package=pack,
            customer_id=self.payment_customer(purchase.account_id),
            ui_mode=mode,
            success_url=success_url,
            cancel_url=cancel_url,
            save_payment_method=save_payment_method,
        )
        try:
            started = self.payments.create_checkout(request)
        except PaymentError as error:
            self._fail_purchase(purchase.id, error.message)
            raise
        self._write(
            lambda conn, _: payments_store.set_provider_ids(
                conn,
                purchase.id,
                session_id=started.session_id,
                payment_intent_id=started.payment_intent_id,
            )
        )
        return Checkout(
            purchase_id=purchase.id,
            session_id=started.session_id,
            ui_mode=mode,
            url=started.url,
            client_secret=started.client_secret,
        )

    def purchase(self, purchase_id: str) -> Purchase:
        with self.db.read() as conn:
            found = payments_store.get_purchase(conn, purchase_id)
        if found is None:
            raise NotFound("purchase", purchase_id)
        return found

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
        if idempotency_key is not None:
            fingerprint = idempotency.fingerprint("refund_purchase", params)
            with self.db.read() as conn:
                first = idempotency.replay(
                    conn, idempotency_key, "refund_purchase", fingerprint, Purchase
                )
            if first is not None:
                return first
        purchase = self.purchase(purchase_id)
        if purchase.status is not PurchaseStatus.FULFILLED:
            raise InvalidRequest(f"purchase {purchase_id} is {purchase.status.value}")
        left = purchase.amount_paid - purchase.amount_refunded
        amount = left if amount is None else amount
        if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= left:
            raise InvalidRequest(f"amount must be 1 to {left} minor units")
        total = purchase.amount_refunded + amount
        # Concurrent refunds to the same total (or under the same key) are one refund.
        self.payments.refund(
            purchase, amount, idempotency_key=f"refund:{purchase_id}:{idempotency_key or total}"
        )

        def claw_back(book: AccountBook, settings: Settings) -> Purchase:
            outcome = purchases.claw_back(
                book, settings, self._current(book, purchase_id), total, reason=reason
            )
            if outcome.status == "applied":
                audit_service.record(
                    book.conn,
                    book.now,
                    actor,
                    Action.PURCHASE_REFUNDED,
                    account_id=book.id,
                    subject_id=purchase_id,
                    details={
                        "amount": amount,
                        "currency": purchase.price.currency,
                        "reason": reason,
                    },
                )
            return self._current(book, purchase_id)

        return self._on_account(
            purchase.account_id,
            claw_back,
            key=idempotency_key,
            operation="refund_purchase",
            params=params,
            result=Purchase,
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
        return self._on_account(
            account_id,
            self._spending(
                lambda book, _: purchases.configure_auto_recharge(
                    book,
                    enabled=enabled,
                    threshold=threshold,
                    package_id=package,
                    payment_method=payment_method,
                    monthly_cap=monthly_cap,
                ),
            ),
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

    def work(self, *, limit: int = 20, lease: timedelta = timedelta(seconds=60)) -> int:
        """Run the jobs that are due (applying payment events, starting recharges,
        delivering events), at most ``limit``; how many ran. A job that fails is tried
        again later with backoff; any number of processes may call this at once."""
        with self.db.write() as conn:
            taken = outbox.take(conn, self.clock(), lease, limit)
        handlers: dict[str, jobs.Handler] = {
            payment_events.APPLY_JOB: lambda job: self.apply_payment_event(str(job["event_id"])),
            purchases.AUTO_RECHARGE_JOB: lambda job: self.recharge(str(job["purchase_id"])),
        }
        for job in taken:
            if job.topic == webhooks_service.DELIVER_JOB:
                self._deliver(job)
                continue
            if job.topic == mail.DELIVER_JOB:
                self._email(job)
                continue
            error = jobs.run(job, handlers)
            now = self.clock()
            with self.db.write() as conn:
                if error is None:
                    if job.topic.startswith(jobs.EVENT_PREFIX):
                        webhooks_service.fan_out(conn, now, job)
                        if self.email is not None:
                            mail.fan_out(conn, now, job, self.email)
                    outbox.finish(conn, job, now)
                else:
                    retry = jobs.retry_at(job, now, self.retry_random)
                    outbox.fail(conn, job, error, now, retry)
        return len(taken)

    def _deliver(self, job: outbox.Job) -> None:
        """Send one event to one endpoint, outside any transaction; then log the attempt
        and finish or reschedule its job together."""
        with self.db.read() as conn:
            to = webhooks_service.target(conn, job, self._now())
        if to is None:
            with self.db.write() as conn:
                outbox.finish(conn, job, self._now())
            return
        answer = webhooks_service.send(
            to,
            job,
            self._now(),
            self.webhook_timeout,
            allow_private=self.webhook_allow_private,
            client=self._webhook_client(),
        )
        self._write(
            lambda conn, now: webhooks_service.record(
                conn, now, job, answer, self.webhook_disable_after, self.retry_random
            )
        )

    def _email(self, job: outbox.Job) -> None:
        """Send one event to one address, outside any transaction; then log the attempt
        and finish or reschedule its job together. Without email settings the job waits
        for them, retried like a server that cannot be reached."""
        if self.email is None:
            error: str | None = "email is not configured (CREDITMETER_SMTP_HOST)"
        else:
            error = mail.attempt(job, self.email)
        self._write(lambda conn, now: mail.record(conn, now, job, error, self.retry_random))

    def _webhook_client(self) -> httpx2.Client:
        """One HTTP client for the deliveries of this meter, made on first use: its
        connections stay open from one delivery to the next."""
        with self._http_lock:
            if self._http is None:
                self._http = webhooks_service.client()
            return self._http

    def jobs(self) -> dict[str, int]:
        """How many of the outbox's jobs are ``pending``, ``done`` and ``dead`` (given up
        after their last attempt, kept with their last error)."""
        with self.db.read() as conn:
            return outbox.counts(conn)

    def _receive(self, event: PaymentEvent) -> bool:
        received = self._write(
            lambda conn, now: payment_events.receive(conn, now, event, self.payments.name)
        )
        if received:
            self._jobs_queued()
        return received

    def _selling(self) -> None:
        """Raise ``PaymentsNotConfigured`` before anything is written if nothing is sold."""
        if isinstance(self.payments, PaymentsOff):
            raise PaymentsNotConfigured(PAYMENTS_OFF)

    def _jobs_queued(self) -> None:
        for listener in self.job_listeners:
            listener()

    def apply_payment_event(self, event_id: str) -> str:
        """Apply a stored payment event, unless it was applied already; its status
        (``applied``, ``ignored`` or ``flagged``). Run by the worker."""
        with self.db.read() as conn:
            found = payment_events.stored(conn, event_id)
        if found is None:
            raise NotFound("payment event", event_id)
        event, provider, status = found
        if status != "received":
            return status
        return self._write(
            lambda conn, now: payment_events.apply(
                conn, now, settings_service.current(conn), event, provider
            )
        )

    def recharge(self, purchase_id: str) -> None:
        """Charge an auto-recharge's saved card off-session and credit it (or count the
        failure); run by the worker."""
        purchase = self.purchase(purchase_id)
        if purchase.status is not PurchaseStatus.PENDING:
            return
        config = self.auto_recharge(purchase.account_id)
        if not config.enabled or config.payment_method is None:
            self._fail_purchase(purchase_id, "auto-recharge was disabled before it ran")
            return
        customer = self.payment_customer(purchase.account_id)
        try:
            intent = self.payments.charge_off_session(purchase, customer, config.payment_method)
        except PaymentDeclined as declined:
            self._fail_purchase(purchase_id, declined.message, declined.payment_intent_id)
            return
        except PaymentError as refused:  # e.g. a payment method not the customer's
            self._fail_purchase(purchase_id, refused.message)
            return
        self._on_account(
            purchase.account_id,
            lambda book, _: purchases.fulfil(
                book,
                self._current(book, purchase_id),
                purchase.price,
                session_id=None,
                payment_intent_id=intent,
            ),
        )

    def _fail_purchase(
        self, purchase_id: str, reason: str, payment_intent_id: str | None = None
    ) -> None:
        """Fail a pending purchase (recording the provider's intent, if it made one), in
        one transaction under its account's lock."""

        def fail(book: AccountBook, settings: Settings) -> Outcome:
            current = self._current(book, purchase_id)
            if payment_intent_id is not None and current.payment_intent_id is None:
                payments_store.set_provider_ids(
                    book.conn,
                    purchase_id,
                    session_id=current.session_id,
                    payment_intent_id=payment_intent_id,
                )
                current = self._current(book, purchase_id)
            return purchases.fail(book, settings, current, reason)

        self._on_account(self.purchase(purchase_id).account_id, fail)

    @staticmethod
    def _current(book: AccountBook, purchase_id: str) -> Purchase:
        """A purchase as it is under its account's lock."""
        found = payments_store.get_purchase(book.conn, purchase_id)
        assert found is not None
        return found

    def payment_customer(self, account_id: str) -> str:
        """The account's customer at the payment provider, made on first need."""
        with self.db.read() as conn:
            row = accounts.get(conn, account_id)
        if row is None:
            raise NotFound("account", account_id)
        if row.payment_customer_id is not None:
            return row.payment_customer_id
        made = self.payments.create_customer(account_id, row.account.name)
        return self._write(lambda conn, _: accounts.claim_payment_customer(conn, account_id, made))

    def _secret(self, name: str) -> str:
        """The database's random secret ``name`` (URL-safe, 256 bits), made on first use
        and the same in every process on the database."""
        found = self._secrets.get(name)
        if found is None:
            with self.db.read() as conn:
                found = secrets_store.get(conn, name)
            if found is None:
                found = self._write(lambda conn, now: self._make_secret(conn, now, name))
            self._secrets[name] = found
        return found

    @staticmethod
    def _make_secret(conn: Connection, now: datetime, name: str) -> str:
        found = secrets_store.get(conn, name)  # another process may have made it
        if found is None:
            found = secrets.token_urlsafe(32)
            secrets_store.insert(conn, name, found, now)
        return found

    # Maintenance and verification.

    def sweep(self, *, limit: int = 1000) -> int:
        """Bring idle accounts up to date (expired holds, rollover, expiry) and queue
        ``grant.expiring`` for grants about to expire; returns how many accounts were
        due."""
        with self.db.read() as conn:
            due = accounts.ids_due(conn, self._now(), limit)
        for account_id in due:
            self._on_account(account_id, lambda book, _: None)
        self._warn_expiring_grants(limit)
        return len(due)

    def _warn_expiring_grants(self, limit: int) -> int:
        """Queue ``grant.expiring`` (once per grant) for grants that expire within the
        ``grant_expiring_days`` setting; how many were queued."""
        total = 0
        while True:
            queued = self._write(
                lambda conn, now: alerts.warn_expiring_grants(
                    conn, now, settings_service.current(conn), limit
                )
            )
            total += queued
            if queued:
                self._jobs_queued()
            if queued < limit:
                return total

    def verify(self) -> list[Violation]:
        """Every violation of the ledger's invariants in this database (none, normally)."""
        with self.db.read() as conn:
            return verify(conn)

    # Transactions, retries and idempotency.

    def _write(self, use_case: Callable[[Connection, datetime], T]) -> T:
        return _retrying(lambda: self._in_write(use_case))

    def _now(self) -> datetime:
        """The clock's time in UTC; a naive time is refused rather than guessed at."""
        now = self.clock()
        if now.tzinfo is None:
            raise ValueError("the clock must return timezone-aware datetimes")
        return now.astimezone(UTC)

    def _in_write(self, use_case: Callable[[Connection, datetime], T]) -> T:
        with self.db.write() as conn:
            return use_case(conn, self._now())

    def _on_account(
        self,
        account_id: str,
        use_case: Callable[[AccountBook, Settings], T],
        *,
        key: str | None = None,
        operation: str = "",
        params: Mapping[str, Any] | None = None,
        result: type[T] | None = None,
    ) -> T:
        outcome, fresh = self._write(
            lambda conn, now: self._locked(
                conn, now, account_id, use_case, key, operation, params or {}, result
            )
        )
        return self._observed(outcome, fresh)

    def _on_hold(
        self,
        hold_id: str,
        use_case: Callable[[holds.FoundHold], Callable[[AccountBook, Settings], T]],
        *,
        key: str | None,
        operation: str,
        params: Mapping[str, Any],
        result: type[T],
    ) -> T:
        """``use_case(found)`` on the account of the hold found. The hold is read before
        its account is locked: the use case refuses one no longer pending, and a hold
        that another writer finishes in between makes the use case's conditional update
        of it miss, so the use case runs again and sees it finished."""

        def locked(conn: Connection, now: datetime) -> tuple[T, bool]:
            found = holds.get(conn, hold_id)
            if found is None:
                raise NotFound("hold", hold_id)
            on_account = use_case(found)
            account_id = found.hold.account_id
            return self._locked(conn, now, account_id, on_account, key, operation, params, result)

        return self._observed(*self._write(locked))

    def _settings(self, conn: Connection, version: int | None) -> Settings:
        """The settings in force: those remembered if ``version`` (read with the account)
        is theirs, else read now and remembered."""
        remembered = self._remembered_settings
        if remembered is not None and remembered[0] == version:
            return remembered[1]
        self._remembered_settings = settings_service.versioned(conn)
        return self._remembered_settings[1]

    def _catalog(self, row: AccountRow) -> dict[tuple[str, str], object] | None:
        """The features and plans remembered for the catalog's version read with ``row``:
        new ones when it changed."""
        if row.catalog_version is None:
            return None
        remembered = self._remembered_catalog
        if remembered is None or remembered[0] != row.catalog_version:
            remembered = (row.catalog_version, {})
            self._remembered_catalog = remembered
        return remembered[1]

    def _spending(
        self, use_case: Callable[[AccountBook, Settings], T]
    ) -> Callable[[AccountBook, Settings], T]:
        """``use_case``, then an auto-recharge if it left the account below its threshold."""

        def spend(book: AccountBook, settings: Settings) -> T:
            outcome = use_case(book, settings)
            if purchases.start_recharge_if_low(book, settings, self.payments.name):
                self._local.jobs_queued = True
            return outcome

        return spend

    def _observed(self, outcome: T, fresh: bool) -> T:
        """Tell the charge observers of a charge just committed (not of a replay), and the
        job listeners of jobs it queued."""
        if fresh and isinstance(outcome, Charge):
            for observer in self.charge_observers:
                observer(outcome)
        if getattr(self._local, "jobs_queued", False):
            self._local.jobs_queued = False
            self._jobs_queued()
        return outcome

    def _locked(
        self,
        conn: Connection,
        now: datetime,
        account_id: str,
        use_case: Callable[[AccountBook, Settings], T],
        key: str | None,
        operation: str,
        params: Mapping[str, Any],
        result: type[T] | None,
    ) -> tuple[T, bool]:
        """The use case's outcome, and whether it is new (not the replay of a key)."""
        # From the lock to the end of the transaction, the process's lock on the account.
        with self.db.account_locks(conn, account_id):
            # The key is read in the round trip that takes the lock, once it is taken: a
            # retry waits for the call it repeats, then finds its result.
            replayed = key if result is not None else None
            row, loaded, stored = lock_current_and_key(conn, now, account_id, replayed)
            # Only a keyed call is fingerprinted: unkeyed ones pay nothing for idempotency.
            fingerprint = "" if key is None else idempotency.fingerprint(operation, params)
            if replayed is not None and result is not None:
                first = idempotency.first_result(replayed, stored, operation, fingerprint, result)
                if first is not None:
                    return first, False
            book = AccountBook(conn, row, now, self._catalog(row), loaded=loaded)
            settings = self._settings(conn, row.settings_version)
            outcome = use_case(book, settings)
            if alerts.check(book, settings):
                self._local.jobs_queued = True
            # The writes and the COMMIT in one round trip on PostgreSQL: a conditional
            # change that misses is refused by the database, which makes the COMMIT a
            # rollback.
            with pipelined(conn, commit=True):
                book.save()
                if key is not None:
                    idempotency.remember(conn, key, operation, fingerprint, outcome, now)
        return outcome, True

    def _charge_groups(
        self, conn: Connection, now: datetime, groups: Mapping[str, Sequence[UsageEvent]]
    ) -> dict[str, list[tuple[Charge | CreditMeterError, bool]]]:
        """Each account's events, its account locked in id order (after the process's
        own locks on them): each event charged or refused on its own, with its own idempotency
        key; each account's grants and totals written in one save, and the transactions,
        usage records and keys of all of them in one insert each, all in one
        transaction."""
        keys = [e.idempotency_key for g in groups.values() for e in g if e.idempotency_key]
        stored = idempotency_store.find_many(conn, keys)
        settings = settings_service.current(conn)
        new_keys: list[tuple[str, str, str, Any]] = []
        appends = Appends()
        outcomes: dict[str, list[tuple[Charge | CreditMeterError, bool]]] = {}
        with self.db.account_locks(conn, *groups):
            locked = lock_current_many(conn, now, sorted(groups))
            for account_id in sorted(groups):
                events = groups[account_id]
                if account_id not in locked:
                    outcomes[account_id] = [(NotFound("account", account_id), False)] * len(events)
                    continue
                row, loaded = locked[account_id]
                book = AccountBook(conn, row, now, self._catalog(row), appends, loaded=loaded)
                outcomes[account_id] = [
                    self._charge_event(book, settings, event, stored, new_keys) for event in events
                ]
                if purchases.start_recharge_if_low(book, settings, self.payments.name):
                    self._local.jobs_queued = True
                if alerts.check(book, settings):
                    self._local.jobs_queued = True
                book.save()
            appends.write(conn)
            idempotency_store.record_many(conn, new_keys, now)
        return outcomes

    def _charge_event(
        self,
        book: AccountBook,
        settings: Settings,
        event: UsageEvent,
        stored: dict[str, tuple[str, str, Any]],
        new_keys: list[tuple[str, str, str, Any]],
    ) -> tuple[Charge | CreditMeterError, bool]:
        """One event of a batch: its charge or its refusal, and whether it is new."""
        key = event.idempotency_key
        fingerprint = "" if key is None else idempotency.fingerprint("charge", event.params())
        try:
            if key is not None:
                first = idempotency.first_result(
                    key, stored.get(key), "charge", fingerprint, Charge
                )
                if first is not None:
                    return first, False
            rated = metering.rate(
                book, settings, event.feature, event.usage, event.credits, event.model
            )
            charge = metering.charge(
                book,
                settings,
                rated,
                model=event.model,
                member=event.member,
                metadata=event.metadata or {},
                provider_cost=event.provider_cost,
            )
        except CreditMeterError as refused:
            return refused, False
        if key is not None:
            result = idempotency.dump(charge)
            stored[key] = ("charge", fingerprint, result)
            new_keys.append((key, "charge", fingerprint, result))
        return charge, True

    def _read_account(self, account_id: str, query: Callable[[AccountBook, Settings], T]) -> T:
        """Answer from a snapshot; an account with overdue upkeep is brought up to date
        (and so written) first."""
        with self.db.read() as conn:
            now = self._now()
            row = accounts.get(conn, account_id)
            if row is None:
                raise NotFound("account", account_id)
            if now < row.due_at:
                return query(
                    AccountBook(conn, row, now, self._catalog(row)),
                    self._settings(conn, row.settings_version),
                )
        return self._on_account(account_id, query)


class HeldOperation:
    """The hold of a ``with meter.holding(…)`` block; call :meth:`settle` with the actual
    usage."""

    def __init__(self, meter: CreditMeter, hold: Hold) -> None:
        self.meter = meter
        self.hold = hold
        self.charge: Charge | None = None

    def settle(self, **actual: Any) -> Charge:
        self.charge = self.meter.settle(self.hold.id, **actual)
        return self.charge


def _retrying(attempt: Callable[[], T]) -> T:
    """Run a use case again when a concurrent writer got there first (a unique key taken:
    same idempotency key, same new account id; a conditional update that missed), or when
    the database rolled its transaction back for a reason of the moment (a deadlock, a
    serialization failure: :func:`database.transient`). A lock waited for until the lock
    timeout is not waited for again: :class:`database.LockTimeout` goes to the caller."""
    for remaining in reversed(range(ATTEMPTS)):
        try:
            return attempt()
        except (ConcurrentUpdate, DBAPIError) as error:
            if remaining == 0 or not _retryable(error):
                raise
    raise AssertionError("unreachable")


def _retryable(error: Exception) -> bool:
    """Decided by the error's type, SQLSTATE or SQLite result code, never by its text."""
    return isinstance(error, ConcurrentUpdate | IntegrityError) or database.transient(error)
