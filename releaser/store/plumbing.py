"""The store's plumbing: what a backend brings, one connection per thread, transactions, the schema.

`Plumbing` is the base of every table group (store.promotion, store.watching) and so of `Store`;
a backend (store.sqlite, store.postgresql) implements its abstract hooks.
"""

from __future__ import annotations

import contextlib
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .base import SCHEMA_VERSION, StoreError
from .migrations import MIGRATIONS
from .rows import _statements


class Plumbing(ABC):
    """Connections, transactions and migrations; the tables are the subclasses' (see store.sql.Store)."""

    where: str  # the database, in words for messages (a path, or a URL without its password)

    def __init__(self) -> None:
        self._local = threading.local()
        self._connections: list[Any] = []
        self._guard = threading.Lock()
        self._migrate()

    # -- what a backend brings --

    @abstractmethod
    def _connect(self) -> Any:
        """A new connection: `execute(sql, parameters)` returns a cursor whose rows read by column name."""

    @abstractmethod
    def _begin(self, db: Any) -> None:
        """Begin a write transaction that excludes every other writer until it ends."""

    @abstractmethod
    def _has_meta(self) -> bool: ...

    @abstractmethod
    def _insert(self, sql: str, parameters: tuple) -> int:
        """Run an INSERT into a table with an `id` column; returns the new row's id."""

    def _ddl(self, statement: str) -> str:
        """A migration's statement as this backend spells it."""
        return statement

    def _broken(self, conn: Any) -> bool:
        """Whether a connection can no longer be used (a server's): the next use opens another."""
        return False

    # -- plumbing --

    @property
    def _db(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is not None and not self._local.depth and self._broken(conn):
            with self._guard:  # the server restarted or the network dropped: a new connection
                self._connections.remove(conn)
            self._local.conn = None
            conn.close()
            conn = None
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            self._local.depth = 0
            with self._guard:
                self._connections.append(conn)
        return conn

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All writes inside commit together, or none do."""
        db = self._db
        if self._local.depth:
            self._local.depth += 1
            try:
                yield
            finally:
                self._local.depth -= 1
            return
        self._begin(db)
        self._local.depth = 1
        self._local.committed = []
        try:
            yield
        except BaseException:
            # the connection may be gone, and the transaction with it: the first error says why
            with contextlib.suppress(StoreError):
                db.execute("ROLLBACK")
            raise
        else:
            db.execute("COMMIT")
        finally:
            self._local.depth = 0
            waiting, self._local.committed = self._local.committed, []
        for action in waiting:
            action()

    def after_commit(self, action: Callable[[], None]) -> None:
        """Run `action` once what this thread wrote is durable: now, or when its transaction commits."""
        if getattr(self._local, "depth", 0):
            self._local.committed.append(action)
        else:
            action()

    def _migrate(self) -> None:
        """Bring the schema up to date. A database already current is only read: commands
        that only look never wait for the write lock."""
        if self._has_meta() and self.schema_version() == SCHEMA_VERSION:
            return
        with self.transaction():
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            current = self.schema_version()
            if current > SCHEMA_VERSION:
                raise StoreError(
                    f"the state database {self.where} holds schema version {current}, newer than this releaser "
                    f"knows ({SCHEMA_VERSION}); nothing was changed: upgrade releaser"
                )
            for version in range(current, SCHEMA_VERSION):
                for statement in _statements(MIGRATIONS[version]):
                    self._db.execute(self._ddl(statement))
            if current != SCHEMA_VERSION:
                self._db.execute(
                    "INSERT INTO meta(key, value) VALUES ('schema_version', ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (str(SCHEMA_VERSION),),
                )

    def schema_version(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row["value"]) if row else 0

    def close(self) -> None:
        with self._guard:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()
