"""The threads that run the blocking calls of the lean way (``api.lean``) and of the key
lookup, one trip each.

A trip through ``asyncio``'s executor costs less than one through anyio's
thread pool (``run_in_threadpool``, which FastAPI uses for plain ``def`` endpoints): anyio
adds a capacity limiter and a cancel scope to each call.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Final, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

THREADS: Final = 40
"""As many as anyio's thread pool has by default."""

_pool = ThreadPoolExecutor(THREADS, thread_name_prefix="creditmeter-request")


async def in_thread(function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``function(*args, **kwargs)`` in one of the threads, in a copy of this context."""
    call = functools.partial(contextvars.copy_context().run, function, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_pool, call)
