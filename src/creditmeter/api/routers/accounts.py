"""Accounts and their balances."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Final

from fastapi import APIRouter, Query

from creditmeter.api.auth import AccountReader, AccountService, Admin, Meter, Service, actor
from creditmeter.api.errors import Forbidden
from creditmeter.api.schemas.accounts import (
    AccountChange,
    AccountCreate,
    AccountOut,
    BalanceOut,
)
from creditmeter.api.schemas.common import IdempotencyKey, Page, errors
from creditmeter.core.keys import ApiKey, Role

router = APIRouter(prefix="/v1/accounts", tags=["accounts"])

WHO_SETS: Final = {
    "name": Role.SERVICE,
    "metadata": Role.SERVICE,
    "plan": Role.SERVICE,
    "status": Role.ADMIN,
    "overdraft_limit": Role.SUPERADMIN,
}
"""The least role that may set each of an account's fields, at its creation and later
alike. The service chooses among the plans a superadmin made (the host app sells them);
an overdraft lets an account spend credits it does not have, so it is the superadmin's,
as grants are (docs/api.md, "Who may create credits")."""


def _may_set(key: ApiKey, values: Mapping[str, object]) -> None:
    """403 unless ``key`` may set every field given a value (``None``: left as it is)."""
    for field, value in values.items():
        role = WHO_SETS[field]
        if value is not None and not key.at_least(role):
            raise Forbidden(f"setting {field} needs the {role.value} role or above")


@router.post("", responses=errors(401, 403, 404, 409, 422))
def create_account(
    body: AccountCreate, meter: Meter, key: Service, idempotency_key: IdempotencyKey = None
) -> AccountOut:
    """Create an account, or return it as it is if the id exists: its first allowance and
    the welcome bonus are granted once, however often it is created. An overdraft limit
    other than 0 needs the superadmin role."""
    _may_set(key, {"plan": body.plan, "overdraft_limit": body.overdraft_limit or None})
    account = meter.create_account(
        body.id,
        name=body.name,
        plan=body.plan,
        metadata=body.metadata,
        overdraft_limit=body.overdraft_limit,
        idempotency_key=idempotency_key,
        actor=actor(key),
    )
    return AccountOut.of(account)


@router.get("", responses=errors(401, 403, 422))
def list_accounts(
    meter: Meter,
    _: Admin,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=255)] = None,
) -> Page[AccountOut]:
    """Every account, by id; pass ``next_cursor`` back as ``cursor`` for the next page."""
    found = meter.list_accounts(after=cursor, limit=limit + 1)
    page = [AccountOut.of(a) for a in found[:limit]]
    return Page(data=page, next_cursor=page[-1].id if len(found) > limit else None)


@router.get("/{account_id}", responses=errors(401, 404))
def get_account(account_id: str, meter: Meter, _: AccountReader) -> AccountOut:
    return AccountOut.of(meter.account(account_id))


@router.patch("/{account_id}", responses=errors(401, 403, 404, 422))
def change_account(
    account_id: str, body: AccountChange, meter: Meter, key: AccountService
) -> AccountOut:
    """Change the name, metadata or plan (service and above), the status (admin and
    above) or the overdraft limit (superadmin)."""
    _may_set(key, {field: getattr(body, field) for field in WHO_SETS})
    account = meter.update_account(
        account_id,
        name=body.name,
        status=body.status,
        metadata=body.metadata,
        overdraft_limit=body.overdraft_limit,
        actor=actor(key),
    )
    if body.plan is not None:
        account = meter.change_plan(
            account_id, body.plan, immediately=body.plan_immediately, actor=actor(key)
        )
    return AccountOut.of(account)


@router.get("/{account_id}/balance", responses=errors(401, 404))
def get_balance(account_id: str, meter: Meter, _: AccountReader) -> BalanceOut:
    """Available and held credits, the period's allowance, purchased credits, pools and
    warnings, read from running totals; and the forecast, from the last 30 days' usage."""
    return BalanceOut.of(meter.balance(account_id), meter.forecast(account_id))
