"""Idempotency keys: a retry returns the first result; other parameters are a conflict.

Results are kept as JSON, converted by :mod:`creditmeter.core.serialization`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any, TypeVar

from sqlalchemy.engine import Connection

from creditmeter.core.errors import IdempotencyConflict
from creditmeter.core.serialization import from_json, to_json
from creditmeter.store import idempotency

T = TypeVar("T")


def fingerprint(operation: str, params: Mapping[str, Any]) -> str:
    canonical = _CANONICAL.encode([operation, params])
    return hashlib.sha256(canonical.encode()).hexdigest()


def replay(
    conn: Connection,
    key: str,
    operation: str,
    print_: str,
    cls: type[T],
    owner: str = idempotency.OPERATOR,
) -> T | None:
    """The first result stored under ``owner``'s ``key``, or ``None`` if the key is new."""
    return first_result(key, idempotency.find(conn, key, owner), operation, print_, cls)


def first_result(
    key: str, found: idempotency.StoredResult | None, operation: str, print_: str, cls: type[T]
) -> T | None:
    """The result ``found`` under ``key`` if it was stored for this operation and these
    parameters; a conflict if for others; ``None`` if nothing was found."""
    if found is None:
        return None
    stored_operation, stored_print, result = found
    if (stored_operation, stored_print) != (operation, print_):
        raise IdempotencyConflict(key)
    return from_json(cls, result)


def remember(
    conn: Connection,
    key: str,
    operation: str,
    print_: str,
    result: object,
    now: datetime,
    owner: str = idempotency.OPERATOR,
) -> None:
    idempotency.record(conn, key, operation, print_, to_json(result), now, owner)


def _plain(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    raise TypeError(f"cannot fingerprint {type(value).__name__}")


_CANONICAL = json.JSONEncoder(sort_keys=True, default=_plain)
"""``json.dumps(…, sort_keys=True, default=_plain)``, made once rather than per call."""
