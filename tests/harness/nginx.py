"""A real nginx (Debian's package) on a loopback port, in a prefix of its own, in front of an
environment's hosts: the demo's (releaser.demo.nginx), started by the tests themselves."""

from __future__ import annotations

from pathlib import Path

import pytest

from releaser.demo.nginx import SandboxNginx, nginx_binary


def nginx_in(prefix: Path, variable: str) -> SandboxNginx:
    binary = nginx_binary()
    if binary is None:
        pytest.fail("nginx is not installed: the test command installs Debian's nginx")
    return SandboxNginx(prefix, variable, binary)
