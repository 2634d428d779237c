"""Ports for the demo's apps and routers: free now, and kept free until the app binds.

A port the kernel hands out for port 0 lies in its ephemeral range, the one every outgoing
connection takes its own port from; between choosing and binding (a stage later, for prod's
apps) any connection on the machine may take it, and the app then fails to start. So ports are
chosen below that range, from a cursor that goes round it, so that a process hands out every
port of the range before it hands one out again. RELEASER_PORTS ("low-high") narrows the
choice, so that two runs side by side draw from ranges of their own.
"""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path

from ..errors import UsageError

LOWEST = 10000
RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_cursor: int | None = None


def port_range() -> tuple[int, int]:
    """The ports to draw from: RELEASER_PORTS, else from LOWEST up to the ephemeral range."""
    given = os.environ.get("RELEASER_PORTS", "")
    if given:
        low, _, high = given.partition("-")
        if not (low.isdigit() and high.isdigit() and 1024 <= int(low) < int(high) <= 65535):
            raise UsageError(f"RELEASER_PORTS={given!r}: give a range of ports, as 20000-20999")
        return int(low), int(high)
    try:
        first, last = (int(port) for port in RANGE_FILE.read_text().split()[:2])
    except (OSError, ValueError):
        first, last = 32768, 60999  # Linux's default
    if first <= LOWEST + 1000:  # an ephemeral range that starts low: above it, then
        return min(last + 1, 64535), 65535
    return LOWEST, first - 1


def free_ports(count: int, address: str = "127.0.0.1") -> list[int]:
    """`count` different ports free on `address` now, none handed out before by this process."""
    global _cursor
    low, high = port_range()
    if _cursor is None or not low <= _cursor <= high:
        _cursor = random.randint(low, high)
    ports: list[int] = []
    for _ in range(high - low + 1):
        port, _cursor = _cursor, low if _cursor >= high else _cursor + 1
        if _bindable(address, port):
            ports.append(port)
            if len(ports) == count:
                return ports
    raise UsageError(
        f"no {count} free port(s) on {address} between {low} and {high}"
        + ("; widen RELEASER_PORTS" if os.environ.get("RELEASER_PORTS") else "")
    )


def _bindable(address: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((address, port))
        except OSError:
            return False
    return True
