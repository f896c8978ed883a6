"""The audit log: an entry written in the transaction of each change it records; its
pages, filtered, and its CSV."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import IO, Any

from sqlalchemy.engine import Connection

from creditmeter.core.audit import Action, Actor, ActorKind, AuditEntry
from creditmeter.core.errors import InvalidRequest
from creditmeter.core.ids import new_id
from creditmeter.core.records import Page
from creditmeter.service import csv_export
from creditmeter.service.queries import bound, paged
from creditmeter.store import audit


def record(
    conn: Connection,
    now: datetime,
    actor: Actor,
    action: Action,
    *,
    account_id: str | None = None,
    subject_id: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """Append an entry in the transaction of ``conn``: it commits, or rolls back, with
    the change it records."""
    entry = AuditEntry(
        id=new_id("aud"),
        created_at=now,
        actor=actor,
        action=action,
        account_id=account_id,
        subject_id=subject_id,
        details=dict(details or {}),
    )
    audit.insert(conn, entry)
    return entry


def moment(value: datetime | None) -> str | None:
    """A time as an entry's details keep it."""
    return None if value is None else value.isoformat()


def known_actions(names: tuple[str, ...]) -> tuple[Action, ...]:
    try:
        return tuple(Action(n) for n in names)
    except ValueError:
        known = ", ".join(a.value for a in Action)
        raise InvalidRequest(f"action must be one of {known}") from None


def page(
    conn: Connection,
    *,
    actor: str | None = None,
    account: str | None = None,
    actions: tuple[str, ...] = (),
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> Page[AuditEntry]:
    """Entries newest first. ``actor`` is a key's id, or a kind of actor (``api_key``:
    any stored key; ``admin_key_env``, ``library``, ``cli``)."""
    kinds = {k.value: k for k in ActorKind}
    kind = kinds.get(actor) if actor is not None else None
    wanted = known_actions(actions)
    return paged(
        lambda before, n: audit.page(
            conn,
            actor_key_id=actor if kind is None else None,
            actor_kind=kind,
            account_id=account,
            actions=wanted,
            since=bound(since, "since"),
            until=bound(until, "until"),
            before=before,
            limit=n,
        ),
        limit,
        cursor,
    )


CSV_COLUMNS = (
    "id",
    "created_at",
    "actor_kind",
    "actor_key_id",
    "action",
    "account",
    "subject",
    "details",
)


def write_csv(entries: Iterator[AuditEntry], out: IO[str]) -> int:
    """Write entries as CSV, one line each (the details as JSON); returns how many."""
    writer = csv_export.Writer(out)
    writer.writerow(CSV_COLUMNS)
    count = 0
    for e in entries:
        writer.writerow(
            [
                e.id,
                e.created_at.isoformat(),
                e.actor.kind.value,
                e.actor.key_id or "",
                e.action.value,
                e.account_id or "",
                e.subject_id or "",
                json.dumps(dict(e.details), sort_keys=True),
            ]
        )
        count += 1
    return count
