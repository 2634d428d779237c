"""The tables of the app's database as releaser sees it: the migrations run on each environment,
the backups written before them, and the drills that rehearsed a rollback and a restore."""

from __future__ import annotations

from typing import Any

from ..model import Backup, Drill, Migration, MigrationStatus, utcnow
from .plumbing import Plumbing
from .rows import _where, _written

_MIGRATION_CHANGES = {"status", "from_version", "to_version", "finished_at", "backup_id", "detail"}
_DRILL_CHANGES = {
    "status",
    "finished_at",
    "release",
    "previous",
    "rollback_seconds",
    "forward_seconds",
    "restore_seconds",
    "backup_id",
    "detail",
}


def _migration(row: Any) -> Migration:
    data = dict(row)
    data["status"] = MigrationStatus(data["status"])
    return Migration(**data)


class DatabaseTables(Plumbing):
    """Migrations, backups and drills."""

    # -- migrations --

    def start_migration(
        self,
        environment: str,
        release: str,
        phase: str,
        target: str,
        from_version: str | None,
        rollback_id: int | None = None,
        backup_path: str | None = None,
    ) -> Migration:
        migration_id = self._insert(
            "INSERT INTO migrations(environment, release, phase, target, status, started_at, from_version,"
            " rollback_id, backup_path) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                environment,
                release,
                phase,
                target,
                str(MigrationStatus.RUNNING),
                utcnow(),
                from_version,
                rollback_id,
                backup_path,
            ),
        )
        return _written(self.get_migration(migration_id))

    def update_migration(self, migration_id: int, **changes: object) -> None:
        unknown = set(changes) - _MIGRATION_CHANGES
        if unknown:
            raise ValueError(f"not a migration's column: {', '.join(sorted(unknown))}")
        columns = ", ".join(f"{name} = ?" for name in changes)
        values = tuple(str(v) if isinstance(v, MigrationStatus) else v for v in changes.values())
        self._db.execute(f"UPDATE migrations SET {columns} WHERE id = ?", (*values, migration_id))  # noqa: S608 - fixed

    def get_migration(self, migration_id: int) -> Migration | None:
        row = self._db.execute("SELECT * FROM migrations WHERE id = ?", (migration_id,)).fetchone()
        return _migration(row) if row else None

    def migrations(self, environment: str | None = None, release: str | None = None) -> list[Migration]:
        """Oldest first."""
        where, args = _where(environment=environment, release=release)
        rows = self._db.execute(f"SELECT * FROM migrations {where} ORDER BY id", args)  # noqa: S608 - fixed names
        return [_migration(r) for r in rows]

    # -- backups --

    def add_backup(
        self, environment: str, host: str, path: str, size: int, sha256: str, schema_version: str, release: str
    ) -> Backup:
        backup_id = self._insert(
            "INSERT INTO backups(environment, host, path, size, sha256, schema_version, created_at, release)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (environment, host, path, size, sha256, schema_version, utcnow(), release),
        )
        return _written(self.get_backup(backup_id))

    def get_backup(self, backup_id: int) -> Backup | None:
        row = self._db.execute("SELECT * FROM backups WHERE id = ?", (backup_id,)).fetchone()
        return Backup(**dict(row)) if row else None

    def backups(self, environment: str) -> list[Backup]:
        """Oldest first."""
        rows = self._db.execute("SELECT * FROM backups WHERE environment = ? ORDER BY id", (environment,))
        return [Backup(**dict(r)) for r in rows]

    # -- drills --

    def start_drill(self, environment: str) -> Drill:
        drill_id = self._insert(
            "INSERT INTO drills(environment, started_at, status) VALUES (?, ?, ?)",
            (environment, utcnow(), "running"),
        )
        return _written(self.get_drill(drill_id))

    def update_drill(self, drill_id: int, **changes: object) -> None:
        unknown = set(changes) - _DRILL_CHANGES
        if unknown:
            raise ValueError(f"not a drill's column: {', '.join(sorted(unknown))}")
        columns = ", ".join(f"{name} = ?" for name in changes)
        self._db.execute(f"UPDATE drills SET {columns} WHERE id = ?", (*changes.values(), drill_id))  # noqa: S608 - fixed

    def get_drill(self, drill_id: int) -> Drill | None:
        row = self._db.execute("SELECT * FROM drills WHERE id = ?", (drill_id,)).fetchone()
        return Drill(**dict(row)) if row else None

    def drills(self, environment: str | None = None) -> list[Drill]:
        """Oldest first."""
        if environment is None:
            return [Drill(**dict(r)) for r in self._db.execute("SELECT * FROM drills ORDER BY id")]
        rows = self._db.execute("SELECT * FROM drills WHERE environment = ? ORDER BY id", (environment,))
        return [Drill(**dict(r)) for r in rows]
