"""Worker processes that each listen on a socket of their own.

uvicorn's ``--workers`` share one listening socket, and the worker that wakes first
accepts every connection waiting: a few keep-alive clients, or a load balancer's pool of
connections opened together, all land on one worker while the others idle. On Linux,
``creditmeter serve --workers N`` runs its workers here instead: each binds its own socket
to the same address with ``SO_REUSEPORT``, and the kernel spreads new connections over
them by a hash of the client's address and port.

The supervisor keeps the address bound (so that a port chosen by the system stays the
same), replaces a worker that was killed or stopped by someone else, gives up when a
worker fails by itself (it could not start: its log says why), and stops the workers
gracefully on ``SIGINT`` or ``SIGTERM``.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any, Final

import uvicorn

from creditmeter.cli.failures import CommandFailed

STARTUP_FAILURE: Final = 3
"""A worker's exit status when its server did not start (uvicorn's own for that case)."""
STOP_SECONDS: Final = 15.0
"""How long stopping workers get to finish their requests before they are killed."""
POLL_SECONDS: Final = 0.5

logger = logging.getLogger("uvicorn.error")


def supported() -> bool:
    """Whether the kernel spreads connections over sockets sharing a port (Linux's
    ``SO_REUSEPORT``; elsewhere the option exists without the spreading, or not at all)."""
    return sys.platform == "linux" and hasattr(socket, "SO_REUSEPORT")


@dataclass(frozen=True)
class Address:
    family: int
    sockaddr: tuple[Any, ...]

    @classmethod
    def resolve(cls, host: str, port: int) -> Address:
        """The address to listen on, as uvicorn would bind it."""
        family, _, _, _, sockaddr = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        return cls(family, sockaddr)

    def bind(self, *, shared: bool) -> socket.socket:
        """A socket bound to the address: ``shared`` with other sockets of this user that
        set ``SO_REUSEPORT``, else alone."""
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if shared:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(self.sockaddr)
        except OSError:
            sock.close()
            raise
        return sock


def _serve(config: Mapping[str, Any], address: Address) -> None:
    """One worker: a uvicorn server on its own socket at the shared address."""
    sock = address.bind(shared=True)
    server = uvicorn.Server(uvicorn.Config(**config))
    server.run(sockets=[sock])
    if not server.started:
        sys.exit(STARTUP_FAILURE)


class Supervisor:
    """Runs ``workers`` uvicorn servers made from ``config`` (``uvicorn.Config``'s
    arguments) on ``host``:``port``, each on its own socket, until it is stopped."""

    def __init__(self, config: Mapping[str, Any], workers: int, host: str, port: int) -> None:
        self.config = dict(config)
        self.workers = workers
        self.host = host
        self.port = port
        self._context = multiprocessing.get_context("spawn")
        self._stopping = False

    def run(self) -> None:
        """Serve until ``SIGINT`` or ``SIGTERM``; :class:`CommandFailed` if the address
        cannot be bound or a worker fails by itself."""
        uvicorn.Config(**self.config)  # checks the arguments and sets up logging here too
        reserved = self._reserve()
        address = Address(reserved.family, reserved.getsockname())
        previous = signal.signal(signal.SIGTERM, self._stop)
        processes: list[BaseProcess] = []
        try:
            logger.info(
                "Started parent process [%d]: %d workers, each on its own socket",
                os.getpid(),
                self.workers,
            )
            for _ in range(self.workers):  # one by one: an interruption stops those started
                processes.append(self._start(address))
            self._watch(processes, address)
        except KeyboardInterrupt:
            pass  # Ctrl-C: the workers, in the same process group, were interrupted too
        finally:
            signal.signal(signal.SIGTERM, previous)
            _stop_all(processes)
            reserved.close()

    def _reserve(self) -> socket.socket:
        """The address bound and kept (a port of 0 becomes the system's choice), after
        making sure no other server listens there: a socket that shares the port would
        otherwise be given a part of the connections silently."""
        where = f"{self.host}:{self.port}"
        try:
            address = Address.resolve(self.host, self.port)
            with address.bind(shared=False) as alone:
                address = Address(address.family, alone.getsockname())
            return address.bind(shared=True)
        except OSError as error:
            raise CommandFailed(f"cannot listen on {where}: {error.strerror or error}") from None

    def _start(self, address: Address) -> BaseProcess:
        process = self._context.Process(target=_serve, args=(self.config, address))
        process.start()
        return process

    def _watch(self, processes: list[BaseProcess], address: Address) -> None:
        """Until stopped: replace a worker that was killed or stopped from outside; stop
        when one fails by itself."""
        while not self._stopping:
            wait([p.sentinel for p in processes], timeout=POLL_SECONDS)
            for index, process in enumerate(processes):
                status = process.exitcode
                if status is None or self._stopping:
                    continue
                if status > 0:
                    raise CommandFailed(
                        f"worker [{process.pid}] failed (exit status {status}); "
                        "its log above says why"
                    )
                logger.warning(
                    "Worker [%d] ended (%s): starting another",
                    process.pid,
                    f"signal {-status}" if status < 0 else "exit status 0",
                )
                processes[index] = self._start(address)

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        self._stopping = True


def _stop_all(processes: list[BaseProcess]) -> None:
    """Ask the running workers to finish (``SIGTERM``: their requests in flight are
    answered), and kill those still running after :data:`STOP_SECONDS`."""
    running = [p for p in processes if p.exitcode is None]
    for process in running:
        process.terminate()
    for process in running:
        process.join(STOP_SECONDS)
        if process.exitcode is None:
            logger.warning("Worker [%d] did not stop in time: killing it", process.pid)
            process.kill()
            process.join()
