"""SQL for the audit log: appended to in a change's transaction, listed newest first."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from creditmeter.core.audit import Action, Actor, ActorKind, AuditEntry
from creditmeter.store.tables import audit_log

_INSERT = audit_log.insert()


def insert(conn: Connection, entry: AuditEntry) -> None:
    conn.execute(
        _INSERT,
        {
            "id": entry.id,
            "created_at": entry.created_at,
            "actor_kind": entry.actor.kind.value,
            "actor_key_id": entry.actor.key_id,
            "action": entry.action.value,
            "account_id": entry.account_id,
            "subject_id": entry.subject_id,
            "details": dict(entry.details),
        },
    )


def _entry(row: RowMapping) -> AuditEntry:
    return AuditEntry(
        id=row["id"],
        created_at=row["created_at"],
        actor=Actor(ActorKind(row["actor_kind"]), row["actor_key_id"]),
        action=Action(row["action"]),
        account_id=row["account_id"],
        subject_id=row["subject_id"],
        details=row["details"],
    )


def page(
    conn: Connection,
    *,
    actor_key_id: str | None = None,
    actor_kind: ActorKind | None = None,
    account_id: str | None = None,
    actions: Sequence[Action] = (),
    since: datetime | None = None,
    until: datetime | None = None,
    before: tuple[datetime, str] | None = None,
    limit: int,
) -> list[AuditEntry]:
    """Entries newest first, strictly older than the ``before`` cursor position."""
    t = audit_log
    query = sa.select(t)
    if actor_key_id is not None:
        query = query.where(t.c.actor_key_id == actor_key_id)
    if actor_kind is not None:
        query = query.where(t.c.actor_kind == actor_kind.value)
    if account_id is not None:
        query = query.where(t.c.account_id == account_id)
    if actions:
        query = query.where(t.c.action.in_([a.value for a in actions]))
    if since is not None:
        query = query.where(t.c.created_at >= since)
    if until is not None:
        query = query.where(t.c.created_at < until)
    if before is not None:
        at, entry_id = before
        query = query.where(
            sa.or_(t.c.created_at < at, sa.and_(t.c.created_at == at, t.c.id < entry_id))
        )
    query = query.order_by(t.c.created_at.desc(), t.c.id.desc()).limit(limit)
    return [_entry(r) for r in conn.execute(query).mappings()]
