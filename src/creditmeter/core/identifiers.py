"""Identifiers chosen by the host app or the operator: accounts, members, features,
plans and pools."""

from __future__ import annotations

import re
from typing import Final

from creditmeter.core.errors import InvalidRequest

IDENTIFIER_PATTERN: Final = r"^[A-Za-z0-9._:@+=-]{1,255}$"
"""1 to 255 letters, digits and ``. _ : @ + = -``: safe in a URL path and a log line."""


def identifier(value: object, what: str) -> str:
    """``value`` if it is a valid identifier, else :class:`InvalidRequest` naming ``what``."""
    if not isinstance(value, str) or not re.fullmatch(IDENTIFIER_PATTERN, value):
        raise InvalidRequest(
            f"{what} must be 1 to 255 letters, digits or . _ : @ + = -, not {value!r}"
        )
    return value
