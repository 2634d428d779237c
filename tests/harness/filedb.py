"""A project of four local prod hosts whose app's database is a file the playbook's migration
tool writes (`$DB/version`), restores going to a scratch directory (`$SCRATCH`): the migration
tool is any tool, so the logic of schema steps, backups and drills is tested in-process, without
a server (tests/test_migrations.py drives the real one)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from releaser.cli import cli
from releaser.config import load_config
from releaser.store import open_store
from tests.harness.tarballs import tar_gz

HOSTS = ("web-1", "web-2", "web-3", "web-4")

PLAYBOOK = """\
keep_releases: 3
hooks:
  restart: |
    if [ -f "$RELEASER_ROOT/FAIL_RESTART" ]; then echo "restart refused by FAIL_RESTART" >&2; exit 3; fi
    echo "$RELEASER_RELEASE" > "$RELEASER_ROOT/running"
  version: cat "$RELEASER_ROOT/running"
migrate:
  current: 'cat "$DB/version" 2>/dev/null || true'
  up: 'mkdir -p "$DB" && echo "$RELEASER_SCHEMA_TARGET" > "$DB/version"'
  down: 'echo "$RELEASER_SCHEMA_TARGET" > "$DB/version"'
  backup: 'echo "db at $(cat "$DB/version" 2>/dev/null)" > "$RELEASER_BACKUP"'
  restore: 'mkdir -p "$SCRATCH" && cp "$RELEASER_BACKUP" "$SCRATCH/version"'
  verify: 'test -s "$SCRATCH/version" && test ! -e "$SCRATCH/UNSOUND"'
"""


class Shop:
    """A project of four local prod hosts whose database is a file."""

    def __init__(self, directory: Path, drills: str = ""):
        self.dir = directory
        (directory / "playbooks").mkdir(parents=True)
        (directory / "playbooks" / "app.yaml").write_text(PLAYBOOK)
        (directory / "healthchecks").mkdir()
        (directory / "healthchecks" / "up.yaml").write_text(
            "checks:\n  - {name: up, type: command, command: 'test -s \"$RELEASER_ROOT/running\"', timeout: 5s}\n"
        )
        self.db, self.scratch = directory / "db", directory / "scratch"
        (directory / "environments.yaml").write_text(
            "project: shop\nenvironments:\n  prod:\n    transport: local\n    playbook: app\n"
            f"    root: hosts/{{host}}\n    command_timeout: 30s\n"
            f'    vars: {{DB: "{self.db}", SCRATCH: "{self.scratch}"}}\n'
            f"    hosts: [{', '.join(HOSTS)}]\n{drills}"
            "pipeline:\n  - {stage: full, environment: prod, checks: [up], bake: 100ms, interval: 50ms}\n"
            "report: {rollback_sla: 5m}\n"
        )

    def cli(self, *args: str):
        return CliRunner(env={"NO_COLOR": "1"}).invoke(cli, ["-C", str(self.dir), *args], catch_exceptions=False)

    def ok(self, *args: str):
        result = self.cli(*args)
        assert result.exit_code == 0, result.output
        return result

    def live(self, version: str, *schema: str) -> None:
        artifact = self.dir / f"{version}.tar.gz"
        artifact.write_bytes(tar_gz({"app.txt": f"app {version}\n"}))
        self.ok("release", "create", version, "--artifact", str(artifact), *schema)
        self.ok("run", version)

    def runs(self) -> dict[str, str | None]:
        return {h: (self.dir / "hosts" / h / "running").read_text().strip() for h in HOSTS}

    def events(self, kind: str) -> list[dict]:
        document = json.loads(self.ok("history", "--json").stdout)
        return [e for e in document["events"] if e["kind"] == kind]

    def store(self):
        return open_store(self.config())

    def config(self):
        return load_config(self.dir / "environments.yaml")
