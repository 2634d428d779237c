"""The store: releases, stage runs, host deployments, host state, the journal, locks, approvals,
alerts, the report outbox, heartbeats, routes and metric samples.

Every query is written once, here, in SQL that SQLite and PostgreSQL both speak (`?` parameters).
A backend brings its connections, how a write transaction begins, how an insert returns its id
and how the schema's column types are spelled (store.sqlite, store.postgresql). Every write is
durable when the method returns; `transaction()` groups several writes.
"""

from __future__ import annotations

import contextlib
import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from ..errors import BusyError
from ..model import (
    AlertRecord,
    AlertState,
    ApprovalRequest,
    ApprovalState,
    Cause,
    Claim,
    DeployAction,
    Deployment,
    DeploymentStatus,
    Event,
    HostState,
    Lock,
    Release,
    ReleaseStatus,
    Report,
    ReportState,
    RollbackRun,
    RollbackStatus,
    RunStatus,
    Sample,
    StageRun,
    utcnow,
)
from .base import SCHEMA_VERSION, StoreError
from .migrations import MIGRATIONS

_CLOSED = {s.value for s in RunStatus if not s.open}
_Row = TypeVar("_Row")


class Store(ABC):
    """One connection per thread; `transaction()` nests; a database already current is only read."""

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

    # -- releases --

    def add_release(self, release: Release) -> None:
        """Record a new release; the caller has checked that the id is free."""
        self._db.execute(
            "INSERT INTO releases(version, artifact, sha256, size, notes, features, status, created_at, created_by,"
            " url)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                release.version,
                release.artifact,
                release.sha256,
                release.size,
                release.notes,
                json.dumps(release.features),
                str(release.status),
                release.created_at or utcnow(),
                release.created_by,
                release.url,
            ),
        )

    def get_release(self, version: str) -> Release | None:
        row = self._db.execute("SELECT * FROM releases WHERE version = ?", (version,)).fetchone()
        return _release(row) if row else None

    def list_releases(self) -> list[Release]:
        """Oldest first."""
        return [_release(r) for r in self._db.execute("SELECT * FROM releases ORDER BY created_at, version")]

    def set_release_status(self, version: str, status: ReleaseStatus) -> None:
        self._db.execute("UPDATE releases SET status = ? WHERE version = ?", (str(status), version))

    # -- stage runs --

    def start_stage_run(
        self,
        release: str,
        stage: str,
        environment: str,
        owner: str,
        status: RunStatus = RunStatus.RUNNING,
        forced: bool = False,
        reason: str = "",
        claim: Claim | None = None,
    ) -> StageRun:
        now = utcnow()
        finished = None if RunStatus(status).open else now
        run_id = self._insert(
            "INSERT INTO stage_runs(release, stage, environment, status, started_at, finished_at, reason, forced,"
            " owner,"
            " pid, hostname, lease_until, lock_token) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                release,
                stage,
                environment,
                str(status),
                now,
                finished,
                reason,
                int(forced),
                owner,
                *_claim_values(claim),
            ),
        )
        return _written(self.get_stage_run(run_id))

    def claim_stage_run(self, run_id: int, claim: Claim) -> None:
        """Record who works on the run now (resume takes it over)."""
        self._db.execute(
            "UPDATE stage_runs SET pid = ?, hostname = ?, lease_until = ?, lock_token = ? WHERE id = ?",
            (*_claim_values(claim), run_id),
        )

    def set_last_look(self, run_id: int, at: str) -> None:
        """A look at the run's rollback window found its checks passing at `at`."""
        self._db.execute("UPDATE stage_runs SET last_look_at = ? WHERE id = ?", (at, run_id))

    def close_window(self, run_id: int, why: str) -> None:
        """Close the run's rollback window before its time (kept if it was closed already)."""
        self._db.execute(
            "UPDATE stage_runs SET window_closed_at = ?, window_closed_why = ? WHERE id = ?"
            " AND window_closed_at IS NULL",
            (utcnow(), why, run_id),
        )

    def check_memory(self, run_id: int) -> dict | None:
        """What the run's checks have seen so far (see health.gate), or None."""
        row = self._db.execute("SELECT memory FROM check_memory WHERE stage_run_id = ?", (run_id,)).fetchone()
        return json.loads(row["memory"]) if row else None

    def save_check_memory(self, run_id: int, memory: dict) -> None:
        self._db.execute(
            "INSERT INTO check_memory(stage_run_id, memory, updated_at) VALUES (?, ?, ?) ON CONFLICT(stage_run_id)"
            " DO UPDATE SET memory = excluded.memory, updated_at = excluded.updated_at",
            (run_id, json.dumps(memory, separators=(",", ":")), utcnow()),
        )

    # -- rollbacks --

    def start_rollback(
        self,
        environment: str,
        cause: Cause,
        releases: list[str],
        reason: str,
        stage_run_id: int | None = None,
        target: str | None = None,
        fault_at: str | None = None,
        owner: str = "",
        claim: Claim | None = None,
    ) -> RollbackRun:
        rollback_id = self._insert(
            "INSERT INTO rollbacks(environment, cause, releases, reason, status, started_at, stage_run_id, target,"
            " fault_at, owner, pid, hostname, lease_until, lock_token)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                environment,
                str(cause),
                json.dumps(sorted(releases)),
                reason,
                str(RollbackStatus.RUNNING),
                utcnow(),
                stage_run_id,
                target,
                fault_at,
                owner,
                *_claim_values(claim),
            ),
        )
        return _written(self.get_rollback(rollback_id))

    def update_rollback(self, rollback_id: int, **changes: object) -> None:
        """Set status, plan, left, detected_at, finished_at or releases."""
        allowed = {"status", "plan", "left", "detected_at", "finished_at", "releases"}
        if not changes or set(changes) - allowed:
            raise ValueError(f"cannot update rollback fields {sorted(set(changes) - allowed)}")
        columns = {"left": "left_hosts"}
        values = {
            columns.get(k, k): (
                json.dumps(v, sort_keys=True)
                if isinstance(v, (dict, list))
                else str(v)
                if isinstance(v, RollbackStatus)
                else v
            )
            for k, v in changes.items()
        }
        assignments = ", ".join(f"{name} = ?" for name in values)
        self._db.execute(
            f"UPDATE rollbacks SET {assignments} WHERE id = ?",  # noqa: S608 - checked names
            (*values.values(), rollback_id),
        )

    def claim_rollback(self, rollback_id: int, claim: Claim) -> None:
        self._db.execute(
            "UPDATE rollbacks SET pid = ?, hostname = ?, lease_until = ?, lock_token = ? WHERE id = ?",
            (*_claim_values(claim), rollback_id),
        )

    def get_rollback(self, rollback_id: int) -> RollbackRun | None:
        row = self._db.execute("SELECT * FROM rollbacks WHERE id = ?", (rollback_id,)).fetchone()
        return _rollback(row) if row else None

    def rollbacks(self, environment: str | None = None) -> list[RollbackRun]:
        """Oldest first."""
        if environment is None:
            rows = self._db.execute("SELECT * FROM rollbacks ORDER BY id")
        else:
            rows = self._db.execute("SELECT * FROM rollbacks WHERE environment = ? ORDER BY id", (environment,))
        return [_rollback(r) for r in rows]

    def set_stage_run_status(self, run_id: int, status: RunStatus, reason: str | None = None) -> None:
        """Closed statuses also stamp finished_at."""
        finished = utcnow() if str(status) in _CLOSED else None
        self._db.execute(
            "UPDATE stage_runs SET status = ?, finished_at = ?, reason = COALESCE(?, reason) WHERE id = ?",
            (str(status), finished, reason, run_id),
        )

    def get_stage_run(self, run_id: int) -> StageRun | None:
        row = self._db.execute("SELECT * FROM stage_runs WHERE id = ?", (run_id,)).fetchone()
        return _stage_run(row) if row else None

    def stage_runs(self, release: str | None = None) -> list[StageRun]:
        """Oldest first."""
        if release is None:
            rows = self._db.execute("SELECT * FROM stage_runs ORDER BY id")
        else:
            rows = self._db.execute("SELECT * FROM stage_runs WHERE release = ? ORDER BY id", (release,))
        return [_stage_run(r) for r in rows]

    # -- deployments --

    def add_deployments(self, deployments: list[Deployment]) -> list[Deployment]:
        """Insert, returning them with their ids."""
        now = utcnow()
        with self.transaction():
            for dep in deployments:
                dep.id = self._insert(
                    "INSERT INTO deployments(stage_run_id, environment, host, action, from_version, to_version,"
                    " status, detail, updated_at, op) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        dep.stage_run_id,
                        dep.environment,
                        dep.host,
                        dep.action,
                        dep.from_version,
                        dep.to_version,
                        dep.status,
                        dep.detail,
                        now,
                        dep.op,
                    ),
                )
                dep.updated_at = now
        return deployments

    def update_deployment(self, deployment_id: int, status: str, detail: str = "") -> None:
        self._db.execute(
            "UPDATE deployments SET status = ?, detail = ?, updated_at = ? WHERE id = ?",
            (status, detail, utcnow(), deployment_id),
        )

    def deployments(
        self, stage_run_id: int | None = None, environment: str | None = None, host: str | None = None
    ) -> list[Deployment]:
        """Oldest first."""
        where, args = _where(stage_run_id=stage_run_id, environment=environment, host=host)
        rows = self._db.execute(f"SELECT * FROM deployments {where} ORDER BY id", args)  # noqa: S608 - fixed columns
        return [_deployment(r) for r in rows]

    # -- host state --

    def host_states(self, environment: str) -> dict[str, HostState]:
        rows = self._db.execute("SELECT * FROM host_state WHERE environment = ?", (environment,))
        return {r["host"]: HostState(**dict(r)) for r in rows}

    def set_host_state(
        self, environment: str, host: str, version: str | None, previous: str | None, doubt: str = ""
    ) -> None:
        """What the host runs; `doubt` says why the store cannot vouch for it ("" when it can)."""
        self._db.execute(
            "INSERT INTO host_state(environment, host, version, previous, updated_at, doubt) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(environment, host) DO UPDATE SET version = excluded.version,"
            " previous = excluded.previous, updated_at = excluded.updated_at, doubt = excluded.doubt",
            (environment, host, version, previous, utcnow(), doubt),
        )

    def doubt_host(self, environment: str, host: str, why: str) -> None:
        """Keep what the store believes of the host, but mark it unconfirmed."""
        self._db.execute(
            "INSERT INTO host_state(environment, host, version, previous, updated_at, doubt) VALUES (?, ?, NULL, NULL,"
            " ?, ?) ON CONFLICT(environment, host)"
            " DO UPDATE SET doubt = excluded.doubt, updated_at = excluded.updated_at",
            (environment, host, utcnow(), why),
        )

    # -- the journal --

    def append_event(self, event: Event) -> Event:
        """Append to the journal; stamps ts (UTC) and id."""
        event.ts = event.ts or utcnow()
        event.id = self._insert(
            "INSERT INTO events(ts, kind, environment, release, stage, host, message, data)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                event.ts,
                event.kind,
                event.environment,
                event.release,
                event.stage,
                event.host,
                event.message,
                json.dumps(event.data, default=str),
            ),
        )
        return event

    def events(
        self, release: str | None = None, environment: str | None = None, limit: int | None = None
    ) -> list[Event]:
        """Oldest first; with `limit`, the newest `limit` events."""
        where, args = _where(release=release, environment=environment)
        sql = f"SELECT * FROM events {where} ORDER BY id DESC"  # noqa: S608 - fixed columns
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        rows = list(self._db.execute(sql, args))
        rows.reverse()
        return [_event(r) for r in rows]

    # -- locks --

    def acquire_lock(self, lock: Lock, is_stale: Callable[[Lock], bool]) -> Lock | None:
        """Take the environment's lock. If held and not stale, raise BusyError.
        Returns the stale lock that was taken over, if any."""
        with self.transaction():
            held = self.get_lock(lock.environment)
            if held is not None and not is_stale(held):
                raise BusyError(
                    f"environment {lock.environment} is locked by {held.owner} (pid {held.pid} on {held.hostname},"
                    f" since {held.acquired_at}, lease until {held.lease_until}) running: {held.command}"
                )
            self._db.execute(
                "INSERT INTO locks(environment, owner, pid, hostname, command, acquired_at, lease_until, token)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(environment) DO UPDATE SET owner = excluded.owner,"
                " pid = excluded.pid, hostname = excluded.hostname, command = excluded.command,"
                " acquired_at = excluded.acquired_at, lease_until = excluded.lease_until, token = excluded.token",
                (
                    lock.environment,
                    lock.owner,
                    lock.pid,
                    lock.hostname,
                    lock.command,
                    lock.acquired_at,
                    lock.lease_until,
                    lock.token,
                ),
            )
            return held

    def renew_lock(self, environment: str, token: str, lease_until: str) -> bool:
        """Extend the lease, and that of the runs worked on under it; False when the lock is
        no longer ours."""
        with self.transaction():
            cursor = self._db.execute(
                "UPDATE locks SET lease_until = ? WHERE environment = ? AND token = ?",
                (lease_until, environment, token),
            )
            for table in ("stage_runs", "rollbacks"):
                self._db.execute(
                    f"UPDATE {table} SET lease_until = ? WHERE lock_token = ?",  # noqa: S608 - fixed
                    (lease_until, token),
                )
            return cursor.rowcount == 1

    def release_lock(self, environment: str, token: str) -> None:
        self._db.execute("DELETE FROM locks WHERE environment = ? AND token = ?", (environment, token))

    def get_lock(self, environment: str) -> Lock | None:
        row = self._db.execute("SELECT * FROM locks WHERE environment = ?", (environment,)).fetchone()
        return Lock(**dict(row)) if row else None

    def force_unlock(self, environment: str) -> Lock | None:
        """Remove whatever lock is held; returns it."""
        with self.transaction():
            held = self.get_lock(environment)
            self._db.execute("DELETE FROM locks WHERE environment = ?", (environment,))
            return held

    # -- approvals and aborts --

    def request_approval(
        self, release: str, stage: str, by: str, approvers: list[str], not_by_promoter: bool
    ) -> tuple[ApprovalRequest, bool]:
        """The open request (awaiting or approved) for the stage, or a new awaiting one; True when new."""
        with self.transaction():
            row = self._db.execute(
                "SELECT * FROM approvals WHERE release = ? AND stage = ? AND state IN ('awaiting', 'approved')"
                " ORDER BY id DESC LIMIT 1",
                (release, stage),
            ).fetchone()
            if row is not None:
                return _approval(row), False
            request_id = self._insert(
                "INSERT INTO approvals(release, stage, state, requested_by, requested_at, approvers, not_by_promoter)"
                " VALUES (?, ?, 'awaiting', ?, ?, ?, ?)",
                (release, stage, by, utcnow(), json.dumps(approvers), int(not_by_promoter)),
            )
            return _written(self.approval(request_id)), True

    def approval(self, request_id: int) -> ApprovalRequest | None:
        row = self._db.execute("SELECT * FROM approvals WHERE id = ?", (request_id,)).fetchone()
        return _approval(row) if row else None

    def approvals(self, release: str | None = None, state: str | None = None) -> list[ApprovalRequest]:
        """Oldest first."""
        where, args = _where(release=release, state=state)
        return [_approval(r) for r in self._db.execute(f"SELECT * FROM approvals {where} ORDER BY id", args)]  # noqa: S608 - fixed columns

    def decide_approval(self, request_id: int, state: str, by: str, reason: str, expect: str) -> bool:
        """Move the request from `expect` to `state` (approved, rejected, used, cancelled); False when
        it was no longer in `expect` (another runner decided first)."""
        cursor = self._db.execute(
            "UPDATE approvals SET state = ?, decided_by = ?, decided_at = ?, reason = ? WHERE id = ? AND state = ?",
            (state, by, utcnow(), reason, request_id, expect),
        )
        return cursor.rowcount == 1

    def use_approval(self, request_id: int, stage_run_id: int) -> bool:
        """Spend an approved request on the stage run it started; False when it was not approved."""
        cursor = self._db.execute(
            "UPDATE approvals SET state = 'used', stage_run_id = ? WHERE id = ? AND state = 'approved'",
            (stage_run_id, request_id),
        )
        return cursor.rowcount == 1

    def request_abort(self, run_id: int, by: str, reason: str) -> bool:
        """Ask the open run to roll back; False when it is no longer open or was asked already."""
        cursor = self._db.execute(
            "UPDATE stage_runs SET abort_by = ?, abort_reason = ? WHERE id = ? AND abort_by IS NULL"
            " AND finished_at IS NULL",
            (by, reason, run_id),
        )
        return cursor.rowcount == 1

    # -- alerts --

    def record_alert(self, alert: AlertRecord) -> bool:
        """Keep a firing alert group for an environment; False when that episode (group, environment,
        start) was recorded already (Alertmanager repeats its notifications)."""
        with self.transaction():
            known = self._db.execute(
                "SELECT 1 FROM alerts WHERE group_key = ? AND environment = ? AND starts_at = ?",
                (alert.group_key, alert.environment, alert.starts_at),
            ).fetchone()
            if known:
                return False
            alert.received_at = alert.received_at or utcnow()
            alert.id = self._insert(
                "INSERT INTO alerts(group_key, environment, starts_at, received_at, alertname, labels, summary, state,"
                " outcome) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    alert.group_key,
                    alert.environment,
                    alert.starts_at,
                    alert.received_at,
                    alert.alertname,
                    json.dumps(alert.labels, sort_keys=True),
                    alert.summary,
                    alert.state,
                    alert.outcome,
                ),
            )
            return True

    def alerts(self, state: str | None = None) -> list[AlertRecord]:
        """Oldest first; `pending` ones are still to be acted on."""
        if state is None:
            rows = self._db.execute("SELECT * FROM alerts ORDER BY id")
        else:
            rows = self._db.execute("SELECT * FROM alerts WHERE state = ? ORDER BY id", (state,))
        return [
            AlertRecord(**{**dict(r), "labels": json.loads(r["labels"]), "state": AlertState(r["state"])}) for r in rows
        ]

    def settle_alert(self, alert_id: int, outcome: str) -> bool:
        """Mark a pending alert acted on; False when another process did first."""
        cursor = self._db.execute(
            "UPDATE alerts SET state = 'done', outcome = ? WHERE id = ? AND state = 'pending'", (outcome, alert_id)
        )
        return cursor.rowcount == 1

    # -- effect reports --

    def schedule_report(self, report: Report) -> Report:
        """Record a report to send; a release that passes its last stage again is rescheduled,
        unless its report was already sent. Returns the record as stored."""
        with self.transaction():
            self._db.execute(
                "INSERT INTO reports(release, environment, live_at, due_at, state, message_id, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(release) DO UPDATE SET environment = excluded.environment,"
                " live_at = excluded.live_at, due_at = excluded.due_at, state = excluded.state,"
                " updated_at = excluded.updated_at WHERE reports.state != 'sent'",
                (
                    report.release,
                    report.environment,
                    report.live_at,
                    report.due_at,
                    str(report.state),
                    report.message_id,
                    utcnow(),
                ),
            )
            return _written(self.get_report(report.release))

    def get_report(self, release: str) -> Report | None:
        row = self._db.execute("SELECT * FROM reports WHERE release = ?", (release,)).fetchone()
        return _report(row) if row else None

    def reports(self) -> list[Report]:
        """Soonest due first."""
        return [_report(r) for r in self._db.execute("SELECT * FROM reports ORDER BY due_at, release")]

    def update_report(self, release: str, **changes: object) -> None:
        """Set the given fields (state, attempts, last_error, sent_at, path, delivered_to); stamps
        updated_at."""
        allowed = {"state", "attempts", "last_error", "sent_at", "path", "delivered_to"}
        if not changes or set(changes) - allowed:
            raise ValueError(f"cannot update report fields {sorted(set(changes) - allowed)}")
        columns = ", ".join(f"{name} = ?" for name in changes)
        values = [str(v) if isinstance(v, ReportState) else v for v in changes.values()]
        self._db.execute(
            f"UPDATE reports SET {columns}, updated_at = ? WHERE release = ?",  # noqa: S608 - checked names
            (*values, utcnow(), release),
        )

    # -- heartbeats --

    def beat(self, name: str, data: dict) -> None:
        """Record that the process `name` is alive now, with what it says of itself."""
        with self.transaction():
            self._db.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (f"heartbeat:{name}", json.dumps({**data, "at": utcnow()})),
            )

    def heartbeats(self) -> dict[str, dict]:
        """name -> the last data each beat with, plus `at` (when)."""
        rows = self._db.execute("SELECT key, value FROM meta WHERE key LIKE 'heartbeat:%' ORDER BY key")
        return {row["key"].removeprefix("heartbeat:"): json.loads(row["value"]) for row in rows}

    # -- routes --

    def save_route(self, environment: str, route: dict, applied: bool, why: str) -> None:
        """Store the route meant for the router (applied False: being put live, or refused)."""
        with self.transaction():
            self._db.execute(
                "INSERT INTO routes(environment, route, applied, why, updated_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(environment) DO UPDATE SET route = excluded.route, applied = excluded.applied, "
                "why = excluded.why, updated_at = excluded.updated_at",
                (environment, json.dumps(route), int(applied), why, utcnow()),
            )

    def get_route(self, environment: str) -> dict | None:
        """{"route": dict, "applied": bool, "why": str, "updated_at": str}, or None before any."""
        row = self._db.execute(
            "SELECT route, applied, why, updated_at FROM routes WHERE environment = ?", (environment,)
        ).fetchone()
        if row is None:
            return None
        return {
            "route": json.loads(row["route"]),
            "applied": bool(row["applied"]),
            "why": row["why"],
            "updated_at": row["updated_at"],
        }

    # -- samples --

    def add_samples(self, samples: list[Sample]) -> None:
        with self.transaction():
            self._db.executemany(
                "INSERT INTO samples(environment, host, ts, metric_values) VALUES (?, ?, ?, ?)",
                [(s.environment, s.host, s.ts, None if s.values is None else json.dumps(s.values)) for s in samples],
            )

    def samples(self, environment: str, start: float, end: float) -> list[Sample]:
        """Samples with start <= ts <= end, oldest first."""
        rows = self._db.execute(
            "SELECT * FROM samples WHERE environment = ? AND ts >= ? AND ts <= ? ORDER BY ts, id",
            (environment, start, end),
        )
        return [
            Sample(
                r["environment"],
                r["host"],
                r["ts"],
                None if r["metric_values"] is None else json.loads(r["metric_values"]),
            )
            for r in rows
        ]

    def last_sample_ts(self, environment: str) -> float | None:
        row = self._db.execute("SELECT MAX(ts) AS ts FROM samples WHERE environment = ?", (environment,)).fetchone()
        return row["ts"]

    def prune_samples(self, environment: str, before: float) -> int:
        """Forget samples older than `before`; returns how many."""
        return self._db.execute("DELETE FROM samples WHERE environment = ? AND ts < ?", (environment, before)).rowcount


