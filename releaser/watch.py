"""Rollback windows: after a stage passes, its checks keep watching the hosts running the
release until the window closes (1 hour by default), and a failure rolls them back.
Each look also records the metric samples effect reports need and sends the reports due.

Windows live in the store (a passed stage run and its stage's `rollback_window`), and so does
what their checks have seen (the judge's counts, streaks, `for:` starts): any `releaser watch`
process, a daemon started again after a crash or `--once` from cron, continues the evidence
and decides as one long-lived process would.

Which windows are open, and when one ends early, is windows.py's. A window is not judged
while a promotion or rollback holds its environment.

Several `watch` processes (daemons on two machines, a cron `--once`) share one state: each
window is looked at by one of them at a time. A daemon holds a lease on each window it
watches (a lock named `window:<run>` in the store, renewed while it runs); another process
leaves that window alone until the lease is released, or runs out because its holder died,
and then takes it over (journaled). A `--once` look holds the lease for that look only.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from dataclasses import asdict, field
from datetime import UTC, datetime
from typing import Protocol

from .errors import BusyError, NeedsHuman, Refused, ReleaserError
from .events import Event
from .fleet import Fleet
from .health.base import CheckTarget, Verdict
from .health.gate import Gate
from .locks import EnvironmentLock
from .metrics import source_for
from .model import AlertRecord, AlertState, Cause, StageRun, utcnow
from .pipeline import Pipeline
from .processes import is_stale, this_machine, whoami
from .record import Record
from .recovery import Recovery
from .rollback import Rollbacks
from .store import StoreError
from .windows import Window, armed_windows, close_window


class Watcher:
    def __init__(self, pipeline: Pipeline, interval: float | None = None):
        """`interval`: seconds between looks of a daemon; None: one look (`watch --once`)."""
        self.pipeline = pipeline
        self.store, self.journal, self.config = pipeline.store, pipeline.journal, pipeline.config
        self.rollbacks, self.recovery = Rollbacks.like(pipeline), Recovery.like(pipeline)
        self.interval = interval
        self.started_at = utcnow()
        self._failed: set[str] = set()
        self._leases: dict[int, EnvironmentLock] = {}  # run id -> the lease this daemon holds on its window
        from .report.outbox import Outbox  # the report's libraries load only where a watch runs

        self.outbox = Outbox(self.config, self.store, self.journal)

    def look_once(self) -> dict:
        """One look at every armed window; rolls back what fails; records samples and sends
        the reports that are due. Returns what it did."""
        from .report.timeline import record_if_due

        self._aside("recording metric samples", lambda: record_if_due(self.config, self.store), None)
        outcomes: dict[str, list[str]] = {
            "rolled_back": [],
            "alarms": [],
            "blind": [],
            "paused": [],
            "closed": [],
            "elsewhere": [],
        }
        for alert in self.store.alerts(AlertState.PENDING):
            acted = self._on_alert(alert)
            if acted in ("rolled_back", "alarms"):
                outcomes[acted].append(alert.environment)
        windows = []
        armed = armed_windows(self.config, self.store)
        for run_id in set(self._leases) - {w.run.id for w in armed}:
            self._let_go(run_id)
        for window in armed:
            if not self._hold(window):
                outcomes["elsewhere"].append(window.run.release)
                continue
            try:
                if window.ending is not None:
                    self.close(window.run, window.ending)
                    outcomes["closed"].append(window.run.release)
                    self._let_go(window.run.id)
                    continue
                windows.append(window)
                outcome = self._look(window)
                if outcome in outcomes:
                    outcomes[outcome].append(window.run.release)
            finally:
                if self.interval is None:
                    self._let_go(window.run.id)
        contracted = self._aside("running due contract steps", self._contracts, [])
        reports = [asdict(outcome) for outcome in self._aside("sending due reports", self.outbox.send_due, [])]
        self.beat(windows=len(windows))
        return {"windows": [w.to_dict() for w in windows], **outcomes, "contracted": contracted, "reports": reports}

    def stop(self) -> None:
        """Let go of every window this daemon watches (another watch takes them at its next look)."""
        for run_id in list(self._leases):
            self._let_go(run_id)
        self.beat(stopped=True)

    def _hold(self, window: Window) -> bool:
        """Whether this process watches the window now: it holds its lease, or has just taken it."""
        run_id = window.run.id
        if run_id in self._leases:
            return True
        lease = max(60.0, 4 * (self.interval or 0))
        lock = EnvironmentLock(
            self.store,
            self.journal,
            f"window:{run_id}",
            f"watch {window.run.release} {window.run.stage} on {window.run.environment}",
            lease,
        )
        try:
            lock.__enter__()
        except BusyError:
            return False
        self._leases[run_id] = lock
        return True

    def _let_go(self, run_id: int) -> None:
        lock = self._leases.pop(run_id, None)
        if lock is not None:
            lock.__exit__(None, None, None)

    def beat(self, stopped: bool = False, windows: int | None = None) -> None:
        """Tell `status` this watcher is alive (or has stopped). A cron `--once` shares one record
        per machine; each daemon has its own."""
        host, pid = this_machine(), os.getpid()
        name = f"watch:{host}:" + ("once" if self.interval is None else str(pid))
        data = {
            "pid": pid,
            "hostname": host,
            "owner": whoami(),
            "started_at": self.started_at,
            "interval": self.interval,
            "windows": windows,
        }
        if stopped:
            data["stopped_at"] = utcnow()
        self._aside("recording that watch is alive", lambda: self.store.beat(name, data), None)

    def close(self, run: StageRun, why: str) -> None:
        close_window(self.store, self.journal, run, why)

    def _look(self, window: Window) -> str:
        run, spec = window.run, window.spec
        env = self.config.environments[run.environment]
        held = self.store.get_lock(env.name)
        if held is not None and not is_stale(held):
            return "paused"  # a promotion or rollback works on the environment: its hosts are changing
        memory = self.store.check_memory(run.id) or {}
        if "watching" not in memory:
            memory["watching"] = utcnow()
            self.journal.record(
                Event.WINDOW_WATCHING,
                f"{run.stage}: watching {run.release} on {env.name} until "
                f"{window.closes_at.isoformat(timespec='seconds')}",
                release=run.release,
                stage=run.stage,
                environment=env.name,
                data={"run": run.id},
            )
        running = {name: state.version for name, state in self.store.host_states(env.name).items()}
        cohort = tuple(h for h in env.hosts if running.get(h.name) == run.release)
        gate = Gate(spec.checks, memory)
        with Fleet(env, self.pipeline.transports(env)) as fleet:
            result = gate.evaluate(CheckTarget.of(env, run.release, cohort, running, fleet, source_for(env.metrics)))
        blind = [r for r in result.results if r.blind]
        if blind and not memory.get("blind"):
            memory["blind"] = utcnow()
            self.journal.record(
                Event.WINDOW_BLIND,
                f"{run.stage}: the checks of {run.release} on {env.name} cannot see: "
                + "; ".join(f"{r.check}: {r.summary}" for r in blind),
                release=run.release,
                stage=run.stage,
                environment=env.name,
                data={"run": run.id, "checks": [r.check for r in blind]},
            )
        elif not blind:
            memory.pop("blind", None)
        with self.store.transaction():
            self.store.save_check_memory(run.id, memory)
            if result.verdict is Verdict.PASS:
                self.store.set_last_look(run.id, utcnow())
        if result.verdict is not Verdict.FAIL:
            return "blind" if blind else "ok"
        why = "in the rollback window: " + "; ".join(f"{r.check}: {r.summary}" for r in result.failing())
        stored = self.store.get_stage_run(run.id)
        # a window's run has passed, so it has finished; its last look is when the checks last passed
        fault_at = (stored.last_look_at if stored else None) or run.finished_at or utcnow()
        try:
            rolled = self.rollbacks.window(run, why, fault_at)
        except BusyError as busy:
            self.journal.note(f"{run.release}: checks fail in its window but {busy}; trying again next look")
            return "busy"
        if not rolled.complete:
            self._alarm(
                window,
                f"the rollback of {run.release} on {env.name} could not finish: {rolled.hosts_left()}; "
                "`releaser resume` finishes it",
            )
            return "alarms"
        if datetime.now(UTC) > window.closes_at:
            self._alarm(window, f"the rollback of {run.release} finished after its window closed")
            return "alarms"
        return "rolled_back"

    def _on_alert(self, alert: AlertRecord) -> str:
        """Act on a firing alert group: abort the promotion in progress on its environment, or roll
        back the release inside its rollback window; else only journal it. Returns what it did."""
        env = self.config.environments.get(alert.environment)
        why = f"alert {alert.alertname} firing" + (f": {alert.summary}" if alert.summary else "")
        scope = {
            "environment": alert.environment,
            "data": {"alert": alert.id, "group": alert.group_key, "labels": alert.labels, "starts_at": alert.starts_at},
        }
        if env is None or env.alerts is None or not env.alerts.rollback:
            return self._settle(alert, "journaled only (the environment does not roll back on alerts)", why, scope)
        running = [r for r in self.store.stage_runs() if r.environment == env.name and r.status.open]
        if running:
            run = running[-1]
            try:  # its runner rolls back at its next safe point; a runner that is gone, here
                self.recovery.abort(run.release, why, by=f"alert {alert.alertname}", wait=False)
            except Refused:
                pass  # it ended before the request reached it: nothing left to abort
            except NeedsHuman as exc:
                self._settle(alert, f"the rollback of {run.release} could not finish", why, scope, release=run.release)
                self.journal.record(Event.ALARM, str(exc), release=run.release, stage=run.stage, environment=env.name)
                return "alarms"
            return self._settle(alert, f"aborted {run.stage} of {run.release}", why, scope, release=run.release)
        windows = [
            w for w in armed_windows(self.config, self.store) if w.run.environment == env.name and w.ending is None
        ]
        if not windows:
            return self._settle(
                alert,
                f"nothing to roll back: no promotion in progress and no rollback window open on {env.name}",
                why,
                scope,
            )
        run = max(windows, key=lambda w: w.run.finished_at or "").run
        try:
            rolled = self.rollbacks.window(run, why, alert.starts_at, Cause.ALERT)
        except BusyError as busy:
            self.journal.note(f"{why} on {env.name}, but {busy}; trying again next look")
            return "busy"
        self._settle(
            alert,
            f"rolled back {run.release}" + ("" if rolled.complete else f", not on {rolled.hosts_left()}"),
            why,
            scope,
            release=run.release,
        )
        return "rolled_back" if rolled.complete else "alarms"

    def _settle(self, alert: AlertRecord, outcome: str, why: str, scope: dict, release: str | None = None) -> str:
        with self.store.transaction():
            if alert.id is not None and self.store.settle_alert(alert.id, outcome):  # an alert read from the store
                self.journal.record(
                    Event.ALERT_FIRING,
                    f"{why}: {outcome}",
                    release=release,
                    **{**scope, "data": {**scope["data"], "outcome": outcome}},
                )
        return outcome

    def _contracts(self) -> list[str]:
        """Run the contract steps whose rollback windows have closed (contracts.py), each under
        its environment's lock; one that fails is journaled and left to a person."""
        from .contracts import pending_contracts

        done = []
        for pending in pending_contracts(self.config, self.store):
            if not pending.due():
                continue
            from .database import StepFailed, run_contract

            try:
                if run_contract(self.pipeline, pending, f"watch: contract step of {pending.release}") is not None:
                    done.append(f"{pending.release} on {pending.environment}")
            except (BusyError, StepFailed):
                continue  # held: at a later look; failed: journaled (migration.failed), a person decides
        return done

    def _aside(self, what: str, job, fallback):
        """A job besides the windows (samples, reports): its failure is journaled (once per
        kind of failure and process) and never stops the windows being watched."""
        try:
            return job()
        except ReleaserError:
            raise
        except Exception as exc:
            message = f"{what} failed: {type(exc).__name__}: {exc}"
            if message not in self._failed:
                self._failed.add(message)
                self.journal.record(Event.WATCH_FAILED, message, data={"error": type(exc).__name__})
            return fallback

    def _alarm(self, window: Window, message: str) -> None:
        self.journal.record(
            Event.ALARM, message, release=window.run.release, stage=window.run.stage, environment=window.run.environment
        )


