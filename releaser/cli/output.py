"""How a command prints: results to stdout (or one JSON document with --json), progress and
logs to stderr, errors even with --quiet; colours only on a terminal and without NO_COLOR;
every line scrubbed of secrets and control characters."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import TYPE_CHECKING, TextIO

import click

from .. import secrets
from ..terminal import COLOURS, Collapser, printable, summarised

if TYPE_CHECKING:
    from ..model import Event


class Output:
    """The styling of one invocation (--json, --quiet, --verbose, --no-color) and its printing."""

    def __init__(self) -> None:
        self.json = False
        self.quiet = False  # progress off; results and errors still shown
        self.verbose = False
        self.color = not os.environ.get("NO_COLOR")
        self._started = time.monotonic()
        self._progress: Collapser | None = None
        self._last_width = 0

    def apply(self, as_json: bool | None, quiet: bool | None, verbose: bool | None, no_color: bool | None) -> None:
        """The output options, from before the command or after it (after wins)."""
        self.json = bool(as_json) if as_json is not None else self.json
        self.quiet = bool(quiet) if quiet is not None else self.quiet
        self.verbose = bool(verbose) if verbose is not None else self.verbose
        if no_color:
            self.color = False

    @property
    def tty(self) -> bool:
        """Results go to a person at a terminal (relative times, summarised verdicts)."""
        return sys.stdout.isatty() and not self.json

    def told(self, verdict: str) -> str:
        """A verdict as results show it: summarised at a terminal, whole with --verbose or in a pipe."""
        return verdict if self.verbose or not self.tty else summarised(verdict)

    @property
    def live(self) -> bool:
        """Live per-host progress only on a terminal; CI logs get the plain per-phase lines."""
        return sys.stderr.isatty() and os.environ.get("TERM") != "dumb"

    def tick(self, phase: str, done: int, failed: int, total: int, seconds: float) -> None:
        line = f"  {phase}: {done}/{total} hosts done, {failed} failed, {total - done} pending, {seconds:.1f}s"
        click.echo("\r\x1b[K" + self._styled(line, "red" if failed else None, sys.stderr), err=True, nl=False)
        if done == total:
            click.echo("\r\x1b[K", err=True, nl=False)

    def say(self, text: str, color: str | None = None) -> None:
        """Progress and logs: stderr (silenced by --quiet)."""
        if not self.quiet:
            click.echo(self._styled(printable(secrets.scrub(text)), color, sys.stderr), err=True)

    def warn(self, text: str, color: str | None = "red") -> None:
        """An error or warning: stderr, even with --quiet."""
        click.echo(self._styled(printable(secrets.scrub(text)), color, sys.stderr), err=True)

    def result(self, text: str, color: str | None = None) -> None:
        """What the command answers (status, history, findings, paths): stdout, unless --json
        holds stdout for its one document (then stderr)."""
        stream = sys.stderr if self.json else sys.stdout
        if self.json and self.quiet:
            return
        click.echo(self._styled(printable(secrets.scrub(text)), color, stream), err=self.json)

    def emit(self, document: dict) -> None:
        """The one JSON document of --json (nothing without it)."""
        if self.json:
            click.echo(json.dumps(secrets.scrub_data(document), indent=2, default=str))

    def _styled(self, text: str, color: str | None, stream: TextIO) -> str:
        if color and self.color and stream.isatty():
            return click.style(text, fg=color)
        return text

    def show_event(self, event: Event) -> None:
        """A journal event or a progress note as it happens. On a terminal, long verdicts are
        summarised (all of them with --verbose) and identical notes in a row collapse into one."""
        color = COLOURS.get(event.kind)
        if self.quiet:
            return
        tty = sys.stderr.isatty()
        message = event.message if self.verbose or not tty else summarised(event.message)
        if self._progress is None:
            self._progress = Collapser(self._progress_line, tty)
        self._progress.line(message, color, repeatable=event.kind == "note" and not self.verbose)

    def _progress_line(self, text: str, color: str | None, rewrite: bool) -> None:
        line = f"[{time.monotonic() - self._started:6.1f}s] {text}"
        if rewrite:  # the line above is the same note: count it in place (as many rows as it took)
            import shutil

            rows = -(-self._last_width // max(1, shutil.get_terminal_size().columns))
            click.echo("\x1b[1A\r\x1b[K" * max(1, rows), err=True, nl=False)
        self._last_width = len(line)
        self.say(line, color)

    def flush(self) -> None:
        """The end of the command: a run of repeated progress lines shows its count."""
        if self._progress is not None:
            self._progress.flush()
