"""When a release's contract step may run on an environment's database: once the release (or a
later one, built on it: a fixed release after a bad one) has passed the environment's last stage
and not been rolled back since, its rollback window there has closed, and every host of the
environment runs a release that works on the contracted schema. So an automatic rollback inside
the window never crosses a contract step. `watch` runs a due step at its next look (and retries
one cut short, never one that failed); `releaser migrate ENV --contract` runs it by hand. Light:
`status` imports it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from .dbschema import History
from .model import Config, MigrationStatus, RunStatus, parse_ts
from .record import Record
from .store import Store


class Pending(Record, frozen=True):
    """A contract step not yet run: when it may, and what holds it back now ("" when nothing)."""

    environment: str
    release: str
    target: str
    due_at: datetime | None  # when the rollback window closes; None: the last stage has not passed
    blocked: str = ""
    failed: str = ""  # the last attempt failed, and why: only a person runs it again
    carrier: str = ""  # the release whose rollback window it waits for: its own, or a later one live there

    def due(self, now: datetime | None = None, again: bool = False) -> bool:
        """Whether it may run now (`again`: even after a failed attempt, as a person asks)."""
        return (
            not self.blocked
            and (again or not self.failed)
            and self.due_at is not None
            and self.due_at <= (now or datetime.now(UTC))
        )

    def describe(self, now: datetime | None = None) -> str:
        step = f"{self.release}'s contract step to {self.target} on {self.environment}"
        if self.failed:
            return f"{step} failed ({self.failed}); run it again with `releaser migrate {self.environment} --contract`"
        if self.blocked:
            return f"{step} waits: {self.blocked}"
        if self.due_at is None:
            return (
                f"{step} waits until {self.release} (or a later release) has passed the last stage on "
                f"{self.environment}"
            )
        whose = "its" if self.carrier in ("", self.release) else f"{self.carrier}'s"
        if self.due(now):
            return f"{step} is due ({whose} rollback window closed {self.due_at.isoformat(timespec='seconds')})"
        return f"{step} runs once {whose} rollback window closes, {self.due_at.isoformat(timespec='seconds')}"


def pending_contracts(config: Config, store: Store, environment: str | None = None) -> list[Pending]:
    """The contract steps not yet run on each environment whose playbook migrates, oldest release first."""
    releases = store.list_releases()
    contracting = [r for r in releases if r.schema.contract]
    if not contracting:
        return []
    history = History(releases)
    runs = store.stage_runs()
    undone: dict[tuple[str, str], str] = {}  # (environment, release) -> when it was last rolled back there
    for rollback in store.rollbacks():
        if rollback.cause.condemns:
            for version in rollback.releases:
                key = (rollback.environment, version)
                undone[key] = max(undone.get(key, ""), rollback.started_at)
    found = []
    for env in config.environments.values():
        if environment not in (None, env.name) or config.playbooks[env.playbook].migrate is None:
            continue
        migrations = store.migrations(env.name)
        reached = _reached(history, migrations)
        stages = [s for s in config.pipeline if s.environment == env.name]
        if not stages:
            continue
        last = stages[-1]
        states = store.host_states(env.name)
        for release in contracting:
            target = release.schema.contract or ""
            index = history.index(target)
            if index is None or (reached is not None and reached >= index):
                continue
            # its release, or a later one (built on it), live on the environment: not rolled back since
            carriers = {v for v, at in history.order.items() if at >= history.order[release.version]}
            passed = sorted(
                (
                    r
                    for r in runs
                    if r.release in carriers
                    and r.environment == env.name
                    and r.stage == last.name
                    and r.status is RunStatus.PASSED
                    and r.finished_at
                    and r.finished_at > undone.get((env.name, r.release), "")
                ),
                key=lambda r: r.finished_at or "",
            )
            if not passed:
                if any(r.release in carriers and r.environment == env.name for r in runs):
                    found.append(Pending(env.name, release.version, target, None))
                continue
            run = passed[-1]
            due_at = parse_ts(run.finished_at or "") + timedelta(seconds=last.rollback_window)
            if run.window_closed_at:  # closed early (by hand, for this step): due from then
                due_at = min(due_at, parse_ts(run.window_closed_at))
            tried = [m for m in migrations if m.release == release.version and m.phase == "contract"]
            failed = tried[-1].detail if tried and tried[-1].status is MigrationStatus.FAILED else ""
            unfit = sorted(
                f"{host} runs {state.version or 'nothing'}"
                for host, state in states.items()
                if state.doubt or state.version is None or not _runs_on(history, state.version, index)
            )
            blocked = f"{', '.join(unfit[:5])}, which would not work after it" if unfit else ""
            found.append(Pending(env.name, release.version, target, due_at, blocked, failed, run.release))
    return found


def _reached(history: History, migrations: list) -> int | None:
    """How far the environment's database got, by the last step that said (None: unknown)."""
    for migration in reversed(migrations):
        if migration.status is MigrationStatus.RUNNING:
            return None  # cut short: the step asks the database when it runs again
        if migration.to_version not in (None, "?"):
            return history.index(migration.to_version)
    return None


def _runs_on(history: History, release: str, index: int) -> bool:
    if release not in history.order:
        return False
    return history.floor(release) <= index <= history.ceiling(release)
