"""SQL for idempotency keys, kept permanently with the first result."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from creditmeter.store import direct
from creditmeter.store.tables import idempotency_keys

_FIND = direct.Statement(
    sa.select(
        idempotency_keys.c.operation, idempotency_keys.c.fingerprint, idempotency_keys.c.result
    ).where(idempotency_keys.c.key == sa.bindparam("the_key"))
)
_RECORD = direct.Statement(idempotency_keys.insert())


def find(conn: Connection, key: str) -> tuple[str, str, Any] | None:
    """``(operation, fingerprint, result)`` stored under ``key``, if any."""
    return _stored(direct.rows(conn, _FIND, {"the_key": key}))


def find_with_next(conn: Connection, key: str) -> Callable[[], tuple[str, str, Any] | None]:
    """``find``, its query sent with the next queries of ``direct.rows_each``, after them
    and in the same round trip (``direct.with_next``)."""
    found = direct.with_next(conn, _FIND, {"the_key": key})
    return lambda: _stored(found())


def _stored(rows: Sequence[direct.Row]) -> tuple[str, str, Any] | None:
    return (rows[0]["operation"], rows[0]["fingerprint"], rows[0]["result"]) if rows else None


def record(
    conn: Connection, key: str, operation: str, fingerprint: str, result: Any, at: datetime
) -> None:
    direct.run(
        conn,
        _RECORD,
        {
            "key": key,
            "operation": operation,
            "fingerprint": fingerprint,
            "result": result,
            "created_at": at,
        },
    )


def find_many(conn: Connection, keys: Sequence[str]) -> dict[str, tuple[str, str, Any]]:
    """``find`` for many keys in one statement."""
    if not keys:
        return {}
    found = direct.rows(conn, _FIND_MANY, {"keys": list(keys)})
    return {r["key"]: (r["operation"], r["fingerprint"], r["result"]) for r in found}


_FIND_MANY = direct.Statement(
    sa.select(
        idempotency_keys.c.key,
        idempotency_keys.c.operation,
        idempotency_keys.c.fingerprint,
        idempotency_keys.c.result,
    ).where(direct.one_of(idempotency_keys.c.key, "keys"))
)


def record_many(
    conn: Connection, entries: Sequence[tuple[str, str, str, Any]], at: datetime
) -> None:
    """``record`` for many ``(key, operation, fingerprint, result)`` in one statement."""
    direct.run_many(
        conn,
        _RECORD,
        [
            {"key": k, "operation": o, "fingerprint": f, "result": r, "created_at": at}
            for k, o, f, r in entries
        ],
    )
