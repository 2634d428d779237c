"""The ledger sample app (tests/harness/ledger.py) on a real PostgreSQL, without releaser: its
migrations walk up and down its schema history with the commands of its playbook, each
release's /health says whether its code runs on the schema of the moment (its backup, restore
and verify commands run in tests/test_migrations.py, through releaser)."""

from __future__ import annotations

import contextlib
import http.client
import io
import os
import socket
import subprocess
import sys
import sysconfig
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import yaml

from releaser.demo.ports import free_ports
from tests.harness.ledger import (
    FAILS,
    MIGRATE_PLAYBOOK_PART,
    RUNS_ON,
    SEEDED,
    STEPS,
    VERSIONS,
    ledger_artifact,
    pg_bin_path,
)

MIGRATE: dict[str, str] = yaml.safe_load(MIGRATE_PLAYBOOK_PART)["migrate"]


def unpack(tmp_path: Path, version: str) -> Path:
    directory = tmp_path / "releases" / version
    with tarfile.open(fileobj=io.BytesIO(ledger_artifact(version))) as tar:
        tar.extractall(directory, filter="data")
    return directory


def run(command: str, directory: Path, **variables: str) -> subprocess.CompletedProcess:
    """One command of the migrate section, as a host runs it: bash in the release's directory with
    the host's vars; alembic from this interpreter, PostgreSQL's clients from its installation."""
    path = os.pathsep.join((pg_bin_path(), sysconfig.get_path("scripts"), os.environ["PATH"]))
    env = {**os.environ, "PATH": path, **variables}
    return subprocess.run(
        ["bash", "-c", MIGRATE[command]], cwd=directory, env=env, capture_output=True, text=True, timeout=60
    )


def get(port: int, path: str = "/health") -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


@contextlib.contextmanager
def running_apps(releases: dict[str, Path], database: str) -> Iterator[dict[str, int]]:
    """Every release's app.py on a port of its own, all on `database`; yields version -> port once
    each accepts connections."""
    ports = dict(zip(releases, free_ports(len(releases)), strict=True))
    apps = {}
    try:
        for version, directory in releases.items():
            env = {**os.environ, "DATABASE_URL": database, "LEDGER_PORT": str(ports[version])}
            with open(directory / "app.log", "wb") as log:
                apps[version] = subprocess.Popen(
                    [sys.executable, "app.py"], cwd=directory, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log
                )
        for version, app in apps.items():
            deadline = time.monotonic() + 30
            while True:
                with socket.socket() as probe:
                    if probe.connect_ex(("127.0.0.1", ports[version])) == 0:
                        break
                log_text = (releases[version] / "app.log").read_text()
                assert app.poll() is None, f"ledger {version} exited ({app.returncode}): {log_text}"
                assert time.monotonic() < deadline, f"ledger {version} did not listen within 30s: {log_text}"
                time.sleep(0.02)
        yield ports
    finally:
        for app in apps.values():
            app.terminate()
        for app in apps.values():
            try:
                app.wait(timeout=10)
            except subprocess.TimeoutExpired:
                app.kill()
                app.wait()


def test_the_schema_walks_its_history_and_each_release_is_healthy_only_where_its_code_runs(postgres, tmp_path):
    database = postgres.database()
    releases = {version: unpack(tmp_path, version) for version in VERSIONS}
    for number, version in enumerate(VERSIONS):
        shipped = sorted(path.name[:4] for path in (releases[version] / "migrations" / "versions").glob("*.py"))
        assert shipped == [STEPS[older].revision for older in VERSIONS[: number + 1]]

    def migrate(command: str, version: str, target: str) -> subprocess.CompletedProcess:
        return run(command, releases[version], DATABASE_URL=database, RELEASER_SCHEMA_TARGET=target)

    def current(version: str) -> str:
        proc = run("current", releases[version], DATABASE_URL=database)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    def query(sql: str) -> list[tuple]:
        with psycopg.connect(database) as conn:
            return conn.execute(sql).fetchall()

    with running_apps(releases, database) as ports:

        def at(revision: str, version: str) -> None:
            """The database is at `revision`, as `alembic current` of release `version` says, and
            each app answers /health 200 exactly where its code runs."""
            head = " (head)" if STEPS[version].revision == revision else ""
            assert current(version) == f"{revision}{head}\n"
            for app, port in ports.items():
                status, text = get(port)
                assert status == (200 if revision in RUNS_ON[app] else 503), (app, revision, text)

        assert {version: get(port, "/version") for version, port in ports.items()} == {
            version: (200, f"{version}\n") for version in VERSIONS
        }
        assert current("1.0") == ""  # no schema yet
        assert {get(port)[0] for port in ports.values()} == {503}
        assert 'relation "items" does not exist' in get(ports["1.0"])[1]

        for version in ("1.0", "1.1", "1.2"):
            proc = migrate("up", version, STEPS[version].revision)
            assert proc.returncode == 0, proc.stderr
            at(STEPS[version].revision, version)
        assert query("select name, title from items order by id") == [(name, name) for name in SEEDED]

        # an older release cannot read a newer revision: the down of 0003 is 1.2's to run
        older = run("current", releases["1.0"], DATABASE_URL=database)
        assert older.returncode != 0 and "Can't locate revision identified by '0003'" in older.stdout
        for target in ("0002", "0001"):
            proc = migrate("down", "1.2", target)
            assert proc.returncode == 0, proc.stderr
            at(target, "1.2")
        columns = "select column_name from information_schema.columns where table_name = 'items' order by 1"
        assert query(columns) == [("id",), ("name",)]

        assert migrate("up", "1.2", "0003").returncode == 0
        proc = migrate("up", "1.3", "0004")
        assert proc.returncode == 0, proc.stderr
        at("0004", "1.3")
        assert 'column "name" does not exist' in get(ports["1.0"])[1]

        failed = migrate("up", FAILS, STEPS[FAILS].revision)
        assert failed.returncode == 1 and "NotNullViolation" in failed.stderr
        at("0004", FAILS)
        assert query("select to_regclass('audit')") == [(None,)]  # rolled back whole

        irreversible = migrate("down", "1.3", "0003")
        assert irreversible.returncode == 1 and "0004 is irreversible" in irreversible.stderr
        at("0004", "1.3")
        assert query("select title from items order by id") == [(name,) for name in SEEDED]
