"""The journal: every state change is appended to the store and shown to whoever watches."""

from __future__ import annotations

from collections.abc import Callable

from . import secrets
from .failpoints import from_environment
from .model import Event
from .store import Store

Sink = Callable[[Event], None]


class Journal:
    def __init__(self, store: Store, sink: Sink | None = None, listeners: tuple[Sink, ...] = ()):
        self.store = store
        self.sink = sink
        self.listeners = listeners
        self.failpoint = from_environment()

    def record(self, kind: str, message: str, **fields) -> Event:
        """Append an event (durable when this returns, or when the transaction it is part of
        commits), then show it and tell the listeners."""
        if "data" in fields:
            fields["data"] = secrets.scrub_data(fields["data"])
        event = self.store.append_event(Event(kind=kind, message=secrets.scrub(message), **fields))
        if self.failpoint is not None:
            failpoint = self.failpoint
            self.store.after_commit(lambda: failpoint.after(event))
        if self.sink:
            self.sink(event)
        for listener in self.listeners:
            listener(event)
        return event

    def note(self, message: str, **fields) -> None:
        """Show progress that is not worth keeping (per-host lines, bake ticks)."""
        if self.sink:
            self.sink(Event(kind="note", message=message, **fields))
