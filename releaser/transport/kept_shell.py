"""A shell kept open on a host for a session, that runs releaser's own scripts one after another.

Every SSH exec starts the user's login shell, and on many hosts that shell reads rc files that
cost more than the work (pyenv, nvm, conda: 0.1 s is common). A stage sends a host three
scripts (pre-flight, prepare, switch); down one kept shell the host pays for one login shell.

A request is a line `TOKEN LIMIT SIZE`, SIZE bytes of script, then `TOKEN` on a line: a request
cut short by a dropped connection never runs. The shell runs the script as `bash -s` under
`timeout` (as a lone exec would), then writes `TOKEN STATUS` on its stdout and `TOKEN` on its
stderr, each on a line of its own after a newline. TOKEN is random per request, so nothing a
script writes can end another request's output.
"""

from __future__ import annotations

import math
import shlex
import time
import uuid

import paramiko

from .base import CommandResult, no_answer, said

# One line (a csh login shell cannot quote newlines). TMOUT, which hardened hosts export, would
# end an idle shell between phases. `read -N` in the C locale takes exactly SIZE bytes (head -c
# may read ahead on some systems); the script reaches bash through a pipe (a here-string needs a
# writable /tmp before bash 5.1).
SHELL = (
    "unset TMOUT; "
    "while IFS=' ' read -r token limit size; do "
    "LC_ALL=C IFS= read -r -d '' -N \"$size\" script || exit 90; "
    'IFS= read -r end && [ "$end" = "$token" ] || exit 90; '
    'timeout -k %(grace)d "$limit" bash -s < <(printf %%s "$script"); '
    "rc=$?; "
    'printf \'\\n%%s %%s\\n\' "$token" "$rc"; '
    "printf '\\n%%s\\n' \"$token\" >&2; "
    "done; exit 91"
)


class ShellGone(ConnectionError):
    """The kept shell had ended before a request reached it (it sat idle past a limit of the
    host's, or the connection dropped): nothing of the request ran."""


class KeptShell:
    """One `bash` on the host, fed requests over one channel of the session's connection."""

    def __init__(self, transport: paramiko.Transport, open_timeout: float, kill_grace: int):
        self.channel = transport.open_session(timeout=open_timeout)
        # --norc: bash run by sshd with -c reads ~/.bashrc, which the login shell has just read
        self.channel.exec_command("bash --norc -c " + shlex.quote(SHELL % {"grace": kill_grace}))
        self.kill_grace = kill_grace

    def run(self, script: str, timeout: float) -> CommandResult:
        """The script's status and output. A script past its local deadline (the remote
        `timeout` plus a margin for the network) comes back timed out, and the shell is closed."""
        started = time.monotonic()
        token = uuid.uuid4().hex
        data = script.encode()
        if self.channel.closed or self.channel.eof_received or self.channel.exit_status_ready():
            raise ShellGone("the kept shell ended while idle")
        # bounded like the request (a stalled network fails it), not by the last read's short timeout;
        # a send cut short leaves a partial request, which the closed shell never runs
        self.channel.settimeout(timeout)
        try:
            self.channel.sendall(f"{token} {math.ceil(timeout)} {len(data)}\n".encode() + data + f"{token}\n".encode())
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise ShellGone(f"the kept shell ended: {exc}") from None
        out, err = bytearray(), bytearray()
        out_end, err_end = f"\n{token} ".encode(), f"\n{token}\n".encode()
        deadline = started + timeout + self.kill_grace + 5
        status: int | None = None
        while status is None or err_end not in err:
            now = time.monotonic()
            if now >= deadline:
                self.close()
                return no_answer(out, err, timeout, now - started)
            while self.channel.recv_stderr_ready():
                err += self.channel.recv_stderr(65536)
            if status is not None and err_end in err:
                break
            self.channel.settimeout(max(0.01, min(deadline - now, 1.0)))
            try:
                chunk = self.channel.recv(65536) if status is None else self.channel.recv_stderr(65536)
            except TimeoutError:
                continue
            if not chunk:  # the shell ended first: the connection dropped, or the shell died
                return self._ended(out, err, started)
            if status is None:
                out += chunk
                status = _status(out, out_end, len(out) - len(chunk) - len(out_end))
            else:
                err += chunk
        out = out[: out.index(out_end)]
        err = err[: err.index(err_end)]
        code = status
        seconds = time.monotonic() - started
        timed_out = code in (124, 137) and seconds >= timeout
        text_err = err.decode(errors="replace")
        if timed_out:
            text_err = said(text_err, f"releaser: command timed out after {timeout:g}s")
        return CommandResult(code, out.decode(errors="replace"), text_err, seconds, timed_out)

    def _ended(self, out: bytearray, err: bytearray, started: float) -> CommandResult:
        """What a lone exec would say of a script whose connection ended: no status, and the
        output so far, which may hold record lines."""
        while self.channel.recv_stderr_ready():
            err += self.channel.recv_stderr(65536)
        self.close()
        return CommandResult(
            -1,  # the shell's own status is not the script's
            out.decode(errors="replace"),
            err.decode(errors="replace") + "\nreleaser: the connection ended before the script did",
            time.monotonic() - started,
        )

    def close(self) -> None:
        self.channel.close()


def _status(out: bytearray, end: bytes, start: int = 0) -> int | None:
    """The status after `end` (looked for from `start`) once its line is complete, else None."""
    at = out.find(end, max(0, start))
    if at < 0:
        return None
    line_end = out.find(b"\n", at + len(end))
    if line_end < 0:
        return None
    return int(out[at + len(end) : line_end])
