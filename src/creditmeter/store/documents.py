"""JSON documents (metadata, quantities, stored results) as their columns hold them."""

from __future__ import annotations

import json
from json.scanner import make_scanner
from typing import Any

import orjson


def json_text(value: Any) -> str:
    """A JSON column's text: orjson's, several times faster than the standard library's
    on what a charge writes (its quantities, metadata and stored result); the standard
    library's for what orjson refuses and JSON can say, integers beyond 64 bits (in a
    customer's metadata, say) or keys that are not strings."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value)


_scan = make_scanner(json.JSONDecoder())  # type: ignore[arg-type]  # typeshed's is a class


def json_value(text: str | bytes) -> Any:
    """A JSON column's value (text on SQLite, UTF-8 bytes from PostgreSQL's driver): read
    by the standard library's scanner (its C part) without the checks of ``json.loads``
    around it, a fifth of the time for what is stored here; ``json.loads`` decides on
    anything else (space around the document, or an error)."""
    if isinstance(text, bytes):
        text = text.decode()
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        return json.loads(text)
    return value if end == len(text) else json.loads(text)
