"""A lean HTTP/1.1 keep-alive client for load generation, and CPU accounting from /proc.

The load generator shares two cores with the servers and PostgreSQL, so it should cost as
little CPU as possible: :class:`Connection` writes a request with one ``write`` and reads
the answer by its ``Content-Length``, over one persistent connection per simulated client
(:class:`HttpxConnection` does the same through ``httpx2.AsyncClient``, for comparison).
Every loop that uses them is bounded in time by the caller; the targets are loopback or
addresses in network namespaces that the benchmark made itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx2

REQUEST_TIMEOUT = 30.0
"""Seconds for one request before the client gives up on it (an error, not a hang)."""
MAX_RESPONSE = 64 * 1024 * 1024


class HttpError(Exception):
    pass


class Client(Protocol):
    async def post(self, path: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]: ...

    async def close(self) -> None: ...


class Connection:
    """One keep-alive HTTP/1.1 connection to ``host:port``; reconnects when the server
    closes it."""

    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self.host = host
        self.port = port
        self.fixed = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.reader is None or self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self.reader, self.writer

    async def post(self, path: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
        return await asyncio.wait_for(self._post(path, body, headers), REQUEST_TIMEOUT)

    async def _post(self, path: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
        payload = json.dumps(body, separators=(",", ":")).encode()
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{self.fixed}{extra}"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        reader, writer = await self._open()
        writer.write(head.encode() + payload)
        try:
            status, length, close = _parse_head(await reader.readuntil(b"\r\n\r\n"))
            data = await reader.readexactly(length)
        except (asyncio.IncompleteReadError, ConnectionError):
            await self.close()
            raise
        if close:
            await self.close()
        return status, json.loads(data) if data else None

    async def close(self) -> None:
        writer, self.reader, self.writer = self.writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


def _parse_head(head: bytes) -> tuple[int, int, bool]:
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length: int | None = None
    close = False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection":
            close = value.strip().lower() == "close"
        elif name == "transfer-encoding":
            raise HttpError(f"unexpected Transfer-Encoding: {value.strip()}")
    if length is None or length > MAX_RESPONSE:
        raise HttpError(f"response without a usable Content-Length (status {status})")
    return status, length, close


class HttpxConnection:
    """The same through ``httpx2.AsyncClient`` with one keep-alive connection."""

    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self.client = httpx2.AsyncClient(
            base_url=f"http://{host}:{port}",
            headers=headers,
            timeout=REQUEST_TIMEOUT,
            limits=httpx2.Limits(max_connections=1, max_keepalive_connections=1),
            trust_env=False,
        )

    async def post(self, path: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
        response = await self.client.post(path, json=body, headers=headers)
        return response.status_code, response.json() if response.content else None

    async def close(self) -> None:
        await self.client.aclose()


def connect(kind: str, host: str, port: int, headers: dict[str, str]) -> Client:
    if kind == "raw":
        return Connection(host, port, headers)
    if kind == "httpx2":
        return HttpxConnection(host, port, headers)
    raise ValueError(f"unknown client kind {kind!r}")


# CPU accounting.

TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Proc:
    comm: str
    ppid: int
    cpu: float
    """CPU seconds (user + system) of the process itself."""
    ended_children: float
    """CPU seconds of its children that have ended and been waited for."""


def _stat(pid: int) -> Proc | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = text[text.index("(") + 1 : text.rindex(")")]
    f = text[text.rindex(")") + 2 :].split()
    return Proc(comm, int(f[1]), (int(f[11]) + int(f[12])) / TICK, (int(f[13]) + int(f[14])) / TICK)


def _processes() -> dict[int, Proc]:
    found = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None:
                found[int(entry.name)] = stat
    return found


def _descendants(procs: dict[int, Proc], roots: list[int]) -> list[int]:
    """The roots that are running and all their descendants."""
    children: dict[int, list[int]] = {}
    for pid, proc in procs.items():
        children.setdefault(proc.ppid, []).append(pid)
    found: list[int] = []
    todo = [r for r in roots if r in procs]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def _busy_seconds() -> float:
    """CPU seconds the whole machine has spent not idle since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / TICK


