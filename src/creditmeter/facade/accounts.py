"""Accounts: create, change, plans and members."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from creditmeter.core.audit import LIBRARY, Actor
from creditmeter.core.records import (
    Account,
)
from creditmeter.facade.base import MeterBase
from creditmeter.service import accounts as accounts_service
from creditmeter.service.unit_of_work import UnitOfWork, keyed
from creditmeter.store import accounts

T = TypeVar("T")


class AccountVerbs(MeterBase):
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

        def create(uow: UnitOfWork) -> Account:
            account, _ = accounts_service.create(
                uow.conn,
                uow.settings,
                uow.now,
                account_id,
                name=name,
                plan_key=plan,
                metadata=metadata or {},
                overdraft_limit=overdraft_limit,
                actor=actor,
            )
            return account

        return self._units.run(create, keyed(idempotency_key, "create_account", params, Account))

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
        return self._units.on_account(
            account_id,
            lambda account, _: accounts_service.update(
                account,
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
        return self._units.on_account(
            account_id,
            lambda account, _: accounts_service.change_plan(
                account, plan, immediately=immediately, actor=actor
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
