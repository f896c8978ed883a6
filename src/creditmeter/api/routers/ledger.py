"""The ledger, usage and its summaries, grants and refunds of an account."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from itertools import islice
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from creditmeter.api.auth import AccountReader, Admin, Meter, Superadmin, actor
from creditmeter.api.schemas.common import IdempotencyKey, Page, errors
from creditmeter.api.schemas.ledger import (
    GrantCreate,
    GrantOut,
    GrantResultOut,
    GrantVoid,
    RefundCreate,
    RefundOfUsage,
    Time,
    TransactionOut,
    UsageGroupOut,
    UsageOut,
    UsageSummaryOut,
)
from creditmeter.core import records
from creditmeter.core.identifiers import IDENTIFIER_PATTERN
from creditmeter.core.pricing import decimal_text
from creditmeter.core.records import Transaction, UsageRecord
from creditmeter.core.types import TransactionType
from creditmeter.meter import CreditMeter
from creditmeter.service import csv_export
from creditmeter.service.queries import write_transactions_csv

router = APIRouter(prefix="/v1/accounts", tags=["ledger"])

T = TypeVar("T")
R = TypeVar("R")
CSV_BATCH = 500

Since = Annotated[
    Time | None,
    Query(alias="from", description="From this time on (inclusive), ISO 8601 with a timezone."),
]
Until = Annotated[
    Time | None,
    Query(alias="to", description="Before this time (exclusive), ISO 8601 with a timezone."),
]
Limit = Annotated[int, Query(ge=1, le=1000, description="Items per page.")]
Cursor = Annotated[
    str | None, Query(max_length=255, description="`next_cursor` of the previous page.")
]
Format = Annotated[
    Literal["json", "csv"],
    Query(description="`csv` streams every matching item; `limit` and `cursor` are ignored."),
]
Feature = Annotated[str | None, Query(pattern=IDENTIFIER_PATTERN, description="Only this feature.")]
Member = Annotated[str | None, Query(pattern=IDENTIFIER_PATTERN, description="Only this member.")]

CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"text/csv": {"schema": {"type": "string"}}},
        "description": "A page as JSON, or with `format=csv` every matching item as CSV.",
    }
}


def _batches(items: Iterator[T]) -> Iterator[list[T]]:
    while batch := list(islice(items, CSV_BATCH)):
        yield batch


def _transactions_csv(rows: Iterator[Transaction]) -> Iterator[str]:
    """The CSV of ``write_transactions_csv``, a batch of rows at a time."""
    out = io.StringIO()
    write_transactions_csv(iter(()), out)
    header = out.getvalue()
    yield header
    for batch in _batches(rows):
        out = io.StringIO()
        write_transactions_csv(iter(batch), out)
        yield out.getvalue()[len(header) :]


USAGE_CSV_COLUMNS = (
    "id",
    "created_at",
    "feature",
    "feature_version",
    "model",
    "member",
    "quantities",
    "credits",
    "charged",
    "debited",
    "uncollected",
    "refunded",
    "unlimited",
    "success",
    "hold_id",
    "provider_cost",
    "price_book_version",
    "unknown_model",
)


def _usage_csv(rows: Iterator[UsageRecord]) -> Iterator[str]:
    out = io.StringIO()
    writer = csv_export.Writer(out)
    writer.writerow(USAGE_CSV_COLUMNS)
    yield _drain(out)
    for batch in _batches(rows):
        for u in batch:
            writer.writerow(
                [
                    u.id,
                    u.created_at.isoformat(),
                    u.feature,
                    u.feature_version,
                    u.model or "",
                    u.member or "",
                    json.dumps(dict(u.quantities), sort_keys=True, default=str),
                    u.credits,
                    u.charged,
                    u.debited,
                    u.uncollected,
                    u.refunded,
                    "true" if u.unlimited else "false",
                    "true" if u.success else "false",
                    u.hold_id or "",
                    "" if u.provider_cost is None else decimal_text(u.provider_cost),
                    "" if u.price_book_version is None else u.price_book_version,
                    "true" if u.unknown_model else "false",
                ]
            )
        yield _drain(out)


def _drain(out: io.StringIO) -> str:
    text = out.getvalue()
    out.seek(0)
    out.truncate()
    return text


def _iter_usage(meter: CreditMeter, account_id: str, **filters: Any) -> Iterator[UsageRecord]:
    cursor = None
    while True:
        page = meter.usage(account_id, limit=CSV_BATCH, cursor=cursor, **filters)
        yield from page.data
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def _csv(account_id: str, what: str, chunks: Iterator[str]) -> StreamingResponse:
    return StreamingResponse(
        chunks,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{account_id}-{what}.csv"'},
    )


def _page(found: records.Page[R], shape: Callable[[R], T]) -> Page[T]:
    return Page(data=[shape(item) for item in found.data], next_cursor=found.next_cursor)


@router.get(
    "/{account_id}/transactions",
    response_model=Page[TransactionOut],
    responses={**CSV_RESPONSE, **errors(401, 404, 422)},
)
def list_transactions(
    account_id: str,
    meter: Meter,
    _: AccountReader,
    types: Annotated[
        list[TransactionType],
        Query(alias="type", description="Only these types; repeat for several."),
    ] = [],  # noqa: B006 - FastAPI copies a query default
    since: Since = None,
    until: Until = None,
    limit: Limit = 50,
    cursor: Cursor = None,
    format: Format = "json",
) -> Page[TransactionOut] | StreamingResponse:
    """The account's ledger, newest first. Each transaction carries the account's
    available credits before and after it, and its postings: one per grant drawn from or
    added to, and the system account on the other side."""
    filters: dict[str, Any] = {
        "types": tuple(t.value for t in types),
        "since": since,
        "until": until,
    }
    if format == "csv":
        meter.account(account_id)
        rows = meter.iter_transactions(account_id, **filters)
        return _csv(account_id, "transactions", _transactions_csv(rows))
    found = meter.transactions(account_id, limit=limit, cursor=cursor, **filters)
    return _page(found, TransactionOut.of)


@router.get(
    "/{account_id}/usage",
    response_model=Page[UsageOut],
    responses={**CSV_RESPONSE, **errors(401, 404, 422)},
)
def list_usage(
    account_id: str,
    meter: Meter,
    _: AccountReader,
    feature: Feature = None,
    member: Member = None,
    since: Since = None,
    until: Until = None,
    limit: Limit = 50,
    cursor: Cursor = None,
    format: Format = "json",
) -> Page[UsageOut] | StreamingResponse:
    """The account's usage records, newest first: what each operation consumed, what it
    cost, and how it was paid."""
    filters: dict[str, Any] = {
        "feature": feature,
        "member": member,
        "since": since,
        "until": until,
    }
    if format == "csv":
        meter.account(account_id)
        return _csv(account_id, "usage", _usage_csv(_iter_usage(meter, account_id, **filters)))
    found = meter.usage(account_id, limit=limit, cursor=cursor, **filters)
    return _page(found, UsageOut.of)


@router.get("/{account_id}/usage/summary", responses=errors(401, 404, 422))
def usage_summary(
    account_id: str,
    meter: Meter,
    _: AccountReader,
    group_by: Annotated[
        Literal["day", "week", "month", "feature", "model", "member"],
        Query(description="Days, weeks and months are in UTC."),
    ] = "day",
    feature: Feature = None,
    member: Member = None,
    since: Since = None,
    until: Until = None,
) -> UsageSummaryOut:
    """Usage added up by day, week, month, feature, model or member, in key order."""
    groups = meter.usage_summary(
        account_id, group_by=group_by, feature=feature, member=member, since=since, until=until
    )
    return UsageSummaryOut(data=[UsageGroupOut.of(g) for g in groups])


@router.get("/{account_id}/grants", responses=errors(401, 403, 404, 422))
def list_grants(
    account_id: str,
    meter: Meter,
    _: Admin,
    include_spent: Annotated[
        bool, Query(description="Also grants that are used up or expired.")
    ] = False,
) -> Page[GrantOut]:
    """The account's grants, in the order they are drawn from."""
    grants = meter.grants(account_id, include_spent=include_spent)
    return Page(data=[GrantOut.of(g) for g in grants], next_cursor=None)


