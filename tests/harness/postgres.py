"""A real PostgreSQL (Debian's package) for the tests: initdb into a temporary directory, the
server on a loopback port, password authentication over TCP, a fresh database per test."""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from releaser.demo.ports import free_ports
from tests.harness.marks import needs

USER, PASSWORD = "releaser", "pg-secret-Zq81x"


def _binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


class PostgresServer:
    """One server; `database()` gives each test a database of its own (URL with the password)."""

    def __init__(self):
        needs("postgres")
        bin_dir = _binaries()
        if bin_dir is None:
            pytest.fail("PostgreSQL is not installed: the test command installs Debian's postgresql")
        self.bin = bin_dir
        self.dir = Path(tempfile.mkdtemp(prefix="releaser-pg-"))
        self.data = self.dir / "data"
        self.port = free_ports(1)[0]
        self._names = itertools.count(1)
        (self.dir / "pw").write_text(PASSWORD + "\n")
        self._as_owner = [] if os.geteuid() else ["runuser", "-u", "postgres", "--"]
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
            shutil.chown(self.dir / "pw", "postgres")
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            USER,
            "--pwfile",
            str(self.dir / "pw"),
            "--auth-host=scram-sha-256",
            "--auth-local=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        )
        # a test server: durability is the kernel's business here, not the disk's
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.dir} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.dir / "log"), "-w", "-t", "60", "start")

    def _run(self, tool: str, *args: str) -> None:
        proc = subprocess.run(
            [*self._as_owner, str(self.bin / tool), *args], capture_output=True, text=True, cwd=self.dir
        )
        if proc.returncode:
            log = (self.dir / "log").read_text() if (self.dir / "log").exists() else ""
            raise RuntimeError(f"{tool} failed: {proc.stderr or proc.stdout}\n{log}")

    def url(self, database: str = "postgres", password: str = PASSWORD) -> str:
        return f"postgresql://{USER}:{password}@127.0.0.1:{self.port}/{database}"

    def database(self) -> str:
        """A new, empty database; returns its URL."""
        import psycopg

        name = f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def restart(self) -> None:
        """Stop and start the server: every connection to it is cut, as by a failover."""
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.dir / "log"), "-m", "fast", "-w", "-t", "60", "restart"
        )

    def close(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)
