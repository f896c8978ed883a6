"""The audit log: who changed credits, prices, plans, settings or keys."""

from __future__ import annotations

import io
from collections.abc import Iterator
from itertools import islice
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from creditmeter.api.auth import Admin, Meter
from creditmeter.api.routers.ledger import (
    CSV_BATCH,
    CSV_RESPONSE,
    Cursor,
    Format,
    Limit,
    Since,
    Until,
)
from creditmeter.api.schemas.admin import AuditEntryOut
from creditmeter.api.schemas.common import Page, errors
from creditmeter.core.audit import Action, AuditEntry
from creditmeter.service.audit import write_csv

router = APIRouter(prefix="/v1", tags=["admin"])


def _csv(entries: Iterator[AuditEntry]) -> Iterator[str]:
    """The CSV of ``write_csv``, a batch of entries at a time."""
    out = io.StringIO()
    write_csv(iter(()), out)
    header = out.getvalue()
    yield header
    while batch := list(islice(entries, CSV_BATCH)):
        out = io.StringIO()
        write_csv(iter(batch), out)
        yield out.getvalue()[len(header) :]


@router.get(
    "/audit-log",
    response_model=Page[AuditEntryOut],
    responses={**CSV_RESPONSE, **errors(401, 403, 422)},
)
def audit_log(
    meter: Meter,
    _: Admin,
    actor: Annotated[
        str | None,
        Query(
            max_length=255,
            description="A stored key's id, or a kind of actor: `api_key` (any stored key), "
            "`admin_key_env`, `library`, `cli`.",
        ),
    ] = None,
    account: Annotated[
        str | None, Query(max_length=255, description="Only entries about this account.")
    ] = None,
    actions: Annotated[
        list[Action], Query(alias="action", description="Only these actions; repeat for several.")
    ] = [],  # noqa: B006 - FastAPI copies a query default
    since: Since = None,
    until: Until = None,
    limit: Limit = 50,
    cursor: Cursor = None,
    format: Format = "json",
) -> Page[AuditEntryOut] | StreamingResponse:
    """Who changed what, newest first: grants, refunds, voids, account plan, status,
    overdraft and other changes, settings, the price book, plans, packages, and API keys
    made or revoked. Each entry names the stored key that acted, or says it was the key
    of `CREDITMETER_ADMIN_KEY`."""
    filters: dict[str, Any] = {
        "actor": actor,
        "account": account,
        "actions": tuple(a.value for a in actions),
        "since": since,
        "until": until,
    }
    if format == "csv":
        meter.audit_log(limit=1, **filters)  # bad filters answer 422 before the stream starts
        return StreamingResponse(
            _csv(meter.iter_audit_log(**filters)),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="audit-log.csv"'},
        )
    found = meter.audit_log(limit=limit, cursor=cursor, **filters)
    return Page(data=[AuditEntryOut.of(e) for e in found.data], next_cursor=found.next_cursor)