@dataclass
class CpuSnapshot:
    at: float
    busy: float
    groups: dict[str, dict[int, float]]


@dataclass
class CpuMeter:
    """CPU seconds of groups of processes: each root pid with its descendants, PostgreSQL
    and this process (the load generator). A process's CPU counts only while it lives:
    measure between snapshots taken while the processes of interest are running.

    ``postgres`` names the PostgreSQL processes to count (the benchmark's own sessions and
    the server's background processes, say); by default every process named ``postgres``,
    other people's sessions included."""

    roots: dict[str, list[int]] = field(default_factory=dict)
    postgres: Callable[[], set[int]] | None = None

    def snapshot(self) -> CpuSnapshot:
        procs = _processes()
        groups: dict[str, dict[int, float]] = {}
        for name, roots in self.roots.items():
            groups[name] = {pid: procs[pid].cpu for pid in _descendants(procs, roots)}
        if self.postgres is not None:
            wanted = {p for p in self.postgres() if p in procs}
            postmasters = {procs[p].ppid for p in wanted}
            postmasters = {p for p in postmasters if p in procs and procs[p].comm == "postgres"}
            groups["postgres"] = {p: procs[p].cpu for p in wanted | postmasters}
            # Sessions that closed: their CPU is the postmaster's ended children's now
            # (anyone's sessions, not only the benchmark's).
            groups["pg ended"] = {p: procs[p].ended_children for p in postmasters}
        else:
            groups["postgres"] = {p: s.cpu for p, s in procs.items() if s.comm == "postgres"}
        me = os.getpid()
        groups["client"] = {me: procs[me].cpu} if me in procs else {}
        return CpuSnapshot(time.monotonic(), _busy_seconds(), groups)


ESTABLISHED = "01"
LISTEN = "0A"
"""TCP states, as /proc/net/tcp writes them."""


def connections(roots: list[int], port: int) -> dict[int, int]:
    """How many established TCP connections on local ``port`` each process under ``roots``
    holds (those that hold any), read from /proc in the process's own network namespace."""
    procs = _processes()
    held: dict[int, int] = {}
    for pid in _descendants(procs, roots):
        sockets: set[int] = set()
        try:
            fds = list(os.scandir(f"/proc/{pid}/fd"))
            established = _sockets(pid, port, ESTABLISHED)
        except OSError:
            continue  # the process has gone
        for fd in fds:
            with contextlib.suppress(OSError):  # a descriptor closed meanwhile
                link = os.readlink(fd.path)
                if link.startswith("socket:["):
                    sockets.add(int(link[8:-1]))
        if count := len(sockets & established):
            held[pid] = count
    return held


def listening(pid: int, port: int) -> int:
    """How many sockets listen on ``port`` in the network namespace of process ``pid``
    (workers that each have their own: as many as are ready to accept)."""
    return len(_sockets(pid, port, LISTEN))


def _sockets(pid: int, port: int, state: str) -> set[int]:
    """The inodes of the TCP sockets on local ``port`` in ``state``, in the network
    namespace of process ``pid``."""
    found: set[int] = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == state and int(cols[1].rsplit(":", 1)[1], 16) == port:
                found.add(int(cols[9]))
    return found


@dataclass
class CpuShares:
    """Cores used on average over an interval, by group; ``other`` is the rest of the
    machine's busy time, ``idle`` what was left of its cores."""

    seconds: float
    cores: dict[str, float]

    def text(self) -> str:
        return ", ".join(f"{name} {value:.2f}" for name, value in self.cores.items())


def shares(before: CpuSnapshot, after: CpuSnapshot, ncpu: int | None = None) -> CpuShares:
    wall = max(after.at - before.at, 1e-9)
    cores: dict[str, float] = {}
    for name, members in after.groups.items():
        earlier = before.groups.get(name, {})
        used = sum(v - earlier.get(pid, 0.0) for pid, v in members.items())
        cores[name] = used / wall
    busy = (after.busy - before.busy) / wall
    cores["other"] = max(busy - sum(cores.values()), 0.0)
    cores["idle"] = max((ncpu or os.cpu_count() or 1) - busy, 0.0)
    return CpuShares(wall, cores)