@router.post("/{account_id}/grants", responses=errors(401, 403, 404, 409, 422))
def create_grant(
    account_id: str,
    body: GrantCreate,
    meter: Meter,
    key: Superadmin,
    idempotency_key: IdempotencyKey = None,
) -> GrantResultOut:
    """Give the account credits by hand: a new grant and its ledger transaction. Debt the
    account owes is repaid from it first."""
    result = meter.grant(
        account_id,
        body.amount,
        source=body.source,
        pool=body.pool,
        priority=body.priority,
        expires_at=body.expires_at,
        effective_at=body.effective_at,
        reason=body.reason,
        reference=body.reference,
        idempotency_key=idempotency_key,
        actor=actor(key),
    )
    return GrantResultOut.of(account_id, result)


@router.post("/{account_id}/refunds", responses=errors(401, 403, 404, 409, 422))
def create_refund(
    account_id: str,
    body: RefundCreate,
    meter: Meter,
    key: Superadmin,
    idempotency_key: IdempotencyKey = None,
) -> TransactionOut:
    """Give a usage's credits back to the grants it drew from (an expired grant's share
    comes back as a new refund grant), or give an amount as a new refund grant."""
    if isinstance(body, RefundOfUsage):
        refund = meter.refund(
            account_id,
            usage_id=body.usage_id,
            reason=body.reason,
            idempotency_key=idempotency_key,
            actor=actor(key),
        )
    else:
        refund = meter.refund(
            account_id,
            amount=body.amount,
            reason=body.reason,
            idempotency_key=idempotency_key,
            actor=actor(key),
        )
    return TransactionOut.of(refund)


@router.post("/{account_id}/grants/{grant_id}/void", responses=errors(401, 403, 404, 409, 422))
def void_grant(
    account_id: str,
    grant_id: str,
    body: GrantVoid,
    meter: Meter,
    key: Superadmin,
    idempotency_key: IdempotencyKey = None,
) -> TransactionOut:
    """Take the credits left in a grant away, as a `void` transaction; the grant is never
    drawn from or refilled again. Debt is not touched. Pending holds on the grant make it
    409 `grant_held` (their ids in `holds`) unless `held` is `release`."""
    txn = meter.void_grant(
        account_id,
        grant_id,
        reason=body.reason,
        held=body.held,
        idempotency_key=idempotency_key,
        actor=actor(key),
    )
    return TransactionOut.of(txn)
