"""Records to JSON data and back, guided by their type hints.

One conversion for the service (results stored under idempotency keys) and the HTTP
client (response bodies shaped like a record): decimals are strings, never a ``float``;
times are ISO 8601; enums are their values; tuples are lists.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import TypeAdapter

T = TypeVar("T")


_adapters: dict[object, TypeAdapter[Any]] = {}


def _adapter(kind: Any) -> TypeAdapter[Any]:
    """The converter of ``kind``, built once: building one reads the type's hints."""
    adapter = _adapters.get(kind)
    if adapter is None:
        adapter = _adapters[kind] = TypeAdapter(kind)
    return adapter


def to_json(record: object) -> Any:
    """``record`` as data ``json.dumps`` takes: dicts, lists, strings, numbers."""
    return _adapter(type(record)).dump_python(record, mode="json")


def from_json(kind: type[T], data: object) -> T:
    """The ``kind`` that ``data`` describes; keys that are not its fields are ignored, and
    fields with a default may be missing."""
    record: T = _adapter(kind).validate_python(data)
    return record