class Stoppable(Protocol):
    def stop(self) -> None: ...


class Watched(Record):
    """What a watch did over all its looks; `last` is its last look's outcome (see Watcher.look_once)."""

    looks: int = 0
    last: dict = field(default_factory=lambda: {"windows": [], "blind": [], "elsewhere": []})
    rolled_back: list[str] = field(default_factory=list)
    alarms: list[str] = field(default_factory=list)
    reports: list[dict] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)
    stopped: bool = False  # a signal ended the watch (a daemon's normal end)

    def to_dict(self) -> dict:
        return {
            "ok": not self.alarms,
            "looks": self.looks,
            "windows": self.last["windows"],
            "rolled_back": self.rolled_back,
            "alarms": self.alarms,
            "blind": self.last["blind"],
            "elsewhere": self.last["elsewhere"],
            "closed": self.closed,
            "reports": self.reports,
        }


def stop_on_signals() -> tuple[threading.Event, threading.Event]:
    """(stop, wake) for keep_watching: SIGTERM and SIGINT from now on set both, so they end the
    watch between looks, never in the middle of a rollback; a hangup ends nothing: the windows
    stay watched (see interrupts.py)."""
    stop, wake = threading.Event(), threading.Event()

    def end(*_: object) -> None:
        stop.set()
        wake.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, end)
    return stop, wake


