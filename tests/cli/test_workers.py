"""``creditmeter serve --workers N``: each worker on its own socket (Linux's SO_REUSEPORT)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from benchmarks.load import connections, listening
from click.testing import CliRunner

from creditmeter.cli import workers
from creditmeter.cli.failures import CommandFailed
from tests.cli.conftest import run
from tests.client.conftest import Server, free_port, start_server

pytestmark = pytest.mark.skipif(not workers.supported(), reason="SO_REUSEPORT spreading is Linux's")

CONNECTIONS = 24
"""Keep-alive connections opened together: all of them hashed to one of two workers has a
chance of 2 in 2**24."""


@pytest.fixture
def server(sqlite_url: str, tmp_path: Path) -> Iterator[Server]:
    """``creditmeter serve --workers 2``, once both workers listen."""
    server = start_server(sqlite_url, tmp_path / "serve.log", "--workers", "2")
    try:
        wait_for_listeners(server, 2)
        yield server
    finally:
        server.stop()


def wait_for_listeners(server: Server, count: int) -> None:
    """Until ``count`` sockets listen on the server's port (one answering is not enough:
    the other worker may be starting still)."""
    deadline = time.monotonic() + 30
    while (found := listening(server.process.pid, port_of(server))) < count:
        assert time.monotonic() < deadline, f"{found} listening:\n{server.output()}"
        time.sleep(0.1)


def port_of(server: Server) -> int:
    port = urlsplit(server.url).port
    assert port is not None
    return port


def open_connections(server: Server) -> list[socket.socket]:
    """``CONNECTIONS`` keep-alive connections, each having had one answer."""
    opened = [socket.create_connection(("127.0.0.1", port_of(server))) for _ in range(CONNECTIONS)]
    for conn in opened:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: creditmeter\r\n\r\n")
    for conn in opened:
        assert conn.recv(4096).startswith(b"HTTP/1.1 200 ")
    return opened


def held(server: Server) -> dict[int, int]:
    """The keep-alive connections each worker holds, by its process id."""
    opened = open_connections(server)
    try:
        return connections([server.process.pid], port_of(server))
    finally:
        for conn in opened:
            conn.close()


def test_connections_opened_together_are_spread_over_the_workers(server: Server) -> None:
    by_worker = held(server)
    assert len(by_worker) == 2, by_worker
    assert sum(by_worker.values()) == CONNECTIONS
    assert server.process.pid not in by_worker  # the supervisor itself serves nothing
    assert "2 workers, each on its own socket" in server.output()


def test_a_killed_worker_is_replaced(server: Server) -> None:
    killed = min(held(server))
    os.kill(killed, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while f"Worker [{killed}] ended (signal 9): starting another" not in server.output():
        assert time.monotonic() < deadline, server.output()
        time.sleep(0.1)
    wait_for_listeners(server, 2)
    by_worker = held(server)
    assert len(by_worker) == 2, by_worker
    assert killed not in by_worker
    assert server.process.poll() is None


def test_stopping_the_server_stops_its_workers(server: Server) -> None:
    pids = list(held(server))
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=30) == 0
    assert not [pid for pid in pids if Path(f"/proc/{pid}").exists()]
    assert server.output().count("Finished server process") == 2


def test_a_port_already_listened_on_is_refused(runner: CliRunner, sqlite_url: str) -> None:
    """Even by a socket that shares its port: joining it would quietly take a part of
    another server's connections."""
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        result = run(
            runner, "serve", "--workers", "2", "--port", str(port), "--database-url", sqlite_url
        )
    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: cannot listen on 127.0.0.1:{port}: Address already in use\n"
    ), result.stderr


def test_a_worker_that_fails_by_itself_stops_the_others() -> None:
    config = {"app": "tests.cli.no_such_module:app", "log_level": "critical"}
    supervisor = workers.Supervisor(config, 2, "127.0.0.1", free_port())
    with pytest.raises(CommandFailed, match=r"worker \[\d+\] failed \(exit status 3\)"):
        supervisor.run()
    assert not multiprocessing.active_children()  # the other worker was stopped
