"""The local transport: each host is a directory on this machine; scripts run under bash.

It runs exactly the scripts the ssh transport would send, which is what makes the embedded
sandbox an honest rehearsal of a real fleet.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from ..model import Host
from .base import CommandResult, Session, Transport


# What a script run on this machine keeps of releaser's own environment: enough to find
# programs and speak the locale, never a credential (SMTP, Prometheus and webhook secrets live
# in releaser's environment). An environment's `pass_env` adds names.
BASE_ENV = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM")


def hook_environment(pass_env: tuple[str, ...] = ()) -> dict[str, str]:
    return {name: value for name, value in os.environ.items()
            if name in BASE_ENV or name.startswith("LC_") or name in pass_env}


class LocalSession(Session):
    def __init__(self, host: Host, env: dict[str, str] | None = None):
        self.host = host
        self.env = hook_environment() if env is None else env

    def run(self, script: str, timeout: float) -> CommandResult:
        started = time.monotonic()
        proc = subprocess.Popen(
            ["bash", "-s"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            env=self.env,
        )
        try:
            out, err = proc.communicate(script, timeout=timeout)
            return CommandResult(proc.returncode, out, err, time.monotonic() - started)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            out, err = proc.communicate()
            err += f"\nreleaser: command timed out after {timeout:g}s"
            return CommandResult(-1, out, err, time.monotonic() - started, timed_out=True)

    def put(self, local_path: str, remote_path: str) -> None:
        Path(remote_path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local_path, remote_path)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class LocalTransport(Transport):
    def connect(self, host: Host) -> Session:
        return LocalSession(host, hook_environment(self.environment.pass_env))
