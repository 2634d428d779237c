"""What one invocation works on, opened when a command first asks for it: the configuration,
the state, the journal (its events shown as they happen), the pipeline. A command that never
asks for the state opens no database; `--help` loads none of it."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from .. import events
from ..errors import ReleaserError, UsageError
from ..interrupts import Interrupts
from ..names import DEFAULT_CONFIG
from ..terminal import shown_time
from .output import Output

if TYPE_CHECKING:
    from ..journal import Journal
    from ..model import Config, Event
    from ..notify import Notifier
    from ..operation import Operation
    from ..pipeline import Pipeline
    from ..store import Store

    OperationT = TypeVar("OperationT", bound=Operation)

INTERRUPTS = Interrupts()  # signals while a command acts on hosts: see interrupts.py


class App:
    """Per-invocation context: where the config is, how to print (`out`), lazily opened state."""

    def __init__(self, config_file: str | None = None):
        self.config_file = config_file
        self.out = Output()
        self._config: Config | None = None
        self._store: Store | None = None
        self._journal: Journal | None = None
        self._notifier: Notifier | None = None

    def apply(
        self,
        directory: str | None,
        config_file: str | None,
        as_json: bool | None,
        quiet: bool | None,
        verbose: bool | None,
        no_color: bool | None,
    ) -> None:
        """Global options, from before the command or after it (after wins)."""
        if directory:
            try:
                os.chdir(directory)
            except OSError as exc:
                raise UsageError(f"-C {directory}: {exc.strerror}") from None
        self.config_file = config_file or self.config_file
        self.out.apply(as_json, quiet, verbose, no_color)

    def config(self) -> Config:
        if self._config is None:
            from ..config import load_config, register_secrets

            self._config = load_config(Path(self.config_file or DEFAULT_CONFIG))
            register_secrets(self._config)
        return self._config

    def store(self, read_only: bool = False) -> Store:
        """The state; a command that only reads creates no database (StoreMissing instead)."""
        if self._store is None:
            from ..store import open_store

            config = self.config()
            self._store = open_store(config, create=not read_only)
        return self._store

    def existing_store(self) -> Store | None:
        """The state if a database exists, else None (and none is created): for commands that
        act on what earlier commands recorded."""
        from ..store import StoreMissing

        try:
            return self.store(read_only=True)
        except StoreMissing:
            return None

    def recorded_state(self, nothing: str) -> Store:
        """The state, for a command that cannot go on without records: UsageError(`nothing`)."""
        store = self.existing_store()
        if store is None:
            raise UsageError(nothing)
        return store

    def readable_store(self) -> Store:
        """The state to read, or an empty one (with a note) where nothing is recorded yet."""
        from ..store import StoreMissing, memory_store

        try:
            return self.store(read_only=True)
        except StoreMissing as missing:
            self.out.say(f"note: {missing}", "yellow")
            self._store = memory_store()
            return self._store

    def journal(self) -> Journal:
        if self._journal is None:
            from ..notify import open_journal

            config = self.config()
            self._journal, self._notifier = open_journal(self.store(), self.show_event, config)
        return self._journal

    def pipeline(self) -> Pipeline:
        from ..pipeline import Pipeline

        return self.operation(Pipeline)

    def operation(self, kind: type[OperationT]) -> OperationT:
        """A promotion, rollback or recovery on this command's configuration, state and journal."""
        return kind(
            self.config(),
            self.store(),
            self.journal(),
            tick=self.out.tick if self.out.live else None,
            interrupts=INTERRUPTS,
        )

    def show_event(self, event: Event) -> None:
        """A journal event as it happens, after the news of a hangup (see journal_hangup)."""
        self.journal_hangup()
        self.out.show_event(event)

    def journal_hangup(self) -> None:
        """A hangup (see interrupts.py) into the journal, once, at the first journal step after it
        (or a look of `watch`, or the end of the command): the terminal is gone, the work is not."""
        if self._journal is None or (at := INTERRUPTS.hangup_news()) is None:
            return
        import shlex
        from datetime import UTC, datetime

        when = datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")
        command = shlex.join(["releaser", *sys.argv[1:]])
        self._journal.record(
            events.Event.TERMINAL_HANGUP,
            f"the terminal went away (SIGHUP at {shown_time(when)}); `{command}` (pid "
            f"{os.getpid()}) goes on to its end; what it says from then on is in the journal (`releaser history`)",
            data={"at": when, "pid": os.getpid(), "command": command},
        )

    def close(self) -> None:
        # the state failed the command: its own error is the one to tell
        with contextlib.suppress(ReleaserError):
            self.journal_hangup()
        self.out.flush()
        if self._notifier is not None:
            self._notifier.close()
        if self._store is not None:
            self._store.close()
