"""Network namespaces of the benchmark's own, each joined to the host by a veth pair, so
that separate server processes can stand for separate hosts. Made with ``ip`` (root),
removed at the end whatever happened; the addresses exist only on these links."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

SUBNET = "10.203"
"""Each namespace ``i`` gets the /30 ``10.203.<i+1>.0``: .1 on the host, .2 inside."""


@dataclass(frozen=True)
class Namespace:
    name: str
    host_link: str
    host_address: str
    address: str


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def available() -> str | None:
    """Why namespaces cannot be made here, or None if they can."""
    if os.geteuid() != 0:
        return "not root"
    try:
        subprocess.run(["ip", "netns", "list"], check=True, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as error:
        return f"ip netns does not work: {error}"
    return None


@contextlib.contextmanager
def namespaces(count: int) -> Iterator[list[Namespace]]:
    """``count`` namespaces with loopback up and a veth pair each."""
    tag = os.getpid() % 100_000
    made: list[Namespace] = []
    try:
        for i in range(count):
            ns = Namespace(
                name=f"cmbench-{tag}-{i}",
                host_link=f"cmb{tag}h{i}",
                host_address=f"{SUBNET}.{i + 1}.1",
                address=f"{SUBNET}.{i + 1}.2",
            )
            inner = f"cmb{tag}n{i}"
            _ip("netns", "add", ns.name)
            made.append(ns)
            _ip("link", "add", ns.host_link, "type", "veth", "peer", "name", inner)
            _ip("link", "set", inner, "netns", ns.name)
            _ip("addr", "add", f"{ns.host_address}/30", "dev", ns.host_link)
            _ip("link", "set", ns.host_link, "up")
            inside = ("netns", "exec", ns.name, "ip")
            _ip(*inside, "addr", "add", f"{ns.address}/30", "dev", inner)
            _ip(*inside, "link", "set", inner, "up")
            _ip(*inside, "link", "set", "lo", "up")
        yield made
    finally:
        for ns in made:
            with contextlib.suppress(subprocess.SubprocessError):
                _ip("link", "del", ns.host_link)
            with contextlib.suppress(subprocess.SubprocessError):
                _ip("netns", "del", ns.name)
