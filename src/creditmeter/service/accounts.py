"""Accounts: creation (welcome bonus once), changes, plan changes, members."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from creditmeter.core.audit import Action, Actor
from creditmeter.core.errors import InvalidRequest, NotFound
from creditmeter.core.grants import Grant
from creditmeter.core.identifiers import identifier
from creditmeter.core.metadata import checked
from creditmeter.core.plans import Plan
from creditmeter.core.pricing import credit_amount
from creditmeter.core.records import Account
from creditmeter.core.settings import Settings
from creditmeter.core.types import (
    AccountStatus,
    Credits,
    GrantSource,
    TransactionType,
)
from creditmeter.service import alerts, audit
from creditmeter.service.locked_account import LockedAccount
from creditmeter.service.maintenance import current_period, issue_allowance, plan_of
from creditmeter.store import accounts, catalog
from creditmeter.store.accounts import AccountRow


def get_plan(conn: Connection, key: str) -> Plan:
    plan = catalog.get_plan(conn, key)
    if plan is None:
        raise NotFound("plan", key)
    return plan


def create(
    conn: Connection,
    settings: Settings,
    now: datetime,
    account_id: str,
    *,
    name: str | None,
    plan_key: str | None,
    metadata: Mapping[str, Any],
    overdraft_limit: Credits,
    actor: Actor,
) -> tuple[Account, bool]:
    """The account with this id, created with its allowance and welcome bonus if new;
    ``True`` when it was created now."""
    existing = accounts.get(conn, identifier(account_id, "an account id"))
    metadata = checked(metadata)
    if existing is not None:
        return existing.account, False
    plan = None if plan_key is None else get_plan(conn, plan_key)
    credit_amount(overdraft_limit, "overdraft_limit")
    period = current_period(plan, now, now)
    row = AccountRow(
        account=Account(
            id=account_id,
            name=name or account_id,
            plan=plan_key,
            pending_plan=None,
            status=AccountStatus.ACTIVE,
            created_at=now,
            period_start=period.start,
            period_end=period.end,
            overdraft_limit=overdraft_limit,
            metadata=dict(metadata),
        ),
        balance=0,
        held=0,
        debt=0,
        due_at=period.end,
    )
    accounts.insert(conn, row)
    details = {"name": row.account.name, "plan": plan_key, "overdraft_limit": overdraft_limit}
    audit.record(
        conn,
        now,
        actor,
        Action.ACCOUNT_CREATED,
        account_id=account_id,
        subject_id=account_id,
        details=details,
    )
    account = LockedAccount(conn, row, now)
    if plan is not None and not plan.renewed_by_invoice:
        issue_allowance(account, plan, period)
    if settings.welcome_bonus > 0:
        bonus = account.open_grant(GrantSource.BONUS, pool="*", reference="welcome_bonus")
        account.issue(
            {bonus.id: settings.welcome_bonus},
            GrantSource.BONUS,
            TransactionType.GRANT,
            f"welcome bonus of {settings.welcome_bonus} credits",
        )
    account.save()
    return row.account, True


def update(
    account: LockedAccount,
    *,
    name: str | None = None,
    status: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    overdraft_limit: Credits | None = None,
    actor: Actor,
) -> Account:
    """Change what is given; each change of value is recorded in the audit log."""
    before = after = account.row.account
    if name is not None:
        after = replace(after, name=name)
    if status is not None:
        try:
            after = replace(after, status=AccountStatus(status))
        except ValueError:
            known = ", ".join(s.value for s in AccountStatus)
            raise InvalidRequest(f"status must be one of {known}") from None
    if metadata is not None:
        after = replace(after, metadata=checked(metadata))
    if overdraft_limit is not None:
        credit_amount(overdraft_limit, "overdraft_limit")
        if overdraft_limit < account.row.debt:
            raise InvalidRequest(f"the account owes {account.row.debt}; the limit cannot be lower")
        after = replace(after, overdraft_limit=overdraft_limit)
    account.row.account = after
    _record_changes(account, before, after, actor)
    return after


def _record_changes(account: LockedAccount, before: Account, after: Account, actor: Actor) -> None:
    def record(action: Action, details: Mapping[str, Any]) -> None:
        audit.record(
            account.conn,
            account.now,
            actor,
            action,
            account_id=account.id,
            subject_id=account.id,
            details=details,
        )

    if before.status is not after.status:
        record(
            Action.ACCOUNT_STATUS_CHANGED, {"from": before.status.value, "to": after.status.value}
        )
        active = after.status is AccountStatus.ACTIVE
        alerts.queue(
            account.conn,
            account.now,
            "account.reactivated" if active else "account.suspended",
            {
                "account_id": account.id,
                "status": after.status.value,
                "previous": before.status.value,
            },
        )
    if before.overdraft_limit != after.overdraft_limit:
        record(
            Action.ACCOUNT_OVERDRAFT_CHANGED,
            {"from": before.overdraft_limit, "to": after.overdraft_limit},
        )
    updated = {
        field: {"from": old, "to": new}
        for field, old, new in (
            ("name", before.name, after.name),
            ("metadata", dict(before.metadata), dict(after.metadata)),
        )
        if old != new
    }
    if updated:
        record(Action.ACCOUNT_UPDATED, updated)


def change_plan(
    account: LockedAccount, plan_key: str, *, immediately: bool = False, actor: Actor | None = None
) -> Account:
    """Upgrades (and changes asked for ``immediately``) take effect now and top the
    allowance up; downgrades wait for the next period. The change is recorded in the
    audit log as ``actor``'s (a renewal by the payment provider names none: its invoice
    is the record)."""
    new = get_plan(account.conn, plan_key)
    old = plan_of(account)
    before = account.row.account
    if old is not None and not immediately and not new.is_upgrade_from(old):
        account.row.account = replace(before, pending_plan=new.key)
        effective = "next_period"
    else:
        account.row.account = replace(before, plan=new.key, pending_plan=None)
        if old is not None or not new.renewed_by_invoice:  # else its paid invoice issues it
            _top_up_allowance(account, new)
        effective = "now"
    if actor is not None:
        audit.record(
            account.conn,
            account.now,
            actor,
            Action.ACCOUNT_PLAN_CHANGED,
            account_id=account.id,
            subject_id=account.id,
            details={"from": before.plan, "to": new.key, "effective": effective},
        )
    return account.row.account


def _top_up_allowance(account: LockedAccount, plan: Plan) -> None:
    period_start = account.row.account.period_start
    current: dict[str, Grant] = {
        g.pool: g
        for g in account.grants
        if g.source is GrantSource.ALLOWANCE and g.period_start == period_start
    }
    issued: dict[str, Credits] = {}
    for pool, credits in sorted(plan.limited_allowances().items()):
        existing = current.get(pool)
        if existing is None and credits > 0:
            g = account.open_grant(
                GrantSource.ALLOWANCE,
                pool=pool,
                effective_at=period_start,
                expires_at=account.row.account.period_end,
                period_start=period_start,
                reference=f"plan:{plan.key}",
            )
            issued[g.id] = credits
        elif existing is not None and existing.voided_at is None and credits > existing.amount:
            issued[existing.id] = credits - existing.amount
    if issued:
        account.issue(
            issued,
            GrantSource.ALLOWANCE,
            TransactionType.ALLOCATION,
            f"allowance topped up to the {plan.name} plan",
        )


def add_member(conn: Connection, now: datetime, account_id: str, member_id: str, name: str) -> None:
    if accounts.get(conn, account_id) is None:
        raise NotFound("account", account_id)
    identifier(member_id, "a member id")
    accounts.upsert_member(conn, account_id, member_id, name, now)
