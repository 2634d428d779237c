"""Rollback windows: after a stage passes, its checks keep watching the hosts running the
release until the window closes (1 hour by default), and a failure rolls them back.
Each look also records the metric samples effect reports need and sends the reports due.

Windows live in the store (a passed stage run and its stage's `rollback_window`), so any
`releaser watch` process, started again after a crash or from cron with `--once`, finds
every armed window. What a check remembered between looks (the judge's evidence) lives in
the watching process and starts afresh after a restart; that is journaled.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone

from .errors import BusyError, ReleaserError
from .fleet import Fleet
from .health.base import CheckTarget, Verdict
from .health.gate import Gate
from .health.sources import source_for
from .model import Config, RunStatus, StageRun, StageSpec, parse_ts, utcnow
from .pipeline import Pipeline
from .store import Store
from .transport import transport_for


@dataclass
class Window:
    run: StageRun
    spec: StageSpec
    closes_at: datetime

    def to_dict(self) -> dict:
        return {"release": self.run.release, "stage": self.run.stage, "environment": self.run.environment,
                "closes_at": self.closes_at.isoformat(timespec="seconds")}


def armed_windows(config: Config, store: Store) -> list[Window]:
    """The newest passed stage of each release per environment whose window is open and
    whose release still runs on some host there."""
    now = datetime.now(timezone.utc)
    newest: dict[tuple[str, str], Window] = {}
    for run in store.stage_runs():
        if run.status is not RunStatus.PASSED or not run.finished_at or run.stage not in config.stage_names():
            continue
        spec = config.stage(run.stage)
        closes = parse_ts(run.finished_at) + timedelta(seconds=spec.rollback_window)
        if closes > now and any(s.version == run.release for s in store.host_states(run.environment).values()):
            newest[(run.environment, run.release)] = Window(run, spec, closes)
    return list(newest.values())


class Watcher:
    def __init__(self, pipeline: Pipeline):
        self.pipeline = pipeline
        self.store, self.journal, self.config = pipeline.store, pipeline.journal, pipeline.config
        self._gates: dict[int, Gate] = {}
        self._failed: set[str] = set()
        from .report.outbox import Outbox  # the report's libraries load only where a watch runs

        self.outbox = Outbox(self.config, self.store, self.journal)

    def look_once(self) -> dict:
        """One look at every armed window; rolls back what fails; records samples and sends
        the reports that are due. Returns what it did."""
        from .report.timeline import record_if_due

        self._aside("recording metric samples", lambda: record_if_due(self.config, self.store), None)
        windows, rolled_back, alarms = armed_windows(self.config, self.store), [], []
        for window in windows:
            outcome = self._look(window)
            if outcome == "rolled_back":
                rolled_back.append(window.run.release)
            elif outcome == "alarm":
                alarms.append(window.run.release)
        reports = [asdict(outcome) for outcome in self._aside("sending due reports", self.outbox.send_due, [])]
        return {"windows": [w.to_dict() for w in windows],
                "rolled_back": rolled_back, "alarms": alarms, "reports": reports}

    def _look(self, window: Window) -> str:
        run, spec = window.run, window.spec
        env = self.config.environments[run.environment]
        if run.id not in self._gates:
            self._gates[run.id] = Gate(spec.checks)
            self.journal.record(
                "window.watching", f"{run.stage}: watching {run.release} on {env.name} until "
                f"{window.closes_at.isoformat(timespec='seconds')}", release=run.release, stage=run.stage,
                environment=env.name, data={"run": run.id},
            )
        states = self.store.host_states(env.name)
        cohort = tuple(h for h in env.hosts if states.get(h.name) and states[h.name].version == run.release)
        with Fleet(env, transport_for(env)) as fleet:
            target = CheckTarget.of(env, run.release, cohort, fleet, source_for(env.metrics))
            result = self._gates[run.id].evaluate(target)
        if result.verdict is not Verdict.FAIL:
            if result.verdict is Verdict.PASS:
                self.store.set_last_look(run.id, utcnow())
            return "ok"
        why = "in the rollback window: " + "; ".join(f"{r.check}: {r.summary}" for r in result.failing())
        fault_at = self.store.get_stage_run(run.id).last_look_at or run.finished_at
        self._gates.pop(run.id, None)
        try:
            rolled = self.pipeline.roll_back_window(run, why, fault_at)
        except BusyError as busy:
            self.journal.note(f"{run.release}: checks fail in its window but {busy}; trying again next look")
            return "busy"
        if not rolled.complete:
            self._alarm(window, f"the rollback of {run.release} on {env.name} could not finish: {rolled.hosts_left()}; "
                                "`releaser resume` finishes it")
            return "alarm"
        if datetime.now(timezone.utc) > window.closes_at:
            self._alarm(window, f"the rollback of {run.release} finished after its window closed")
            return "alarm"
        return "rolled_back"

    def _aside(self, what: str, job, fallback):
        """A job besides the windows (samples, reports): its failure is journaled (once per
        kind of failure and process) and never stops the windows being watched."""
        try:
            return job()
        except ReleaserError:
            raise
        except Exception as exc:  # noqa: BLE001 - a daemon that dies leaves every window unwatched
            message = f"{what} failed: {type(exc).__name__}: {exc}"
            if message not in self._failed:
                self._failed.add(message)
                self.journal.record("watch.failed", message, data={"error": type(exc).__name__})
            return fallback

    def _alarm(self, window: Window, message: str) -> None:
        self.journal.record("alarm", message, release=window.run.release, stage=window.run.stage,
                            environment=window.run.environment)
