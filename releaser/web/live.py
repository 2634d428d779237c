"""Live pages: one thread per server follows the journal (a look at its newest id every
POLL seconds, whatever the number of open pages) and wakes every page that listens; a page
listens through Server-Sent Events and fetches itself anew when an event concerns it."""

from __future__ import annotations

import asyncio
import threading

from ..model import Event
from ..store import Store

POLL = 0.1  # seconds between looks at the journal's newest id: the live delay's floor
BATCH = 500


class Listener:
    """One open page: the events that concern it reach its queue."""

    def __init__(self, loop: asyncio.AbstractEventLoop, release: str | None, environment: str | None):
        self.loop, self.release, self.environment = loop, release, environment
        self.queue: asyncio.Queue[list[Event]] = asyncio.Queue()

    def concerns(self, event: Event) -> bool:
        if self.release and event.release != self.release:
            return False
        return not (self.environment and event.environment not in (self.environment, None))


class JournalFollower:
    def __init__(self, store: Store):
        self.store = store
        self._listeners: set[Listener] = set()
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self.last = store.last_event_id()
        self._thread: threading.Thread | None = None
        self._starts = 0

    def start(self) -> None:
        """Follow (once however many times the app starts: a server runs one app)."""
        with self._guard:
            self._starts += 1
            if self._thread is None:
                self._stop.clear()
                self._thread = threading.Thread(target=self._follow, name="journal-follower", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        with self._guard:
            self._starts -= 1
            thread = self._thread if self._starts == 0 else None
            if thread is not None:
                self._stop.set()
                self._thread = None
        if thread is not None:
            thread.join(5)

    def listen(self, listener: Listener) -> None:
        with self._guard:
            self._listeners.add(listener)

    def leave(self, listener: Listener) -> None:
        with self._guard:
            self._listeners.discard(listener)

    def _follow(self) -> None:
        while not self._stop.wait(POLL):
            try:
                newest = self.store.last_event_id()
                if newest <= self.last:
                    continue
                events = self.store.find_events(after=self.last, limit=BATCH)[::-1]
            except Exception:  # noqa: S112 - the state is briefly unreachable: the next look tries again
                continue
            if not events:
                continue
            self.last = events[-1].id or self.last
            with self._guard:
                listeners = list(self._listeners)
            for listener in listeners:
                mine = [e for e in events if listener.concerns(e)]
                if mine:
                    listener.loop.call_soon_threadsafe(listener.queue.put_nowait, mine)
