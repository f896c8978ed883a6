"""A TCP relay that puts a network's latency between a client and PostgreSQL.

    python -m benchmarks.relay PORT DELAY_MS [UPSTREAM_HOST:UPSTREAM_PORT]

It listens on 127.0.0.1:PORT (0: a free port) and prints ``listening PORT``; each
connection is relayed to the upstream (127.0.0.1:5432 unless given), every chunk in either
direction forwarded DELAY_MS after it arrived. Like a real link, the delay is a latency,
not a bandwidth: each chunk is due at its arrival plus the delay, in order, so chunks that
follow each other closely (a pipeline) are delayed together rather than one after another.

Each line on standard input is answered on standard output with the number of turns so
far: a chunk from the server that follows one from the client on the same connection,
that is one round trip of the client's. The relay exits at the end of standard input, so
it does not outlive the benchmark that started it.

asyncio's default selector (epoll) waits in whole milliseconds, which would make a round
trip a few milliseconds whatever the delay; ``select`` waits in microseconds, so the loop
runs on it (a relay has a few dozen sockets, far below its limit of 1,024).
"""

from __future__ import annotations

import asyncio
import contextlib
import selectors
import sys
from collections.abc import Callable

BUFFER = 256 * 1024
NETWORK_ERRORS = (ConnectionError, OSError)
CLOSING = 2.0


class Turns:
    """Round trips counted on every connection: the server's answers after the client spoke."""

    def __init__(self) -> None:
        self.count = 0

    def connection(self) -> tuple[Callable[[], None], Callable[[], None]]:
        """What to call when a chunk comes from the client, and when one comes from the
        server, on a new connection."""
        client_spoke = False

        def from_client() -> None:
            nonlocal client_spoke
            client_spoke = True

        def from_server() -> None:
            nonlocal client_spoke
            if client_spoke:
                self.count += 1
                client_spoke = False

        return from_client, from_server


async def forward(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    delay: float,
    arrived: Callable[[], None],
) -> None:
    """Every chunk from ``reader`` to ``writer`` ``delay`` seconds after it arrived, in
    order; then the end of the stream."""
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, data = await chunks.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    delivering = asyncio.create_task(deliver())
    try:
        while data := await reader.read(BUFFER):
            arrived()
            chunks.put_nowait((loop.time() + delay, data))
    except NETWORK_ERRORS:
        pass
    chunks.put_nowait((loop.time() + delay, b""))
    with contextlib.suppress(*NETWORK_ERRORS):
        await delivering


class Relay:
    def __init__(self, delay: float, upstream: tuple[str, int]) -> None:
        self.delay = delay
        self.upstream = upstream
        self.turns = Turns()
        self.open: set[asyncio.Task[None]] = set()
        """The connections being relayed, each a task."""

    async def connection(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.open.add(task)
        task.add_done_callback(self.open.discard)
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.upstream)
        except NETWORK_ERRORS:
            client_writer.close()
            return
        from_client, from_server = self.turns.connection()
        try:
            await asyncio.gather(
                forward(client_reader, server_writer, self.delay, from_client),
                forward(server_reader, client_writer, self.delay, from_server),
            )
        finally:
            for writer in (server_writer, client_writer):
                writer.close()
                with contextlib.suppress(*NETWORK_ERRORS):
                    await writer.wait_closed()


async def serve(port: int, delay: float, upstream: tuple[str, int]) -> None:
    """Relay until standard input ends, answering each of its lines with the turns; then
    give the connections still open CLOSING seconds to end (the benchmark has closed its
    own, but their last chunks may be on their way)."""
    relay = Relay(delay, upstream)
    server = await asyncio.start_server(relay.connection, "127.0.0.1", port)
    print(f"listening {server.sockets[0].getsockname()[1]}", flush=True)
    loop = asyncio.get_running_loop()
    control = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(control), sys.stdin)
    async with server:
        while await control.readline():
            print(relay.turns.count, flush=True)
    if relay.open:
        await asyncio.wait(relay.open, timeout=CLOSING)


def main(argv: list[str]) -> None:
    if len(argv) not in (2, 3):
        sys.exit(__doc__)
    host, _, upstream_port = (argv[2] if len(argv) == 3 else "127.0.0.1:5432").rpartition(":")
    upstream = (host, int(upstream_port))
    with asyncio.Runner(loop_factory=select_loop) as runner:
        runner.run(serve(int(argv[0]), float(argv[1]) / 1000, upstream))


def select_loop() -> asyncio.AbstractEventLoop:
    """An event loop whose timers are as fine as microseconds (see the module's doc)."""
    return asyncio.SelectorEventLoop(selectors.SelectSelector())


if __name__ == "__main__":
    main(sys.argv[1:])
