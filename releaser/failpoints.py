"""Fault injection at journal steps, for the fault-injection tests and `bench/faults`.

Every state change passes through the journal, so a journal step is the natural place to
stop the process: `RELEASER_FAILPOINT=KIND[@STAGE][#N]:SIGNAL` sends SIGNAL (KILL, TERM, INT,
HUP, or STOP to hold it there) to this process right after the N-th (default first) event of
KIND (in STAGE, if given) is durable: at once, or when the transaction it belongs to commits.
Unset, it costs one dictionary lookup per event.
"""

from __future__ import annotations

import os
import signal

from .model import Event
from .record import Record

VARIABLE = "RELEASER_FAILPOINT"


class Failpoint(Record):
    kind: str
    stage: str | None
    nth: int
    signal: signal.Signals
    seen: int = 0

    @classmethod
    def parse(cls, spec: str) -> Failpoint:
        where, _, name = spec.rpartition(":")
        where, _, nth = where.partition("#")
        kind, _, stage = where.partition("@")
        if not kind or not name:
            raise ValueError(f"{VARIABLE}={spec!r}: expected KIND[@STAGE][#N]:SIGNAL")
        return cls(kind, stage or None, int(nth or 1), signal.Signals["SIG" + name.upper().removeprefix("SIG")])

    def matches(self, event: Event) -> bool:
        return event.kind == self.kind and (self.stage is None or event.stage == self.stage)

    def after(self, event: Event) -> None:
        if self.matches(event):
            self.seen += 1
            if self.seen == self.nth:
                os.kill(os.getpid(), self.signal)


def from_environment() -> Failpoint | None:
    spec = os.environ.get(VARIABLE)
    return Failpoint.parse(spec) if spec else None
