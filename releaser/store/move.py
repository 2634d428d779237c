"""Move a team's state from the embedded SQLite file to PostgreSQL: every row of every table,
ids included, compared row by row before the SQLite state is marked as moved.

The copy runs inside one SQLite write transaction, so no other releaser process writes while
it reads; it refuses while a promotion or rollback holds an environment's lock, and refuses a
PostgreSQL database that already holds releaser's records. A moved SQLite state refuses to be
used again (see SqliteStore), so no runner goes on writing to the old one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from ..errors import BusyError
from ..events import Event
from ..model import Lock, utcnow
from . import open_postgres
from .base import StoreError
from .sql import Store

# parents before the rows that refer to them
TABLES = (
    "releases",
    "stage_runs",
    "rollbacks",
    "deployments",
    "check_memory",
    "approvals",
    "host_state",
    "events",
    "locks",
    "reports",
    "service_reports",
    "samples",
    "routes",
    "alerts",
    "migrations",
    "backups",
    "drills",
    "web_sessions",
    "web_signins",
    "web_forms",
    "meta",
)
WITH_IDS = (
    "stage_runs",
    "rollbacks",
    "deployments",
    "approvals",
    "events",
    "samples",
    "alerts",
    "migrations",
    "backups",
    "drills",
    "web_signins",
)
MOVED_KEY = "moved_to"


class Recorder(Protocol):
    """A journal (journal.Journal), as the move needs it: the store does not import the journal."""

    def record(self, kind: Event, message: str, **fields: Any) -> object: ...


def move_to_postgres(
    source: Store,
    moved_from: Path,
    url_env: str,
    wait: float,
    is_stale: Callable[[Lock], bool],
    journal_for: Callable[[Store], Recorder],
) -> tuple[str, dict[str, int]]:
    """Move the SQLite state `source` (the file `moved_from`) into the PostgreSQL database whose URL
    the variable `url_env` holds, and journal the move there. Returns where the state now is and
    the rows copied per table."""
    target = open_postgres(url_env, wait)
    try:
        copied = move_state(source, target, is_stale)
        journal_for(target).record(
            Event.STATE_MOVED,
            f"state moved from {moved_from} to {target.where}: {sum(copied.values())} rows",
            data={"from": str(moved_from), "rows": copied},
        )
    finally:
        target.close()
    return target.where, copied


def move_state(source: Store, target: Store, is_stale: Callable[[Lock], bool]) -> dict[str, int]:
    """Copy every row of `source` into the empty `target`; returns the rows copied per table."""
    with source.transaction():  # no other process writes to the source until the move is done
        held = [lock for lock in _locks(source) if not is_stale(lock)]
        if held:
            names = ", ".join(
                f"{lock.environment} ({lock.command}, pid {lock.pid} on {lock.hostname})" for lock in held
            )
            raise BusyError(
                f"cannot move the state while work holds an environment: {names}; "
                "move it when no promotion, rollback or watch is at work"
            )
        if _has_records(target):
            raise StoreError(
                f"the state database {target.where} already holds releaser's records; nothing was "
                "moved: point the variable at an empty database"
            )
        copied: dict[str, int] = {}
        with target.transaction():
            for table in TABLES:
                rows = _rows(source, table)
                if table == "meta":
                    rows = [row for row in rows if row["key"] != "schema_version"]
                if rows:
                    columns = list(rows[0])
                    target._db.executemany(
                        f"INSERT INTO {table}({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",  # noqa: S608 - fixed names
                        [tuple(row[c] for c in columns) for row in rows],
                    )
                copied[table] = len(rows)
            for table in WITH_IDS:
                target._db.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE(MAX(id), 1), MAX(id) IS NOT NULL)"  # noqa: S608 - table names are ours
                    f" FROM {table}"
                )
        for table in TABLES:
            if table != "meta" and _rows(target, table) != _rows(source, table):
                raise StoreError(
                    f"the copy of {table} differs from the original; the SQLite state is unchanged "
                    f"and still in use: report this, with `releaser history`"
                )
        source._db.execute("INSERT INTO meta(key, value) VALUES (?, ?)", (MOVED_KEY, f"{target.where} at {utcnow()}"))
    return copied


def _rows(store: Store, table: str) -> list[dict[str, Any]]:
    order = (
        "id"
        if table in WITH_IDS
        else {
            "meta": "key",
            "locks": "environment",
            "routes": "environment",
            "host_state": "environment, host",
            "check_memory": "stage_run_id",
            "releases": "version",
            "reports": "release",
            "service_reports": "environment, month",
            "web_sessions": "id",
            "web_forms": "nonce",
        }[table]
    )
    return [dict(row) for row in store._db.execute(f"SELECT * FROM {table} ORDER BY {order}")]  # noqa: S608 - fixed


def _locks(store: Store) -> list[Lock]:
    return [Lock(**row) for row in _rows(store, "locks")]


def _has_records(store: Store) -> bool:
    return any(
        store._db.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone()  # noqa: S608 - fixed names
        for table in ("releases", "events", "host_state")
    )
