"""Metadata: free-form JSON kept with an account, a hold or a usage, within bounds.

Unbounded, one caller's metadata could make every later read of it fail (nested too deep
to serialize) or cost every reader its size. So a metadata object is refused, with the
bound it passes named, when it is:

- nested more than ``MAX_DEPTH`` levels (the object itself is level 1);
- more than ``MAX_KEYS`` keys, counted over all its objects;
- a key or a text longer than ``MAX_TEXT`` characters;
- more than ``MAX_BYTES`` bytes as compact UTF-8 JSON;

or holds what one of the engines cannot store: a NUL character in a text (PostgreSQL),
a number that is not finite, a value JSON cannot say.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, Final

from creditmeter.core.errors import InvalidRequest

MAX_DEPTH: Final = 16
MAX_KEYS: Final = 256
MAX_TEXT: Final = 4_096
MAX_BYTES: Final = 16_384


def checked(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """``metadata`` as a plain dict (empty for ``None``), or :class:`InvalidRequest`
    naming the bound it passes."""
    if not metadata:
        return {}
    if not isinstance(metadata, Mapping):
        raise InvalidRequest("metadata is a JSON object")
    value = dict(metadata)
    keys = _walk(value, 1)
    if keys > MAX_KEYS:
        raise InvalidRequest(f"metadata has {keys} keys; at most {MAX_KEYS} are allowed")
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise InvalidRequest(f"metadata must be JSON: {error}") from None
    size = len(text.encode())
    if size > MAX_BYTES:
        raise InvalidRequest(f"metadata is {size} bytes as JSON; at most {MAX_BYTES} are allowed")
    return value


def _walk(value: object, depth: int) -> int:
    """Checks ``value`` at ``depth`` and below; returns how many keys its objects have."""
    if isinstance(value, str):
        _text(value, "a text")
    elif isinstance(value, float) and not math.isfinite(value):
        raise InvalidRequest("metadata numbers must be finite")
    elif isinstance(value, Mapping | list | tuple):
        if depth > MAX_DEPTH:
            raise InvalidRequest(f"metadata is nested more than {MAX_DEPTH} levels deep")
        if isinstance(value, Mapping):
            keys = len(value)
            for key, item in value.items():
                _text(str(key), "a key")
                keys += _walk(item, depth + 1)
            return keys
        return sum(_walk(item, depth + 1) for item in value)
    return 0


def _text(text: str, what: str) -> None:
    if "\x00" in text:
        raise InvalidRequest("metadata may not contain a NUL character")
    if len(text) > MAX_TEXT:
        raise InvalidRequest(
            f"metadata has {what} of {len(text)} characters; at most {MAX_TEXT} are allowed"
        )
