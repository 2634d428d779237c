"""The journal: every state change is appended to the store and shown to whoever watches."""

from __future__ import annotations

from collections.abc import Callable

from . import model, secrets
from .events import Event
from .failpoints import from_environment
from .store import Store

Sink = Callable[[model.Event], None]


class Journal:
    def __init__(self, store: Store, sink: Sink | None = None, listeners: tuple[Sink, ...] = ()):
        self.store = store
        self.sink = sink
        self.listeners = listeners
        self.failpoint = from_environment()

    def record(self, kind: Event, message: str, **fields) -> model.Event:
        """Append an event of a kind the catalogue (events.py) lists, durable when this returns,
        or when the transaction it is part of commits; then show it and tell the listeners."""
        return self._append(kind, message, True, fields)

    def keep(self, kind: Event, message: str, **fields) -> model.Event:
        """Record without showing it: the caller has said it otherwise (a bake's look, as a note)."""
        return self._append(kind, message, False, fields)

    def _append(self, kind: Event, message: str, shown: bool, fields: dict) -> model.Event:
        try:
            kind = Event(kind)
        except ValueError:
            raise ValueError(f"not a journal event kind: {kind!r} (releaser/events.py lists them)") from None
        if "data" in fields:
            fields["data"] = secrets.scrub_data(fields["data"])
        entry = model.Event(kind=kind, message=secrets.scrub(message), **fields)
        event = self.store.append_event(entry)
        if self.failpoint is not None:
            failpoint = self.failpoint
            self.store.after_commit(lambda: failpoint.after(event))
        if self.sink and shown:
            self.sink(event)
        for listener in self.listeners:
            listener(event)
        return event

    def note(self, message: str, **fields) -> None:
        """Show progress that is not worth keeping (per-host lines, bake ticks)."""
        if self.sink:
            self.sink(model.Event(kind=Event.NOTE, message=message, **fields))
