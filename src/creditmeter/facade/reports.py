"""What the books say: balances, transactions, usage, stats and the audit log."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import IO, Any, TypeVar

from creditmeter.core.audit import AuditEntry
from creditmeter.core.errors import NotFound
from creditmeter.core.grants import Grant
from creditmeter.core.records import (
    Balance,
    Page,
    Transaction,
    UsageGroup,
    UsageRecord,
)
from creditmeter.core.stats import (
    AccountPage,
    DailyUsage,
    FeatureStats,
    Forecast,
    ModelStats,
    SystemStats,
)
from creditmeter.facade.base import MeterBase
from creditmeter.service import audit as audit_service
from creditmeter.service import (
    queries,
)
from creditmeter.service import settings as settings_service
from creditmeter.service import stats as stats_service
from creditmeter.store import grants as grants_store
from creditmeter.store import usage

T = TypeVar("T")


class ReportVerbs(MeterBase):
    def balance(self, account_id: str) -> Balance:
        return self._units.read_account(account_id, queries.balance)

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
        return self._units.read_account(
            account_id,
            lambda account, _: stats_service.forecast(
                account.conn, account.id, account.available, account.now
            ),
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
