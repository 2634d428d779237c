"""SQLite store: the embedded default. WAL mode, one connection per thread."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from .. import secrets
from .base import StoreError, StoreMissing
from .sql import Store


class _Connection(sqlite3.Connection):
    """Turns SQLite's failures into one StoreError sentence (locked, corrupt, unreadable)."""

    store_path: Path
    wait: float

    def execute(self, sql, parameters=(), /):
        if parameters and secrets.registered() and sql.lstrip()[:6].upper() in ("INSERT", "UPDATE"):
            parameters = secrets.scrub_data(parameters)
        try:
            return super().execute(sql, parameters)
        except (sqlite3.OperationalError, sqlite3.DatabaseError) as exc:
            if isinstance(exc, (sqlite3.IntegrityError, sqlite3.ProgrammingError)):
                raise  # a bug of ours, not the database's state
            raise _store_error(self.store_path, self.wait, exc) from None

    def executemany(self, sql, rows, /):
        try:
            return super().executemany(sql, [secrets.scrub_data(row) for row in rows] if secrets.registered() else rows)
        except (sqlite3.OperationalError, sqlite3.DatabaseError) as exc:
            if isinstance(exc, (sqlite3.IntegrityError, sqlite3.ProgrammingError)):
                raise
            raise _store_error(self.store_path, self.wait, exc) from None


def _store_error(path: Path, wait: float, exc: sqlite3.Error) -> StoreError:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return StoreError(
            f"the state database {path} is locked by another process (waited {wait:g}s); "
            "nothing was changed: try again when that process is done"
        )
    if (
        (isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError))
        or "malformed" in text
        or "not a database" in text
    ):
        return StoreError(
            f"the state database {path} is damaged ({text}); nothing was changed: restore it from "
            "a backup, or move it aside and run `releaser state rebuild` to rebuild what the hosts "
            "run from their own records"
        )
    return StoreError(f"the state database {path} cannot be used: {text}; nothing was changed")


class SqliteStore(Store):
    def __init__(self, path: Path, wait: float = 10.0, create: bool = True):
        self.path = Path(path)
        self.where = str(self.path)
        self.wait = wait
        if self.path.is_dir():
            raise StoreError(f"the state database {self.path} is a directory; set `state.path` to a file")
        self.created = not self.path.exists()
        if self.created and not create:
            raise StoreMissing(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the directory of the state database {self.path}: {exc.strerror}") from None
        super().__init__()
        moved = self._db.execute("SELECT value FROM meta WHERE key = 'moved_to'").fetchone()
        if moved:
            self.close()
            raise StoreError(
                f"the state in {self.path} was moved to PostgreSQL ({moved['value']}); nothing was "
                "changed: set `state: {backend: postgresql}` and the state's URL variable"
            )

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, timeout=self.wait, isolation_level=None, check_same_thread=False, factory=_Connection
            )
        except sqlite3.Error as exc:
            raise _store_error(self.path, self.wait, exc) from None
        conn.store_path, conn.wait = self.path, self.wait
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def _begin(self, db: sqlite3.Connection) -> None:
        db.execute("BEGIN IMMEDIATE")

    def _has_meta(self) -> bool:
        return (
            self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
            is not None
        )

    def _insert(self, sql: str, parameters: tuple) -> int:
        return self._db.execute(sql, parameters).lastrowid