def _written(record: _Row | None) -> _Row:
    """A record this connection has just written, read back."""
    if record is None:
        raise StoreError("the state database lost a record as it was written; nothing else was changed")
    return record


def _report(row: Any) -> Report:
    data = dict(row)
    data["state"] = ReportState(data["state"])
    return Report(**data)


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def _release(row: Any) -> Release:
    data = dict(row)
    data["features"] = json.loads(data["features"])
    data["status"] = ReleaseStatus(data["status"])
    return Release(**data)


def _stage_run(row: Any) -> StageRun:
    data = dict(row)
    data.pop("lock_token", None)
    data["status"] = RunStatus(data["status"])
    data["forced"] = bool(data["forced"])
    return StageRun(**data)


def _rollback(row: Any) -> RollbackRun:
    data = dict(row)
    data.pop("lock_token", None)
    data["left"] = json.loads(data.pop("left_hosts"))
    data["plan"] = json.loads(data["plan"])
    data["releases"] = json.loads(data["releases"])
    data["status"] = RollbackStatus(data["status"])
    data["cause"] = Cause(data["cause"])
    return RollbackRun(**data)


def _where(**columns: Any) -> tuple[str, list]:
    """`WHERE a = ? AND b = ?` for the columns given a value (fixed names, never user input)."""
    given = {name: value for name, value in columns.items() if value is not None}
    return (f"WHERE {' AND '.join(f'{name} = ?' for name in given)}" if given else ""), list(given.values())


def _approval(row: Any) -> ApprovalRequest:
    data = dict(row)
    data["approvers"] = json.loads(data["approvers"])
    data["not_by_promoter"] = bool(data["not_by_promoter"])
    data["state"] = ApprovalState(data["state"])
    return ApprovalRequest(**data)


def _deployment(row: Any) -> Deployment:
    data = dict(row)
    data["action"] = DeployAction(data["action"])
    data["status"] = DeploymentStatus(data["status"])
    return Deployment(**data)


def _claim_values(claim: Claim | None) -> tuple:
    if claim is None:
        return (None, None, None, None)
    return (claim.pid, claim.hostname, claim.lease_until, claim.token)


def _event(row: Any) -> Event:
    data = dict(row)
    data["data"] = json.loads(data["data"])
    return Event(**data)
