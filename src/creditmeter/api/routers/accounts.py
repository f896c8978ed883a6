"""Accounts and their balances."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from creditmeter.api.auth import AccountReader, Admin, Meter, Service, actor
from creditmeter.api.schemas.accounts import (
    AccountChange,
    AccountCreate,
    AccountOut,
    BalanceOut,
)
from creditmeter.api.schemas.common import IdempotencyKey, Page, errors

router = APIRouter(prefix="/v1/accounts", tags=["accounts"])


@router.post("", responses=errors(401, 403, 404, 409, 422))
def create_account(
    body: AccountCreate, meter: Meter, key: Service, idempotency_key: IdempotencyKey = None
) -> AccountOut:
    """Create an account, or return it as it is if the id exists: its first allowance and
    the welcome bonus are granted once, however often it is created."""
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
def change_account(account_id: str, body: AccountChange, meter: Meter, key: Admin) -> AccountOut:
    """Change the name, status, metadata, overdraft limit or plan."""
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
    warnings; read from running totals, not summed from history."""
    return BalanceOut.of(meter.balance(account_id))
