"""Errors of the store that a use case handles."""

from __future__ import annotations


class ConcurrentUpdate(Exception):
    """A conditional update matched no row: another writer changed it first."""
