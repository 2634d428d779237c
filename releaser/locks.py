"""One promotion per environment: a lock in the store with owner, pid, host and a lease.

The holder renews the lease from a heartbeat thread. A lock is stale when its lease ran out,
or when it was taken on this machine by a process that no longer exists (kill -9).
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from .errors import BusyError
from .events import Event
from .journal import Journal
from .model import Claim, Lock, utcnow
from .processes import is_stale, this_machine, whoami
from .store import Store, StoreError
from .terminal import shown_time

DEFAULT_LEASE = 300.0


def _lease_until(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat(timespec="milliseconds")


def held_by(held: Lock, environment: str) -> str:
    """Who holds the environment, since when, running what; and what to do about it."""
    return (
        f"environment {environment} is locked by {held.owner} (pid {held.pid} on {held.hostname}, since "
        f"{shown_time(held.acquired_at)}, lease until {shown_time(held.lease_until)}) running: {held.command}; "
        f"wait for it to end (`releaser status` shows it), or, if that process is gone, `releaser unlock "
        f"{environment} --force --reason TEXT`"
    )


class EnvironmentLock:
    """`with EnvironmentLock(...)`: held for the block, or BusyError (exit 3) at once."""

    def __init__(self, store: Store, journal: Journal, environment: str, command: str, lease: float = DEFAULT_LEASE):
        self.store, self.journal = store, journal
        self.environment, self.command, self.lease = environment, command, lease
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> EnvironmentLock:
        lock = Lock(
            environment=self.environment,
            owner=whoami(),
            pid=os.getpid(),
            hostname=this_machine(),
            command=self.command,
            acquired_at=utcnow(),
            lease_until=_lease_until(self.lease),
            token=self.token,
        )
        try:
            stale = self.store.acquire_lock(lock, is_stale)
        except BusyError:
            held = self.store.get_lock(self.environment)
            if held is None:  # let go meanwhile: the store's own words
                raise
            raise BusyError(held_by(held, self.environment)) from None
        if stale is not None:
            self.journal.record(
                Event.LOCK_TAKEN_OVER,
                f"took over the stale lock of {stale.owner} (pid {stale.pid} on {stale.hostname}, lease until "
                f"{stale.lease_until}) on {self.environment}",
                environment=self.environment,
                data={"stale": stale.__dict__ | {"token": None}},
            )
        self._thread = threading.Thread(target=self._heartbeat, name=f"lock-{self.environment}", daemon=True)
        self._thread.start()
        return self

    def claim(self) -> Claim:
        """This holder, for the runs it works on: their lease is renewed with the lock's."""
        return Claim(whoami(), os.getpid(), this_machine(), self.token, _lease_until(self.lease))

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.lease / 3):
            try:
                self.store.renew_lock(self.environment, self.token, _lease_until(self.lease))
            except StoreError:
                continue  # the state is briefly away: the lease has two more renewals before it runs out

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        self.store.release_lock(self.environment, self.token)


def clear_lock(store: Store, journal: Callable[[], Journal], environment: str, reason: str) -> Lock | None:
    """Clear `environment`'s lock, whoever holds it (`releaser unlock --force`), and journal who
    held it and why it was cleared. Returns the lock cleared, or None when there was none; the
    journal (and with it the webhooks) is opened only then."""
    held = store.force_unlock(environment)
    if held is not None:
        journal().record(
            Event.LOCK_CLEARED,
            f"cleared the lock of {held.owner} (pid {held.pid} on {held.hostname}) on {environment}: {reason}",
            environment=environment,
            data={"reason": reason, "held_by": held.owner, "pid": held.pid},
        )
    return held
