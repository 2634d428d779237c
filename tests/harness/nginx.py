"""A real nginx (Debian's package) on a loopback port, in a prefix of its own, in front of an
environment's hosts: the demo's (releaser.demo.nginx), started by the tests themselves."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import pytest

from releaser.demo.nginx import SandboxNginx, nginx_binary
from tests.harness.marks import needs


class HarnessNginx(SandboxNginx):
    """The demo's nginx, stopped by its master's pid: `nginx -s stop` reads the configuration
    first, and tests break it on purpose (a route nginx refuses)."""

    def start(self, first_route: str) -> HarnessNginx:
        needs("nginx")
        super().start(first_route)
        return self

    def stop(self) -> None:
        try:
            pid = int(self.pid_file.read_text())
        except (OSError, ValueError):
            return  # never started, or stopped already
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)  # nginx's fast shutdown, as `-s stop` sends
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.02)


def nginx_in(prefix: Path, variable: str) -> HarnessNginx:
    binary = nginx_binary()
    if binary is None:
        pytest.fail("nginx is not installed: the test command installs Debian's nginx")
    return HarnessNginx(prefix, variable, binary)
