"""The promotion's tables: releases, stage runs, rollbacks, deployments, host state and locks."""

from __future__ import annotations

import json
from collections.abc import Callable

from ..errors import BusyError
from ..model import (
    Cause,
    Claim,
    Deployment,
    HostState,
    Lock,
    Release,
    ReleaseStatus,
    RollbackRun,
    RollbackStatus,
    RunStatus,
    StageRun,
    utcnow,
)
from .plumbing import Plumbing
from .rows import _claim_values, _deployment, _release, _rollback, _stage_run, _where, _written

_CLOSED = {s.value for s in RunStatus if not s.open}


class PromotionTables(Plumbing):
    """What a promotion or a rollback records as it goes, and the lock it holds meanwhile."""

    # -- releases --

    def add_release(self, release: Release) -> None:
        """Record a new release; the caller has checked that the id is free."""
        self._db.execute(
            "INSERT INTO releases(version, artifact, sha256, size, notes, features, status, created_at, created_by,"
            " url, image, schema_change, commit_id, committed_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                release.image,
                json.dumps(release.schema.to_dict()),
                release.commit_id,
                release.committed_at,
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

    # -- locks --

    def acquire_lock(self, lock: Lock, is_stale: Callable[[Lock], bool]) -> Lock | None:
        """Take the environment's lock. If held and not stale, raise BusyError.
        Returns the stale lock that was taken over, if any."""
        with self.transaction():
            held = self.get_lock(lock.environment)
            if held is not None and not is_stale(held):
                raise BusyError(f"environment {lock.environment} is locked by {held.owner}: {held.command}")
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
