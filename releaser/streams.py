"""stdout and stderr that no reader going away can turn into an error in the work.

Output goes to whoever watches: a terminal, a pipe into `head` or `grep -m`, a CI log. When that
reader goes away — the pipe closes (EPIPE: Python ignores SIGPIPE, so a closed pipe is an error
on the write), the descriptor was closed (EBADF), the terminal hung up (EIO) — a promotion or a
rollback halfway must still run to its end; the journal keeps what it said. So from the first
such error on, a stream drops what it is given, and its descriptor is pointed at /dev/null:
what the stream's buffer still holds, and the interpreter's last flush at exit, go nowhere
instead of raising (which would print "Exception ignored ... BrokenPipeError" and exit 120).
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Iterable
from typing import TextIO

GONE = frozenset({errno.EPIPE, errno.EBADF, errno.EIO})


class Guarded:
    """A text stream that never raises for a reader that went away (see the module's docstring).
    It has no `buffer`: whoever looks for the binary stream beneath (click does) writes text here."""

    def __init__(self, stream: TextIO, gone: bool = False):
        self._stream = stream
        self.gone = gone

    def write(self, text: str) -> int:
        if not isinstance(text, str):  # as a text stream does: click tells text streams from binary ones so
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if not self.gone:
            try:
                self._stream.write(text)
            except OSError as exc:
                self._lost(exc)
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if not self.gone:
            try:
                self._stream.flush()
            except OSError as exc:
                self._lost(exc)

    def _lost(self, exc: OSError) -> None:
        if exc.errno not in GONE:
            raise exc
        self.gone = True
        try:
            fd = self._stream.fileno()
        except (OSError, ValueError):  # not backed by a descriptor: dropping the writes is all there is to do
            return
        _to_devnull(fd)

    def isatty(self) -> bool:
        return not self.gone and self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    @property
    def encoding(self) -> str:
        return self._stream.encoding

    @property
    def errors(self) -> str | None:
        return self._stream.errors

    @property
    def closed(self) -> bool:
        return self._stream.closed

    @property
    def name(self) -> str:
        return getattr(self._stream, "name", "<guarded>")


def guard() -> None:
    """Put sys.stdout and sys.stderr behind guards for the life of this process (the command
    line's entry point calls it first). A standard descriptor that was closed before releaser
    started (`>&-`) is opened on /dev/null first, so that no file the work opens (the state
    database) takes its number and receives output."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            _to_devnull(fd)
    sys.stdout = _guarded(sys.stdout)
    sys.stderr = _guarded(sys.stderr)


def _guarded(stream: TextIO | None) -> Guarded:
    """The stream behind a guard; Python leaves it None when its descriptor was closed at start-up."""
    if isinstance(stream, Guarded):
        return stream
    if stream is None:
        return Guarded(open(os.devnull, "w", encoding="utf-8"), gone=True)
    return Guarded(stream)


def _to_devnull(fd: int) -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    if devnull != fd:  # it is `fd` itself when that was closed and the lowest free number
        os.dup2(devnull, fd)
        os.close(devnull)