def keep_watching(
    watcher: Watcher,
    stop: threading.Event,
    wake: threading.Event,
    receiver: Stoppable | None,
    after_look: Callable[[], None],
    state_away: Callable[[StoreError], None],
) -> Watched:
    """Look at every window until `stop` (a daemon: a look every `watcher.interval` seconds, at
    once when `wake` is set, e.g. by an alert), or look once (`interval` None). A daemon stopped
    lets go of its windows. It outlives a state that is briefly away (a database restarting, the
    network): `state_away` hears of it and the next look comes after the pause; one look raises
    the StoreError. `receiver` (Alertmanager's webhook) is stopped when the watch ends."""
    once = watcher.interval is None
    pause = watcher.interval or 0.0
    watched = Watched()
    try:
        while not stop.is_set():
            try:
                result = watcher.look_once()
            except StoreError as exc:
                if once:
                    raise
                state_away(exc)
                wake.wait(pause)
                wake.clear()
                continue
            watched.looks += 1
            watched.last = result
            after_look()
            watched.rolled_back += result["rolled_back"]
            watched.alarms += result["alarms"]
            watched.reports += result["reports"]
            watched.closed += result["closed"]
            if once:
                break
            wake.wait(pause)  # an alert wakes the watch at once
            wake.clear()
    finally:
        if receiver is not None:
            receiver.stop()
    if stop.is_set():
        watcher.stop()
        watched.stopped = True
    return watched
