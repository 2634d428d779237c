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


class LocalSession(Session):
    def __init__(self, host: Host):
        self.host = host

    def run(self, script: str, timeout: float) -> CommandResult:
        started = time.monotonic()
        proc = subprocess.Popen(
            ["bash", "-s"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
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
        return LocalSession(host)
