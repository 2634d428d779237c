"""The store interface: releases, stage runs, host deployments, host state, the journal, locks.

The pipeline talks only to this interface, so a PostgreSQL backend can sit beside SQLite.
Every write is durable when the method returns; `transaction()` groups several writes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from typing import Callable

from ..model import Deployment, Event, HostState, Lock, Release, ReleaseStatus, Report, RunStatus, Sample, StageRun

SCHEMA_VERSION = 3


class Store(ABC):
    # -- plumbing --

    @abstractmethod
    def transaction(self) -> AbstractContextManager[None]:
        """All writes inside commit together, or none do."""

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
        self, release: str, stage: str, environment: str, owner: str, status: RunStatus = RunStatus.RUNNING,
        forced: bool = False, reason: str = "",
    ) -> StageRun: ...

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
    def set_host_state(self, environment: str, host: str, version: str | None, previous: str | None) -> None: ...

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
        """Extend the lease; False when the lock is no longer ours."""

    @abstractmethod
    def release_lock(self, environment: str, token: str) -> None: ...

    @abstractmethod
    def get_lock(self, environment: str) -> Lock | None: ...

    @abstractmethod
    def force_unlock(self, environment: str) -> Lock | None:
        """Remove whatever lock is held; returns it."""

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
        """Set the given fields (state, attempts, last_error, sent_at, path); stamps updated_at."""

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
