"""Identifiers: a prefix and 26 characters that sort by creation time (ULID layout).

Within a process, ids are strictly increasing even inside one millisecond (the random part
of the previous id plus one), so the rows one use case writes sort in the order written.
"""

from __future__ import annotations

import secrets
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]
"""Two characters for each 10 bits: an id's 26 characters are 13 lookups."""
_SHIFTS = range(120, -1, -10)
_RANDOM_BITS = 80
_lock = threading.Lock()
_last = 0


def _next_value() -> int:
    global _last  # noqa: PLW0603 - the process-wide monotonic counter
    with _lock:
        value = (time.time_ns() // 1_000_000) << _RANDOM_BITS | secrets.randbits(_RANDOM_BITS)
        _last = max(value, _last + 1)
        return _last


def new_id(prefix: str) -> str:
    value = _next_value()
    return prefix + "_" + "".join([_PAIRS[(value >> shift) & 1023] for shift in _SHIFTS])
