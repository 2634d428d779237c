"""Signals while releaser works: SIGTERM and SIGINT ask it to stop; SIGHUP stops nothing.

SIGTERM and SIGINT: raising an exception from a signal handler would land anywhere: in the
middle of a store transaction, or while worker threads are still switching hosts whose outcome
would then be lost. Instead, while `armed`, a signal only sets a flag. The fleet starts no new
host work once it is set (hosts already working finish their phase as a whole), and the
pipeline checks it between phases and while baking, then fails the stage through the one
rollback path. Outside `armed` (reading state, writing a report) a signal interrupts as usual.

SIGHUP says the terminal went away (closed, or its SSH session dropped). That is nobody asking
to stop, and a promotion or a rollback left halfway is the worst outcome there is: the hangup
is noted (`hangup`, when it came) for the journal (cli/app.py journals it at the next step), and
the command runs to its end with the exit code it would have had. What it writes to the lost
terminal is dropped from then on (streams.py); the journal keeps what it says. SIGPIPE stays
ignored, as Python has it: a closed pipe is an error on the write, which streams.py absorbs.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import EXIT_STAGE_FAILED, ReleaserError

STOPPING = (signal.SIGTERM, signal.SIGINT)


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
        self.hangup: float | None = None  # when SIGHUP came (time.time())
        self._hangup_told = False
        self._telling = threading.Lock()

    def install(self) -> None:
        """Route the signals here (main thread only). SIGHUP gets a handler, not SIG_IGN, so that
        the processes releaser starts (hooks, and the apps they start) keep the default."""
        for signum in STOPPING:
            signal.signal(signum, self._handle)
        signal.signal(signal.SIGHUP, self._hang_up)

    def _handle(self, signum: int, _frame) -> None:
        name = signal.Signals(signum).name
        if not self._armed:
            raise KeyboardInterrupt(name)
        if self.received is None:
            self.received = name
        self._event.set()

    def _hang_up(self, _signum: int, _frame) -> None:
        if self.hangup is None:
            self.hangup = time.time()

    def hangup_news(self) -> float | None:
        """When the terminal went away, the first time this is asked after the hangup (it is
        journaled once, by whichever thread gets there); else None."""
        with self._telling:
            if self.hangup is None or self._hangup_told:
                return None
            self._hangup_told = True
            return self.hangup

    @contextmanager
    def armed(self) -> Iterator[Interrupts]:
        """While inside, SIGTERM and SIGINT set the flag instead of raising."""
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
