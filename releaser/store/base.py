"""The store interface: releases, stage runs, host deployments, host state, the journal, locks.

The pipeline talks only to this interface, so a PostgreSQL backend can sit beside SQLite.
Every write is durable when the method returns; `transaction()` groups several writes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager

from ..errors import NeedsHuman
from ..model import (
    AlertRecord,
    ApprovalRequest,
    Cause,
    Claim,
    Deployment,
    Event,
    HostState,
    Lock,
    Release,
    ReleaseStatus,
    Report,
    RollbackRun,
    RunStatus,
    Sample,
    StageRun,
)

SCHEMA_VERSION = 9


class StoreError(NeedsHuman):
    """The state cannot be used (locked past the wait, damaged, of a newer schema): one sentence, exit 4."""


class StoreMissing(StoreError):
    """No state database where the configuration says (a command that only looks creates none)."""

    def __init__(self, path):
        super().__init__(
            f"there is no state database at {path}: nothing has been recorded here yet, or it was lost; if hosts "
            "already run releases, `releaser state rebuild` rebuilds what they run from their own records"
        )
        self.path = path


class Store(ABC):
    # -- plumbing --

    @abstractmethod
    def transaction(self) -> AbstractContextManager[None]:
        """All writes inside commit together, or none do."""

    @abstractmethod
    def after_commit(self, action: Callable[[], None]) -> None:
        """Run `action` once what this thread wrote is durable: now, or when its transaction commits."""

    @abstractmethod
    def schema_version(self) -> int: ...

    @abstractmethod
    def close(self) -> None: ...

    # -- releases --

    @abstractmethod
    def add_release(self, release: Release) -> None:
        """Record a new release; the caller has checked that the id is free."""

    @abstractmethod
    def get_release(self, version: str) -> Release | None: ...

    @abstractmethod
    def list_releases(self) -> list[Release]:
        """Oldest first."""

    @abstractmethod
    def set_release_status(self, version: str, status: ReleaseStatus) -> None: ...

    # -- stage runs --

    @abstractmethod
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
    ) -> StageRun: ...

    @abstractmethod
    def claim_stage_run(self, run_id: int, claim: Claim) -> None:
        """Record who works on the run now (resume takes it over)."""

    @abstractmethod
    def set_last_look(self, run_id: int, at: str) -> None:
        """A look at the run's rollback window found its checks passing at `at`."""

    @abstractmethod
    def close_window(self, run_id: int, why: str) -> None:
        """Close the run's rollback window before its time (kept if it was closed already)."""

    @abstractmethod
    def check_memory(self, run_id: int) -> dict | None:
        """What the run's checks have seen so far (see health.gate), or None."""

    @abstractmethod
    def save_check_memory(self, run_id: int, memory: dict) -> None: ...

    # -- rollbacks --

    @abstractmethod
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
    ) -> RollbackRun: ...

    @abstractmethod
    def update_rollback(self, rollback_id: int, **changes) -> None:
        """Set status, plan, left, detected_at, finished_at or releases."""

    @abstractmethod
    def claim_rollback(self, rollback_id: int, claim: Claim) -> None: ...

    @abstractmethod
    def get_rollback(self, rollback_id: int) -> RollbackRun | None: ...

    @abstractmethod
    def rollbacks(self, environment: str | None = None) -> list[RollbackRun]:
        """Oldest first."""

    @abstractmethod
    def set_stage_run_status(self, run_id: int, status: RunStatus, reason: str | None = None) -> None:
        """Closed statuses also stamp finished_at."""

    @abstractmethod
    def get_stage_run(self, run_id: int) -> StageRun | None: ...

    @abstractmethod
    def stage_runs(self, release: str | None = None) -> list[StageRun]:
        """Oldest first."""

    # -- deployments --

    @abstractmethod
    def add_deployments(self, deployments: list[Deployment]) -> list[Deployment]:
        """Insert, returning them with their ids."""

    @abstractmethod
    def update_deployment(self, deployment_id: int, status: str, detail: str = "") -> None: ...

    @abstractmethod
    def deployments(
        self, stage_run_id: int | None = None, environment: str | None = None, host: str | None = None
    ) -> list[Deployment]:
        """Oldest first."""

    # -- host state: what each host runs, as far as the store knows --

    @abstractmethod
    def host_states(self, environment: str) -> dict[str, HostState]: ...

    @abstractmethod
    def set_host_state(
        self, environment: str, host: str, version: str | None, previous: str | None, doubt: str = ""
    ) -> None:
        """What the host runs; `doubt` says why the store cannot vouch for it ("" when it can)."""

    @abstractmethod
    def doubt_host(self, environment: str, host: str, why: str) -> None:
        """Keep what the store believes of the host, but mark it unconfirmed."""

    # -- the journal --

    @abstractmethod
    def append_event(self, event: Event) -> Event:
        """Append to the journal; stamps ts (UTC) and id."""

    @abstractmethod
    def events(
        self, release: str | None = None, environment: str | None = None, limit: int | None = None
    ) -> list[Event]:
        """Oldest first; with `limit`, the newest `limit` events."""

    # -- locks --

    @abstractmethod
    def acquire_lock(self, lock: Lock, is_stale: Callable[[Lock], bool]) -> Lock | None:
        """Take the environment's lock. If held and not stale, raise BusyError.
        Returns the stale lock that was taken over, if any."""

    @abstractmethod
    def renew_lock(self, environment: str, token: str, lease_until: str) -> bool:
        """Extend the lease, and that of the runs worked on under it; False when the lock is
        no longer ours."""

    @abstractmethod
    def release_lock(self, environment: str, token: str) -> None: ...

    @abstractmethod
    def get_lock(self, environment: str) -> Lock | None: ...

    @abstractmethod
    def force_unlock(self, environment: str) -> Lock | None:
        """Remove whatever lock is held; returns it."""

    # -- approvals and aborts: decisions people take from any runner --

    @abstractmethod
    def request_approval(
        self, release: str, stage: str, by: str, approvers: list[str], not_by_promoter: bool
    ) -> tuple[ApprovalRequest, bool]:
        """The open request (awaiting or approved) for the stage, or a new awaiting one; True when new."""

    @abstractmethod
    def approval(self, request_id: int) -> ApprovalRequest | None: ...

    @abstractmethod
    def approvals(self, release: str | None = None, state: str | None = None) -> list[ApprovalRequest]:
        """Oldest first."""

    @abstractmethod
    def decide_approval(self, request_id: int, state: str, by: str, reason: str, expect: str) -> bool:
        """Move the request from `expect` to `state` (approved, rejected, used, cancelled); False when
        it was no longer in `expect` (another runner decided first)."""

    @abstractmethod
    def use_approval(self, request_id: int, stage_run_id: int) -> bool:
        """Spend an approved request on the stage run it started; False when it was not approved."""

    @abstractmethod
    def request_abort(self, run_id: int, by: str, reason: str) -> bool:
        """Ask the open run to roll back; False when it is no longer open or was asked already."""

    # -- alerts: Alertmanager's notifications, acted on once per firing episode --

    @abstractmethod
    def record_alert(self, alert: AlertRecord) -> bool:
        """Keep a firing alert group for an environment; False when that episode (group, environment,
        start) was recorded already (Alertmanager repeats its notifications)."""

    @abstractmethod
    def alerts(self, state: str | None = None) -> list[AlertRecord]:
        """Oldest first; `pending` ones are still to be acted on."""

    @abstractmethod
    def settle_alert(self, alert_id: int, outcome: str) -> bool:
        """Mark a pending alert acted on; False when another process did first."""

    # -- effect reports: the outbox --

    @abstractmethod
    def schedule_report(self, report: Report) -> Report:
        """Record a report to send; a release that passes its last stage again is rescheduled,
        unless its report was already sent. Returns the record as stored."""

    @abstractmethod
    def get_report(self, release: str) -> Report | None: ...

    @abstractmethod
    def reports(self) -> list[Report]:
        """Soonest due first."""

    @abstractmethod
    def update_report(self, release: str, **changes) -> None:
        """Set the given fields (state, attempts, last_error, sent_at, path, delivered_to); stamps
        updated_at."""

    # -- heartbeats: long-lived processes (watch) say they are alive, for `status` --

    @abstractmethod
    def beat(self, name: str, data: dict) -> None:
        """Record that the process `name` is alive now, with what it says of itself."""

    @abstractmethod
    def heartbeats(self) -> dict[str, dict]:
        """name -> the last data each beat with, plus `at` (when)."""

    # -- routes: what an environment's router is told (releaser/router/) --

    @abstractmethod
    def save_route(self, environment: str, route: dict, applied: bool, why: str) -> None:
        """Store the route meant for the router (applied False: being put live, or refused)."""

    @abstractmethod
    def get_route(self, environment: str) -> dict | None:
        """{"route": dict, "applied": bool, "why": str, "updated_at": str}, or None before any."""

    # -- metric samples releaser read itself (the scrape source keeps no history) --

    @abstractmethod
    def add_samples(self, samples: list[Sample]) -> None: ...

    @abstractmethod
    def samples(self, environment: str, start: float, end: float) -> list[Sample]:
        """Samples with start <= ts <= end, oldest first."""

    @abstractmethod
    def last_sample_ts(self, environment: str) -> float | None: ...

    @abstractmethod
    def prune_samples(self, environment: str, before: float) -> int:
        """Forget samples older than `before`; returns how many."""
