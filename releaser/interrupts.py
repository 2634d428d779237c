"""SIGTERM, SIGINT and SIGHUP while releaser acts on hosts: a flag read at safe points.

Raising an exception from a signal handler would land anywhere: in the middle of a store
transaction, or while worker threads are still switching hosts whose outcome would then be
lost. Instead, while `armed`, a signal only sets a flag. The fleet starts no new host work
once it is set (hosts already working finish their phase as a whole), and the pipeline
checks it between phases and while baking, then fails the stage through the one rollback
path. Outside `armed` (reading state, writing a report) a signal interrupts as usual.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

from .errors import EXIT_STAGE_FAILED, ReleaserError

HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Interrupted(ReleaserError):
    """A signal asked the running stage to stop; it is rolled back like a failed one."""

    exit_code = EXIT_STAGE_FAILED

    def __init__(self, name: str):
        super().__init__(f"interrupted ({name})")
        self.signal = name


class Interrupts:
    def __init__(self) -> None:
        self._event = threading.Event()
        self.received: str | None = None
        self._armed = 0

    def install(self) -> None:
        """Route the handled signals here (main thread only)."""
        for signum in HANDLED:
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, _frame) -> None:
        name = signal.Signals(signum).name
        if not self._armed:
            raise KeyboardInterrupt(name)
        if self.received is None:
            self.received = name
        self._event.set()

    @contextmanager
    def armed(self) -> Iterator[Interrupts]:
        """While inside, signals set the flag instead of raising."""
        self._armed += 1
        try:
            yield self
        finally:
            self._armed -= 1

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def request(self, name: str) -> None:
        """As if the signal `name` had arrived (for callers that stop a run themselves)."""
        self.received = self.received or name
        self._event.set()

    def check(self) -> None:
        """At a safe point: stop here if a signal arrived."""
        if self._event.is_set():
            raise Interrupted(self.received or "signal")

    def wait(self, seconds: float) -> None:
        """Sleep up to `seconds`, waking at once for a signal; then `check`."""
        self._event.wait(max(0.0, seconds))
        self.check()
