"""Identifiers: a prefix and 26 characters that sort by creation time (ULID layout).

Within a process, ids are strictly increasing: the first id of a millisecond has a random
part of its own, and the next ones in the same millisecond add one to the previous id
(ULID's monotonic layout), so the rows one use case writes sort in the order written, and
a batch that makes thousands of ids asks the system for randomness once a millisecond.
Ids of one millisecond can be told from one another: an id is a name, never a credential
(an API key's secret is made apart, from ``secrets``). Every layer names things, so ids
live in the core: they read the time and randomness, nothing else.
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
        millisecond = time.time_ns() // 1_000_000
        if millisecond > _last >> _RANDOM_BITS:
            _last = millisecond << _RANDOM_BITS | secrets.randbits(_RANDOM_BITS)
        else:  # the same millisecond, or the clock went back: one more than the last
            _last += 1
        return _last


def new_id(prefix: str) -> str:
    value = _next_value()
    return prefix + "_" + "".join([_PAIRS[(value >> shift) & 1023] for shift in _SHIFTS])
