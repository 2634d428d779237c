"""The local transport: each host is a directory on this machine; scripts run under bash.

It runs exactly the scripts the ssh transport would send, which is what makes the embedded
sandbox an honest rehearsal of a real fleet.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from ..model import Host
from .base import HELD_GRACE, CommandResult, OutputFn, Session, Transport, following, held_output, said

# What a script run on this machine keeps of releaser's own environment: enough to find
# programs and speak the locale, never a credential (SMTP, Prometheus and webhook secrets live
# in releaser's environment). An environment's `pass_env` adds names.
BASE_ENV = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM")


def hook_environment(pass_env: tuple[str, ...] = ()) -> dict[str, str]:
    return {
        name: value
        for name, value in os.environ.items()
        if name in BASE_ENV or name.startswith("LC_") or name in pass_env
    }


class LocalSession(Session):
    def __init__(self, host: Host, env: dict[str, str] | None = None):
        self.host = host
        self.env = hook_environment() if env is None else env

    def run(self, script: str, timeout: float) -> CommandResult:
        """Like ssh: the script's output is read until every process holding it lets go, and a
        background process that keeps it open past HELD_GRACE after the script exited is named
        (the reading goes on, discarded, so that process never meets a closed pipe)."""
        started = time.monotonic()
        proc = subprocess.Popen(
            ["bash", "-s"],  # noqa: S607 - the local transport runs the bash on PATH, as ssh hosts do
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            env=self.env,
        )
        out, err = _Reader(proc.stdout), _Reader(proc.stderr)
        stdin = proc.stdin
        try:
            if stdin is not None:  # always: it is a pipe
                stdin.write(script.encode())
                stdin.close()
        except BrokenPipeError:  # the script exited before reading all of itself
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            proc.wait()
            for reader in (out, err):
                reader.finish(HELD_GRACE)
            return CommandResult(
                -1,
                out.text(),
                said(err.text(), f"releaser: command timed out after {timeout:g}s"),
                time.monotonic() - started,
                timed_out=True,
            )
        deadline = time.monotonic() + HELD_GRACE
        ended = [reader.finish(deadline - time.monotonic()) for reader in (out, err)]
        held = not all(ended)
        return CommandResult(
            proc.returncode,
            out.text(),
            said(err.text(), held_output(proc.returncode)) if held else err.text(),
            time.monotonic() - started,
            held=held,
        )

    def stream(self, script: str, on_output: OutputFn) -> int:
        proc = subprocess.Popen(
            ["bash", "-c", following(script)],  # noqa: S607 - the bash on PATH, as in `run`
            stdin=subprocess.PIPE,  # held open: its closing ends the script (see `following`)
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=self.env,
        )
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stdin, stdout = proc.stdin, proc.stdout
        try:
            for chunk in iter(lambda: os.read(stdout.fileno(), 65536) if stdout else b"", b""):
                on_output(decoder.decode(chunk))
            on_output(decoder.decode(b"", final=True))
            return proc.wait()
        finally:
            if stdin is not None:  # always: it is a pipe
                stdin.close()
            try:
                proc.wait(timeout=HELD_GRACE)
            except subprocess.TimeoutExpired:
                _kill_group(proc.pid)
                proc.wait()
            if stdout is not None:
                stdout.close()

    def put(self, local_path: str, remote_path: str) -> None:
        Path(remote_path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local_path, remote_path)

    def put_private(self, data: bytes, remote_path: str) -> None:
        directory = Path(remote_path).parent
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)
        part = f"{remote_path}.part"
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # a part file left by an earlier write keeps its mode otherwise
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(part, remote_path)


class _Reader:
    """Reads a pipe to its end in a thread of its own."""

    def __init__(self, pipe):
        self.pipe, self.chunks, self.keep = pipe, [], True
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for chunk in iter(lambda: self.pipe.read1(65536), b""):
            if self.keep:
                self.chunks.append(chunk)
        self.pipe.close()

    def finish(self, grace: float) -> bool:
        """True when the pipe ended within `grace` seconds; else what came so far is kept and the
        rest is read and dropped."""
        self.thread.join(max(0.0, grace))
        ended = not self.thread.is_alive()
        self.keep = ended
        return ended

    def text(self) -> str:
        return b"".join(self.chunks).decode(errors="replace")


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


class LocalTransport(Transport):
    def connect(self, host: Host) -> Session:
        return LocalSession(host, hook_environment(self.environment.pass_env))
