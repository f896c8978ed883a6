"""Streams whose hold is settled when they end and released when they break or close."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, Generic, Protocol, Self, TypeVar

from creditmeter.integrations._metering import MeteredCall, Reported, Usage, reported

Event = TypeVar("Event")


class Reading(Protocol):
    """What a stream's events have reported of its usage so far."""

    def read(self, event: Any) -> None: ...

    def reported(self) -> Reported: ...


class LastUsage:
    """The usage of the last event that reports one (OpenAI's last chunk or event)."""

    def __init__(self, usage: Usage) -> None:
        self._usage = usage
        self._found: Reported = None

    def read(self, event: Any) -> None:
        self._found = self._usage(event) or self._found

    def reported(self) -> Reported:
        return self._found


class MeteredStream(Generic[Event]):
    """An SDK's stream, read through: settled at its end, released if reading it raises or
    it is closed first. Anything else is the SDK stream's own (``response`` …)."""

    def __init__(self, stream: Any, call: MeteredCall, reading: Reading) -> None:
        self._stream = stream
        self._events: Iterator[Event] = iter(stream)
        self._call = call
        self._reading = reading

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> Event:
        try:
            event = next(self._events)
        except StopIteration:
            self._call.settle(*reported(self._reading.reported()))
            raise
        except BaseException:
            self._call.release()
            raise
        self._reading.read(event)
        return event

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            self._call.release()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class AsyncMeteredStream(Generic[Event]):
    """:class:`MeteredStream` for an async SDK stream."""

    def __init__(self, stream: Any, call: MeteredCall, reading: Reading) -> None:
        self._stream = stream
        self._events: AsyncIterator[Event] = aiter(stream)
        self._call = call
        self._reading = reading

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Event:
        try:
            event = await anext(self._events)
        except StopAsyncIteration:
            await self._call.settle_async(*reported(self._reading.reported()))
            raise
        except BaseException:
            await self._call.release_async()
            raise
        self._reading.read(event)
        return event

    async def close(self) -> None:
        """Close the SDK's stream (its ``aclose`` where it has one, else ``close``)."""
        try:
            closing = getattr(self._stream, "aclose", None) or self._stream.close
            await closing()
        finally:
            await self._call.release_async()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
