"""The transport interface: open a session to a host, run one script there, put a file."""

from __future__ import annotations

import shlex
from abc import ABC, abstractmethod
from collections.abc import Callable

from ..model import Environment, Host
from ..record import Record

TAIL_CHARS = 2000


def tail(text: str, limit: int = TAIL_CHARS) -> str:
    return text if len(text) <= limit else "..." + text[-limit:]


HELD_GRACE = 2.0  # seconds a script's output may stay open after it exited


def said(text: str, line: str) -> str:
    """What a script said on a stream, then releaser's own line about it, on a line of its own."""
    return (text if not text or text.endswith("\n") else text + "\n") + line


def held_output(exit_code: int) -> str:
    """Why a script that exited did not let go of the connection, and what to do about it."""
    return (
        f"releaser: the script ended (exit {exit_code}) but a process it started in the background still "
        "holds its output, so the connection cannot finish; start it with its input and output redirected, "
        "e.g. nohup CMD </dev/null >>LOG 2>&1 &"
    )


class AccessRefused(ConnectionError):
    """The host answered but would not let releaser in as configured: a key it refuses, a host
    key known_hosts does not hold. The configuration's to fix, never worth a retry."""


class HostKeyChanged(ConnectionError):
    """The host offered another key than known_hosts holds: a reinstalled host, or someone in
    the middle. A person must look before releaser connects."""


def no_answer(out: bytes | bytearray, err: bytes | bytearray, timeout: float, seconds: float) -> CommandResult:
    """A script whose host said nothing more before the local deadline (the remote `timeout`
    plus a margin): what it said until then."""
    return CommandResult(
        -1,
        out.decode(errors="replace"),
        said(err.decode(errors="replace"), f"releaser: no answer after {timeout:g}s"),
        seconds,
        timed_out=True,
    )


def following(script: str) -> str:
    """`script` made to end with the controller: it runs in a session of its own, ended (TERM to
    the whole session) once the script's input closes, as it does when the controller's channel
    or pipe goes. Without a terminal on the host nothing else would tell a `tail -F` to stop.
    (`<&0`: bash gives a background command /dev/null for input unless it names one.)"""
    return f"""setsid bash -c {shlex.quote(script)} </dev/null &
pid=$!
{{ cat >/dev/null; kill -TERM -- "-$pid" 2>/dev/null; }} <&0 >/dev/null 2>&1 &
wait "$pid"
"""


OutputFn = Callable[[str], None]  # a piece of what a streamed script printed, decoded


class CommandResult(Record):
    """How a script ended on a host: exit status, output, and whether it timed out or held its output."""

    exit_code: int
    stdout: str
    stderr: str
    duration: float
    timed_out: bool = False
    held: bool = False  # the script exited but a background process kept its output open

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.held


class Session(ABC):
    """An open connection to one host, reused for every phase of a stage."""

    @abstractmethod
    def run(self, script: str, timeout: float) -> CommandResult:
        """Run a bash script on the host (sent on stdin), bounded by `timeout` seconds."""

    def run_in_shell(self, script: str, timeout: float) -> CommandResult:
        """Run one of releaser's own scripts, which leave no process holding their output (the
        user's hooks in them run detached, their output in files). A transport may send it down
        a shell kept open for the session, so that the host starts one login shell per stage
        rather than one per phase."""
        return self.run(script, timeout)

    def stream(self, script: str, on_output: OutputFn) -> int:
        """Run a bash script on the host with no time limit, passing its output (stdout and stderr
        as one) to `on_output` as it comes; returns its exit status. When the caller stops first
        (an exception from `on_output`, Ctrl-C), the script's processes on the host are ended too
        (`following`): for `releaser logs -f`."""
        raise NotImplementedError(f"{type(self).__name__} cannot stream a script's output")

    @abstractmethod
    def put(self, local_path: str, remote_path: str) -> None:
        """Copy a file to the host, creating the parent directory."""

    @abstractmethod
    def put_private(self, data: bytes, remote_path: str) -> None:
        """Write `data` (a secret) to the host, readable by its user alone: mode 0600 in a
        directory of mode 0700, replaced in one rename."""

    def close(self) -> None:  # noqa: B027 - optional for transports without connections
        """Release the connection."""


Notify = Callable[[str, str, dict], None]  # kind, message, data: journaled by the caller


class Transport(ABC):
    def __init__(self, environment: Environment, notify: Notify | None = None):
        self.environment = environment
        self.notify = notify

    @abstractmethod
    def connect(self, host: Host) -> Session:
        """Open a session; raises ConnectionError (or OSError) when the host is unreachable."""
