"""Projects that deploy the ledger sample app (tests/harness/ledger.py) over real sshd, each
environment on a PostgreSQL database of its own, with releaser migrating it: the tests of
database migrations (tests/test_migrations.py).

Hosts are loopback addresses of the sshd fleet, so every host is this machine: the ledger's app
runs with this interpreter (psycopg, alembic) and PostgreSQL's client tools, put on PATH by an
environment variable of the hosts. Each host's app listens on a port of its own (LEDGER_PORT).
A host's check fails while the file `flags/sick-<host>` exists; the migration's `up` waits while
`flags/hold-up` exists, and its backup fails while `flags/fail-backup` does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import sysconfig
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from releaser.demo.ports import free_ports
from tests.harness.ledger import MIGRATE_PLAYBOOK_PART, PLAYBOOK, STEPS, ledger_artifact, pg_bin_path
from tests.harness.marks import needs
from tests.harness.sshd import SshFleet

CHECKS = """\
checks:
  - name: health
    type: http
    url: "http://127.0.0.1:{LEDGER_PORT}/health"
    expect_status: [200]
    timeout: 2s
  - name: flag
    type: command
    command: "test ! -e {FLAGS}/sick-{name}"
    timeout: 5s
"""


def migrate_part(flags: Path) -> str:
    """The ledger's `migrate:` with the test's switches: `up` waits at hold-up, the backup fails at fail-backup."""
    return MIGRATE_PLAYBOOK_PART.replace(
        '  up: alembic upgrade "$RELEASER_SCHEMA_TARGET"',
        f'  up: while [ -e {flags}/hold-up ]; do sleep 0.05; done; alembic upgrade "$RELEASER_SCHEMA_TARGET"',
    ).replace("  backup: pg_dump", f"  backup: test ! -e {flags}/fail-backup && pg_dump")


@dataclass
class Env:
    name: str
    hosts: list[str]
    database: str
    scratch: str
    backups: str = "required"
    ports: dict[str, int] = field(default_factory=dict)


@dataclass
class Ledgers:
    """A configuration directory of ledger environments over `fleet`, and helpers to drive releaser on it."""

    dir: Path
    fleet: SshFleet
    envs: dict[str, Env]
    stages: list[tuple[str, str]]  # (stage, environment)
    bake: str = "500ms"
    window: str = "4s"
    windows: dict[str, str] = field(default_factory=dict)  # stage -> its own rollback window
    registered: dict[str, Path] = field(default_factory=dict)

    @classmethod
    def create(cls, base: Path, fleet: SshFleet, postgres, layout: dict[str, int], stages, **options) -> Ledgers:
        """`layout`: environment -> number of hosts (fleet addresses, reused across projects);
        `stages`: the pipeline as (stage, environment) pairs."""
        envs, number = {}, 0
        for name, count in layout.items():
            hosts = [f"{name}-{i}" for i in range(1, count + 1)]
            env = Env(name, hosts, postgres.database(), postgres.database())
            env.ports = dict(zip(hosts, free_ports(count), strict=True))
            envs[name] = env
            number += count
        assert number <= len(fleet.addresses)
        project = cls(base, fleet, envs, list(stages), **options)
        (base / "playbooks").mkdir(parents=True)
        (base / "healthchecks").mkdir()
        (base / "flags").mkdir()
        # the app listens on 127.0.0.1 alone, not on the host's sshd address
        playbook = PLAYBOOK.replace("http://{address}:", "http://127.0.0.1:")
        (base / "playbooks" / "ledger.yaml").write_text(playbook + migrate_part(base / "flags"))
        (base / "healthchecks" / "ledger.yaml").write_text(CHECKS)
        project.write()
        return project

    def write(self) -> None:
        path = os.pathsep.join((pg_bin_path(), sysconfig.get_path("scripts"), os.environ["PATH"]))
        addresses = iter(self.fleet.addresses)
        lines = ["project: ledger", "state: {wait: 10s}", "environments:"]
        for env in self.envs.values():
            env_vars = {
                "DATABASE_URL": env.database,
                "SCRATCH_URL": env.scratch,
                "PATH": path,
                "FLAGS": str(self.flags),
            }
            hosts = ", ".join(
                f"{{name: {h}, address: {next(addresses)}, vars: {{LEDGER_PORT: '{env.ports[h]}'}}}}" for h in env.hosts
            )
            lines += [
                f"  {env.name}:",
                "    transport: ssh",
                f'    root: "{self.dir}/hosts/{{host}}"',
                "    playbook: ledger",
                "    command_timeout: 60s",
                f"    backups: {env.backups}",
                f"    ssh: {self.fleet.ssh_options()}",
                f"    vars: {json.dumps(env_vars)}",
                f"    hosts: [{hosts}]",
            ]
        lines.append("pipeline:")
        for stage, env_name in self.stages:
            lines += [
                f"  - stage: {stage}",
                f"    environment: {env_name}",
                "    checks: [ledger]",
                f"    bake: {self.bake}",
                "    interval: 200ms",
                f"    rollback_window: {self.windows.get(stage, self.window)}",
            ]
        (self.dir / "environments.yaml").write_text("\n".join(lines) + "\n")

    @property
    def flags(self) -> Path:
        return self.dir / "flags"

    # -- driving releaser --

    def environ(self, failpoint: str | None = None) -> dict[str, str]:
        env = {**os.environ, "NO_COLOR": "1"}
        env.pop("RELEASER_FAILPOINT", None)
        if failpoint:
            env["RELEASER_FAILPOINT"] = failpoint
        return env

    def cli(self, *args: str, check: int | None = 0, failpoint: str | None = None) -> subprocess.CompletedProcess:
        """releaser in a process of its own (this worktree's code: `python -m releaser.cli`)."""
        needs("real")
        proc = subprocess.run(
            [sys.executable, "-m", "releaser.cli", "-C", str(self.dir), *args],
            capture_output=True,
            text=True,
            timeout=180,
            env=self.environ(failpoint),
        )
        if check is not None and proc.returncode != check:
            raise AssertionError(
                f"releaser {' '.join(args)} exited {proc.returncode}, not {check}:\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def spawn(self, *args: str, failpoint: str | None = None) -> subprocess.Popen:
        needs("real")
        return subprocess.Popen(
            [sys.executable, "-m", "releaser.cli", "-C", str(self.dir), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.environ(failpoint),
        )

    def run(self, *args: str) -> str:
        """A command that only reads, in this process (click's runner); its stdout."""
        from click.testing import CliRunner

        from releaser.cli import cli

        result = CliRunner(env={"NO_COLOR": "1", "RELEASER_FAILPOINT": None}).invoke(
            cli, ["-C", str(self.dir), *args], catch_exceptions=False
        )
        assert result.exit_code == 0, f"releaser {' '.join(args)} exited {result.exit_code}:\n{result.stderr}"
        return result.stdout

    def register(self, version: str, ledger: str | None = None, **steps: str | tuple[str, ...]) -> None:
        """Register `version` from ledger `ledger`'s artifact (default: the same version) with
        `steps` (expand=, contract=, reversible= one or a tuple) or, without any, the steps of ledger.STEPS."""
        source = ledger or version
        artifact = self.dir / "artifacts" / f"ledger-{version}.tar.gz"
        artifact.parent.mkdir(exist_ok=True)
        artifact.write_bytes(ledger_artifact(source))
        if not steps:
            step = STEPS[source]
            steps = {step.kind: step.revision, **({"reversible": step.kind} if step.reversible else {})}
        options = [
            f"--{key}={value}"
            for key, values in steps.items()
            for value in (values if isinstance(values, tuple) else (values,))
        ]
        self.cli("release", "create", version, "--artifact", str(artifact), *options)
        self.registered[version] = artifact

    def events(self, kind: str | None = None, **where) -> list[dict]:
        events = json.loads(self.run("history", "--json"))["events"]
        events.sort(key=lambda e: e["id"])
        return [
            e for e in events if (kind is None or e["kind"] == kind) and all(e.get(k) == v for k, v in where.items())
        ]

    def wait_for(self, kind: str, timeout: float = 60, **where) -> dict:
        """Until the journal holds a `kind` event (matching `where`); the first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.events(kind, **where)
            if found:
                return found[0]
            time.sleep(0.1)
        raise AssertionError(f"no {kind} event {where} within {timeout}s")

    # -- the hosts and the database, asked directly --

    def current(self, host: str) -> str | None:
        link = self.dir / "hosts" / host / "current"
        return os.readlink(link).removeprefix("releases/") if link.is_symlink() else None

    def versions(self, env: str) -> dict[str, str | None]:
        return {host: self.current(host) for host in self.envs[env].hosts}

    def health(self, env: str) -> dict[str, tuple[int | None, str]]:
        """Each host's app: (status, version) of /health and /version; None when it does not answer."""
        import http.client

        found: dict[str, tuple[int | None, str]] = {}
        for host, port in self.envs[env].ports.items():
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/health")
                status = conn.getresponse().status
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/version")
                version = conn.getresponse().read().decode().strip()
                conn.close()
                found[host] = (status, version)
            except OSError:
                found[host] = (None, "")
        return found

    def query(self, env: str, sql: str) -> list[tuple]:
        with psycopg.connect(self.envs[env].database) as conn:
            return conn.execute(sql).fetchall()

    def schema(self, env: str) -> str | None:
        """The revision alembic recorded in `env`'s database (None: no schema)."""
        if self.query(env, "select to_regclass('alembic_version')") == [(None,)]:
            return None
        rows = self.query(env, "select version_num from alembic_version")
        return rows[0][0] if rows else None

    def close(self) -> None:
        """Stop the apps releaser started on the hosts (their pids are in the hosts' records)."""
        for pidfile in (self.dir / "hosts").glob("*/.releaser/service.pid"):
            with suppress(ValueError, OSError):
                pid = int(pidfile.read_text().split()[0])
                os.killpg(pid, signal.SIGTERM)
