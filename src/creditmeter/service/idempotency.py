"""Idempotency keys: a retry returns the first result; other parameters are a conflict.

Results are kept as JSON. :func:`dump` and :func:`load` turn the engine's frozen
dataclasses into JSON and back, guided by their type hints.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any, TypeVar, Union, cast, get_args, get_origin, get_type_hints

from sqlalchemy.engine import Connection

from creditmeter.core.errors import IdempotencyConflict
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
    loaded: T = load(cls, result)
    return loaded


def remember(
    conn: Connection,
    key: str,
    operation: str,
    print_: str,
    result: object,
    now: datetime,
    owner: str = idempotency.OPERATOR,
) -> None:
    idempotency.record(conn, key, operation, print_, dump(result), now, owner)


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

_PLAIN = frozenset({str, int, bool, type(None)})
_field_names: dict[type, tuple[str, ...]] = {}


def dump(value: object) -> Any:
    kind = type(value)
    if kind in _PLAIN:
        return value
    names = _field_names.get(kind)
    if names is None and dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = _field_names[kind] = tuple(f.name for f in dataclasses.fields(value))
    if names is not None:
        fields = {name: getattr(value, name) for name in names}
        # Most fields are plain: only the others are taken apart.
        return {n: v if type(v) in _PLAIN else dump(v) for n, v in fields.items()}
    if type(value) is tuple:  # a record's list of things, before the slower checks below
        return [dump(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): dump(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [dump(v) for v in value]
    if isinstance(value, datetime | Decimal | Enum):
        return _plain(value)
    return value


def load(cls: Any, data: Any) -> Any:
    if data is None:
        return None
    origin = get_origin(cls)
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(cls) if a is not type(None)]
        return load(options[0], data)
    if origin is tuple:
        return tuple(load(get_args(cls)[0], v) for v in data)
    if origin in (list, Mapping, dict) or cls is Any:
        return data
    if dataclasses.is_dataclass(cls):
        hints = get_type_hints(cls)
        fields = {f.name for f in dataclasses.fields(cls)}
        return cast(Any, cls)(**{k: load(hints[k], v) for k, v in data.items() if k in fields})
    if cls is datetime:
        return datetime.fromisoformat(data)
    if isinstance(cls, type) and issubclass(cls, Enum | Decimal):
        return cast(Any, cls)(data)
    return data
