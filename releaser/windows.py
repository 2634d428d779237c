"""Rollback windows: after a stage passes, its checks keep watching the hosts running the
release until the window closes (1 hour by default). This module says which windows are open
and whether anything watches them; `watch` does the watching. Light: `status` imports it.

A window ends early, and is closed in the store with why, when no host runs its release any
more (rolled back), or when another release started a stage on its environment (superseded).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from .events import Event
from .model import Config, RunStatus, StageRun, StageSpec, parse_ts
from .processes import pid_alive, this_machine
from .record import Record
from .store import Store

if TYPE_CHECKING:
    from .journal import Journal


class Window(Record):
    """An open rollback window: a passed stage run whose checks are still watched."""

    run: StageRun
    spec: StageSpec
    closes_at: datetime
    ending: str | None = None  # why it ends early; the watcher closes it

    def to_dict(self) -> dict:
        return {
            "release": self.run.release,
            "stage": self.run.stage,
            "environment": self.run.environment,
            "closes_at": self.closes_at.isoformat(timespec="seconds"),
        }


def armed_windows(config: Config, store: Store, runs: list[StageRun] | None = None) -> list[Window]:
    """The newest passed stage of each release per environment whose window is open; those
    that should end early (see the module's text) carry why in `ending`. `runs`: every stage
    run, oldest first, when the caller has read them already."""
    now = datetime.now(UTC)
    runs = store.stage_runs() if runs is None else runs
    newest: dict[tuple[str, str], Window] = {}
    for run in runs:
        if (
            run.status is not RunStatus.PASSED
            or not run.finished_at
            or run.window_closed_at
            or run.stage not in config.stage_names()
        ):
            continue
        spec = config.stage(run.stage)
        closes = parse_ts(run.finished_at) + timedelta(seconds=spec.rollback_window)
        if closes > now:
            newest[(run.environment, run.release)] = Window(run, spec, closes)
    in_order: dict[str, list[StageRun]] = {}  # each environment's runs that can supersede a window, oldest first
    for run in runs:
        if run.status is not RunStatus.SKIPPED:
            in_order.setdefault(run.environment, []).append(run)
    running: dict[str, set[str | None]] = {}  # what each environment's hosts run, asked once per environment
    for (environment, release), window in newest.items():
        other = next((r for r in reversed(in_order.get(environment, [])) if r.release != release), None)
        if other is not None and other.id > window.run.id:
            window.ending = f"superseded: {other.release} started {other.stage} on {environment}"
            continue
        if environment not in running:
            running[environment] = {s.version for s in store.host_states(environment).values()}
        if release not in running[environment]:
            window.ending = f"no host of {environment} runs {release} any more"
    return list(newest.values())


def open_windows(config: Config, store: Store, runs: list[StageRun] | None = None) -> list[Window]:
    return [w for w in armed_windows(config, store, runs) if w.ending is None]


def watchers(store: Store, now: datetime | None = None) -> list[dict]:
    """What each watcher last said of itself, with `alive`: a daemon whose process runs (on this
    machine) or that looked within three of its intervals (elsewhere), not stopped; `--once`
    records are never alive, only recent or not. Newest look first."""
    now = now or datetime.now(UTC)
    result = []
    for name, beat in store.heartbeats().items():
        if not name.startswith("watch:"):
            continue
        age = (now - parse_ts(beat["at"])).total_seconds()
        alive = False
        if beat.get("interval") and not beat.get("stopped_at"):
            recent = age <= 3 * beat["interval"] + 30
            if beat["hostname"] == this_machine():  # its pid says; a long rollback may delay a look
                alive = pid_alive(beat["pid"]) and (recent or age <= 900)
            else:
                alive = recent
        result.append(
            {
                **beat,
                "name": name,
                "alive": alive,
                "seconds_since_look": round(age, 1),
                "mode": "daemon" if beat.get("interval") else "once",
            }
        )
    return sorted(result, key=lambda b: b["seconds_since_look"])


def close_window(store: Store, journal: Journal, run: StageRun, why: str) -> None:
    """Close a run's rollback window before its time, journaled."""
    with store.transaction():
        store.close_window(run.id, why)
        journal.record(
            Event.WINDOW_CLOSED,
            f"{run.stage}: stopped watching {run.release} on {run.environment}: {why}",
            release=run.release,
            stage=run.stage,
            environment=run.environment,
            data={"run": run.id, "reason": why},
        )
