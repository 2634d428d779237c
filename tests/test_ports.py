"""The ports the demo and the test servers listen on: below the kernel's ephemeral range, from
RELEASER_PORTS when set, never the same one twice before the range has gone round."""

from __future__ import annotations

import socket

import pytest

from releaser.demo import ports
from releaser.errors import UsageError


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(ports, "_cursor", None)
    return monkeypatch


def this_workers(count: int) -> tuple[int, int]:
    """The last `count` ports of this worker's range (tests/conftest.py): no other worker's."""
    high = ports.port_range()[1]
    return high - count + 1, high


def test_ports_come_from_the_range_given_and_differ(fresh: pytest.MonkeyPatch) -> None:
    low, high = this_workers(100)
    fresh.setenv("RELEASER_PORTS", f"{low}-{high}")
    chosen = ports.free_ports(30) + ports.free_ports(30)
    assert len(set(chosen)) == 60 and all(low <= port <= high for port in chosen)


def test_a_port_in_use_is_passed_over(fresh: pytest.MonkeyPatch) -> None:
    low, high = this_workers(10)
    fresh.setenv("RELEASER_PORTS", f"{low}-{high}")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports.free_ports(1)[0]))
        taken.listen()
        fresh.setattr(ports, "_cursor", taken.getsockname()[1])  # the next one the cursor would give
        assert taken.getsockname()[1] not in ports.free_ports(9)


def test_without_a_range_ports_stay_below_the_ephemeral_range(fresh: pytest.MonkeyPatch) -> None:
    fresh.delenv("RELEASER_PORTS", raising=False)
    first = int(ports.RANGE_FILE.read_text().split()[0])
    assert all(ports.LOWEST <= port < first for port in ports.free_ports(20))


@pytest.mark.parametrize("given", ["abc", "30000", "30000-20000", "80-90", "60000-70000"])
def test_a_bad_range_is_refused_with_what_to_write(fresh: pytest.MonkeyPatch, given: str) -> None:
    fresh.setenv("RELEASER_PORTS", given)
    with pytest.raises(UsageError, match="give a range of ports, as 20000-20999"):
        ports.free_ports(1)


def test_a_range_too_narrow_says_to_widen_it(fresh: pytest.MonkeyPatch) -> None:
    low, high = this_workers(2)
    fresh.setenv("RELEASER_PORTS", f"{low}-{high}")
    with pytest.raises(UsageError, match=f"no 3 free port.* between {low} and {high}; widen RELEASER_PORTS"):
        ports.free_ports(3)
