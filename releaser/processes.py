"""Whether a process recorded in the store may still be at work: its pid, on this machine;
its lease, elsewhere. Light: `status` imports it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

from .model import Lock, parse_ts


def this_machine() -> str:
    """The host name records carry (socket.gethostname() without importing socket)."""
    return os.uname().nodename


_SIGNED_IN: ContextVar[str | None] = ContextVar("signed_in", default=None)


@contextmanager
def acting_as(user: str) -> Iterator[None]:
    """Who acts, for the work done inside: a user signed in to the dashboard (one request's thread)."""
    token = _SIGNED_IN.set(user)
    try:
        yield
    finally:
        _SIGNED_IN.reset(token)


def whoami() -> str:
    """Who acts: the user signed in to the dashboard for this request (see acting_as), else
    $RELEASER_ACTOR (a CI job names the person or pipeline behind it), else the OS user. The
    last two are recorded, not authenticated: they are as trustworthy as who may run releaser."""
    signed_in = _SIGNED_IN.get()
    if signed_in is not None:
        return signed_in
    actor = os.environ.get("RELEASER_ACTOR", "").strip()
    if actor:
        return actor[:100]
    import getpass

    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lease_running(lease_until: str | None) -> bool:
    return lease_until is not None and parse_ts(lease_until) > datetime.now(UTC)


def is_stale(lock: Lock) -> bool:
    """A lock whose lease ran out, or that a process of this machine took and no longer exists (kill -9)."""
    if not lease_running(lock.lease_until):
        return True
    return lock.hostname == this_machine() and not pid_alive(lock.pid)


def owner_alive(pid: int | None, hostname: str | None, lease_until: str | None) -> bool:
    """Whether the process recorded as working on a run, other than this one, may still be at it."""
    if pid is None or hostname is None or (pid, hostname) == (os.getpid(), this_machine()):
        return False
    if hostname == this_machine():
        return pid_alive(pid)
    return lease_running(lease_until)
