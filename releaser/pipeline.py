"""The promotion state machine: stage by stage, deploy, check, bake, pass or roll back.

A thin orchestrator over deploy (`deploy.py`), the checks (`health/`) and the one rollback
path (`rollback.py`). Every transition is journaled before the action it announces and its
outcome after; signals are read at safe points (`interrupts.py`); `resume` picks up a run
whose process died, from what the hosts really run.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from .cohort import gray_cohort, split_waves, stable_order
from .decisions import POLL, AbortListener, approved, cancel_requests
from .deploy import Deployer
from .errors import BusyError, Inconclusive, NeedsHuman, Refused, StageFailed, UsageError
from .events import Event
from .fleet import Fleet, HostResult, TickFn
from .health.base import CheckResult, CheckTarget, Verdict
from .health.gate import Gate, GateResult
from .hostrecord import HostView
from .interrupts import Interrupted, Interrupts
from .journal import Journal
from .locks import EnvironmentLock
from .metrics import MetricSource, source_for
from .model import (
    Cause,
    Config,
    Environment,
    Host,
    Release,
    ReleaseStatus,
    RollbackRun,
    RollbackStatus,
    RunStatus,
    StageRun,
    StageSpec,
)
from .preflight import check_hosts
from .processes import is_stale, owner_alive, whoami
from .record import Record
from .releases import verify_artifact
from .rollback import RollbackResult, Rollbacks
from .router.keeper import RouteRefused
from .schema import format_duration
from .store import Store
from .terminal import span
from .transport import Transport, transport_for

_CHECKED = {
    Verdict.PASS: Event.CHECKS_PASS,
    Verdict.FAIL: Event.CHECKS_FAIL,
    Verdict.INCONCLUSIVE: Event.CHECKS_INCONCLUSIVE,
}


class _StageFailure(Exception):
    """Raised inside a stage to send it to rollback; never leaves this module."""


class _Unproven(_StageFailure):
    """Raised when the bake ends before the checks decided: the stage fails safe, but nothing
    was shown wrong with the release (no incident)."""


class _Held(Exception):
    """Raised when the bake ends inconclusive and the stage is configured to hold."""


class _Stage(Record):
    """Everything one stage run works with."""

    release: Release
    spec: StageSpec
    run: StageRun
    env: Environment
    deployer: Deployer
    lock: EnvironmentLock
    metrics: MetricSource | None = None  # the environment's metric source
    aborted: tuple[str, str] | None = None  # who asked `releaser abort`, and why

    def abort(self, by: str, reason: str) -> None:
        self.aborted = (by, reason)


class Pipeline:
    def __init__(
        self,
        config: Config,
        store: Store,
        journal: Journal,
        transports: Callable[..., Transport] = transport_for,
        tick: TickFn | None = None,
        interrupts: Interrupts | None = None,
    ):
        self.config, self.store, self.journal = config, store, journal
        self.transports = transports
        self.tick = tick
        self.interrupts = interrupts or Interrupts()

    # -- where a release stands --

    def passed_stages(self, version: str) -> set[str]:
        """Stages whose latest run passed (or was skipped), and whose environment has not rolled
        the release back since: after a rollback, promotion starts again from the first stage
        on that environment, never straight to `full`."""
        rolled_back: dict[str, str] = {}
        for rollback in self.store.rollbacks():
            if version in rollback.releases:
                rolled_back[rollback.environment] = max(rolled_back.get(rollback.environment, ""), rollback.started_at)
        latest: dict[str, RunStatus] = {}
        for run in self.store.stage_runs(version):
            undone = run.finished_at is not None and run.finished_at <= rolled_back.get(run.environment, "")
            latest[run.stage] = RunStatus.ROLLED_BACK if undone else run.status
        return {stage for stage, status in latest.items() if status in (RunStatus.PASSED, RunStatus.SKIPPED)}

    def next_stage(self, version: str) -> str | None:
        passed = self.passed_stages(version)
        return next((name for name in self.config.stage_names() if name not in passed), None)

    def _release(self, version: str) -> Release:
        release = self.store.get_release(version)
        if release is None:
            raise UsageError(
                f"unknown release {version!r}: register it with `releaser release create {version} --artifact FILE`"
            )
        return release

    # -- promote and run --

    def promote(
        self, version: str, to_stage: str | None = None, force: bool = False, reason: str = "", wait: bool = False
    ) -> StageRun | None:
        """Run one stage: the next one, or `to_stage`, which may skip stages (or a freeze) only when
        forced. A stage that needs approval asks for it and stops, or with `wait` waits for it.
        A signal from here on ends it like a failed stage (see interrupts.py)."""
        with self.interrupts.armed():
            return self._promote(version, to_stage, force, reason, wait)

    def _promote(self, version: str, to_stage: str | None, force: bool, reason: str, wait: bool) -> StageRun | None:
        release = self._release(version)
        names = self.config.stage_names()
        if to_stage is not None and to_stage not in names:
            raise UsageError(f"unknown stage {to_stage!r}: this pipeline runs {' -> '.join(names)}")
        if force and not reason.strip():
            raise UsageError("--force needs --reason TEXT, which is journaled")
        if release.status is ReleaseStatus.FAILED:
            raise NeedsHuman(
                f"{version} failed to roll back earlier; check `releaser status`, then finish with `releaser resume` "
                f"or fix the hosts with `releaser rollback ENV --reason TEXT` before promoting it again"
            )
        stage = to_stage or self.next_stage(version)
        if stage is None:
            self.journal.note(f"{version} has passed every stage; nothing to do")
            return None
        passed = self.passed_stages(version)
        skipped = [name for name in names[: names.index(stage)] if name not in passed]
        if skipped and not force:
            raise UsageError(
                f"promoting {version} to {stage} would skip {', '.join(skipped)}; promote in order "
                f"(`releaser promote {version}`) or pass --force --reason TEXT"
            )
        verify_artifact(release)
        spec = self.config.stage(stage)
        env = self.config.environments[spec.environment]
        if env.artifacts == "pull" and not release.url:
            raise UsageError(
                f"{env.name} has its hosts fetch artifacts (artifacts: pull) but {version} has no URL; "
                f"register it with `releaser release create {version} --artifact FILE --url URL`"
            )
        self._refuse_frozen(env, version, stage, force, reason)
        approval = approved(self.store, self.journal, spec, version, wait, self.interrupts)
        self.interrupts.check()
        with self._lock(env.name, f"promote {version} --to {stage}") as lock, self._fleet(env) as fleet:
            self._refuse_open_runs(env)
            deployer = self._deployer(env, fleet)
            check_hosts(self.config, env, deployer.playbook, fleet, self._scope(spec, env), f"{stage} of {version}")
            self._refuse_unknown_hosts(deployer)
            with self.store.transaction():
                for name in skipped:
                    self.store.start_stage_run(
                        version,
                        name,
                        self.config.stage(name).environment,
                        whoami(),
                        RunStatus.SKIPPED,
                        forced=True,
                        reason=reason,
                    )
                    self.journal.record(
                        Event.STAGE_SKIPPED,
                        f"{name} skipped for {version} (forced): {reason}",
                        release=version,
                        stage=name,
                        data={"reason": reason},
                    )
                run = self.store.start_stage_run(
                    version, stage, env.name, whoami(), forced=bool(skipped), reason=reason, claim=lock.claim()
                )
                if approval is not None and not self.store.use_approval(approval.id, run.id):
                    raise Refused(f"the approval of {stage} for {version} was withdrawn before the stage started")
                self.store.set_release_status(version, ReleaseStatus.PROMOTING)
                self.journal.record(
                    Event.STAGE_STARTED,
                    f"{stage}: promoting {version} on {env.name}",
                    release=version,
                    stage=stage,
                    environment=env.name,
                    data={"run": run.id, "forced": bool(skipped)},
                )
            self._execute(_Stage(release, spec, run, env, deployer, lock, source_for(env.metrics)))
        return self.store.get_stage_run(run.id)

    def run(
        self, version: str, to_stage: str | None = None, force: bool = False, reason: str = "", wait: bool = False
    ) -> list[StageRun]:
        """Promote stage after stage through `to_stage` (default: the last one); `force` with a
        reason promotes through a freeze, `wait` waits for each approval a stage needs."""
        names = self.config.stage_names()
        to_stage = to_stage or names[-1]
        if to_stage not in names:
            raise UsageError(f"unknown stage {to_stage!r}: this pipeline runs {' -> '.join(names)}")
        runs = []
        with self.interrupts.armed():  # a signal between two stages stops before the next one starts
            while (stage := self.next_stage(version)) is not None and names.index(stage) <= names.index(to_stage):
                runs.append(self.promote(version, stage, force=force, reason=reason, wait=wait))
        return runs

    # -- one stage --

    def _lock(self, environment: str, command: str) -> EnvironmentLock:
        return EnvironmentLock(self.store, self.journal, environment, command)

    def _deployer(self, env: Environment, fleet: Fleet) -> Deployer:
        routes = None
        if env.router is not None:
            from .router.keeper import RouteKeeper

            routes = RouteKeeper(env, self.store, self.journal, fleet)
        return Deployer(env, self.config.playbooks[env.playbook], self.store, self.journal, fleet, routes)

    def _refuse_frozen(self, env: Environment, version: str, stage: str, force: bool, reason: str) -> None:
        """A freeze refuses the promotion (exit 3), unless forced with a reason, which is journaled."""
        if not self.config.freezes:
            return
        from .freezes import frozen

        held = frozen(self.config.freezes, env.name)
        if held is None:
            return
        if not force:
            raise Refused(
                f"{env.name} is frozen: {held.describe()} ({held.freeze.line}); promote after it, or "
                "pass --force --reason TEXT to override (journaled)"
            )
        self.journal.record(
            Event.FREEZE_OVERRIDDEN,
            f"{stage}: {whoami()} promotes {version} on {env.name} during the freeze {held.describe()}: {reason}",
            release=version,
            stage=stage,
            environment=env.name,
            data={"freeze": held.freeze.name, "by": whoami(), "reason": reason, "until": held.until.isoformat()},
        )

    def _refuse_open_runs(self, env: Environment) -> None:
        for run in self.store.stage_runs():
            if run.environment == env.name and run.status.open:
                raise NeedsHuman(
                    f"{run.stage} of {run.release} on {env.name} is unfinished (run {run.id}, {run.status}); "
                    "run `releaser resume` to finish or roll it back first"
                )
        for rollback in self.store.rollbacks(env.name):
            if rollback.status.open:
                raise NeedsHuman(
                    f"rollback {rollback.id} of {env.name} is unfinished "
                    f"({', '.join(sorted(rollback.left)) or 'interrupted'}); "
                    "run `releaser resume` to finish it first"
                )

    def _refuse_unknown_hosts(self, deployer: Deployer) -> None:
        """A store that knows nothing of an environment whose hosts carry releaser's records
        was lost or replaced: acting on it would roll back to nothing. Refuse."""
        env = deployer.env
        if self.store.host_states(env.name) or self.store.deployments(environment=env.name):
            return
        carrying = {name: view for name, view in deployer.ask().items() if view.reachable and view.carries_record}
        if carrying:
            sample = ", ".join(
                f"{name} runs {view.current or 'nothing'}" for name, view in sorted(carrying.items())[:3]
            )
            raise NeedsHuman(
                f"the hosts of {env.name} carry releaser's records ({sample}) but the state database "
                f"{self.config.state_path} knows nothing of them (was it deleted or replaced?); nothing was changed: "
                "restore it from a backup, or rebuild what the hosts run from their records "
                "with `releaser state rebuild`"
            )

    def _fleet(self, env: Environment) -> Fleet:
        def notify(kind: str, message: str, data: dict) -> None:
            self.journal.record(Event(kind), message, environment=env.name, host=data.get("host"), data=data)

        return Fleet(
            env,
            self.transports(env, notify),
            progress=self._phase_progress(env),
            tick=self.tick,
            stopping=lambda: self.interrupts.requested,
        )

    def _phase_progress(self, env: Environment):
        def report(phase: str, results: dict[str, HostResult], seconds: float) -> None:
            ok = sum(1 for r in results.values() if r.ok)
            failed = [name for name, r in results.items() if not r.ok]
            text = f"  {phase}: {ok}/{len(results)} hosts ok in {seconds:.2f}s"
            if failed:
                text += f" (failed: {', '.join(sorted(failed)[:10])}{'…' if len(failed) > 10 else ''})"
            self.journal.note(text, environment=env.name)

        return report

    def _execute(self, stage: _Stage, views: dict[str, HostView] | None = None) -> None:
        """Deploy and bake; `views` (what the hosts said) when resuming, to settle the store first.
        Callers arm the interrupts: a signal fails the stage through the rollback path."""
        started = time.monotonic()
        try:
            with AbortListener(self.store, stage.run.id, self.interrupts, stage.abort) as listener:
                if views is not None:
                    stage.deployer.reconcile(views)
                self._deploy_and_bake(stage)
                listener.last_look()  # an abort asked before the stage passes is never lost
        except _Held as held:
            self._hold(stage, str(held))
        except _Unproven as exc:
            self._fail(stage, str(exc), Cause.UNPROVEN)
        except (_StageFailure, RouteRefused) as exc:
            self._fail(stage, str(exc), Cause.STAGE)
        except Interrupted as exc:
            if stage.aborted is not None:
                self._fail(stage, "aborted by {}: {}".format(*stage.aborted), Cause.ABORT)
            else:
                self._fail(stage, str(exc), Cause.SIGNAL)
        self._pass(stage, time.monotonic() - started)

    def _target(self, stage: _Stage, cohort: list[Host]) -> CheckTarget:
        return CheckTarget.of(
            stage.env,
            stage.release.version,
            cohort,
            stage.deployer.current_versions(),
            stage.deployer.fleet,
            stage.metrics,
        )

    def _look(self, stage: _Stage, gate: Gate, target: CheckTarget) -> GateResult:
        """One look at the checks; what they saw is stored, and a check that does not apply
        is journaled once with why."""
        result = gate.evaluate(target)
        noted = gate.memory.setdefault("not_applicable", [])
        unseen = [r for r in result.not_applicable() if r.check not in noted]
        noted.extend(r.check for r in unseen)
        with self.store.transaction():
            self.store.save_check_memory(stage.run.id, gate.memory)
            for check in unseen:
                self.journal.record(
                    Event.CHECK_NOT_APPLICABLE,
                    f"{stage.spec.name}: {check.check} does not apply: {check.summary}",
                    release=stage.release.version,
                    stage=stage.spec.name,
                    environment=stage.env.name,
                    data={"check": check.check, "reason": check.summary},
                )
        return result

    @staticmethod
    def _scope(spec: StageSpec, env: Environment) -> list[Host]:
        """The hosts a stage deploys to: gray's cohort, or every host in a stable order."""
        if spec.name == "gray":
            return gray_cohort(env.name, env.hosts, spec.cohort)
        return stable_order(env.name, env.hosts)

    def _deploy_and_bake(self, stage: _Stage) -> None:
        spec, env, version = stage.spec, stage.env, stage.release.version
        current = stage.deployer.current_versions()
        scope = self._scope(spec, env)
        done = [h for h in scope if current[h.name] == version]
        waves = split_waves([h for h in scope if current[h.name] != version], spec.waves)
        gate = Gate(spec.checks, self.store.check_memory(stage.run.id))
        routes = stage.deployer.routes
        if routes is not None:  # by users: nobody on the new side before the first step
            routes.begin(version, current, 0.0 if spec.users else None)
        failed: dict[str, str] = {}
        for number, wave in enumerate(waves, 1):
            self.interrupts.check()
            self.journal.record(
                Event.WAVE_STARTED,
                f"{spec.name}: wave {number}/{len(waves)}: {version} to {len(wave)} host(s): "
                + ", ".join(h.name for h in wave[:12])
                + ("…" if len(wave) > 12 else ""),
                release=version,
                stage=spec.name,
                environment=env.name,
                data={"hosts": [h.name for h in wave]},
            )
            outcome = stage.deployer.deploy(stage.release, wave, stage.run.id, spec.name)
            failed.update(outcome.failed)
            done += [h for h in wave if h.name in outcome.ok]
            self.interrupts.check()
            if len(outcome.failed) > spec.max_failed_hosts or outcome.unknown:
                raise _StageFailure(
                    f"{len(outcome.failed)} host(s) of wave {number} failed (budget {spec.max_failed_hosts} per wave"
                    + (", and a host whose outcome is unknown is never within it" if outcome.unknown else "")
                    + "): "
                    + "; ".join(f"{host}: {why}" for host, why in sorted(outcome.failed.items())[:5])
                )
            if number < len(waves) and spec.checks:
                result = self._look(stage, gate, self._target(stage, done))
                self._record_checks(stage, result)
                if result.verdict is Verdict.FAIL:
                    raise _StageFailure(f"checks failed after wave {number}: {_failing(result)}")
        if failed:
            self.journal.record(
                Event.STAGE_DEGRADED,
                f"{spec.name}: {len(failed)} host(s) failed within the budget of {spec.max_failed_hosts} per wave; "
                f"{env.name} runs mixed versions until they are fixed: {', '.join(sorted(failed))}",
                release=version,
                stage=spec.name,
                environment=env.name,
                data={"failed": failed},
            )
        if routes is None or not spec.users:
            self._bake(stage, gate, done)
            return
        for number, share in enumerate(spec.users, 1):  # gray by users: each step baked and judged
            self.interrupts.check()
            routes.step(share, spec.allow, f"{spec.name} step {number}/{len(spec.users)}")
            self._bake(stage, gate, done)

    def _bake(self, stage: _Stage, gate: Gate, cohort: list[Host]) -> None:
        """Look at the checks every interval: fail at the first failing round; pass at the end of a
        fixed bake, or, with an adaptive one (`bake: {min, max}`), at the first round after
        `min` in which every check passed; a bake that ends undecided holds or fails safe."""
        from .report.timeline import record_if_due

        spec = stage.spec
        length = (
            f"{format_duration(spec.bake_min)} to {format_duration(spec.bake)}, until every check decides"
            if spec.adaptive
            else format_duration(spec.bake)
        )
        self.journal.record(
            Event.BAKE_STARTED,
            f"{spec.name}: baking {length}, checking {len(spec.checks)} check(s) every "
            f"{format_duration(spec.interval)} on {len(cohort)} host(s)",
            release=stage.release.version,
            stage=spec.name,
            environment=stage.env.name,
            data={"min": spec.bake_min if spec.adaptive else spec.bake, "max": spec.bake},
        )
        started = time.monotonic()
        deadline, earliest = started + spec.bake, started + (spec.bake_min if spec.adaptive else spec.bake)
        target = self._target(stage, cohort)
        forecast = ForecastNotes(gate.memory)
        while True:
            record_if_due(self.config, self.store)
            left = max(deadline - time.monotonic(), 0.0)
            result = self._look(stage, gate, replace(target, bake_left=left))
            if result.verdict is Verdict.FAIL:
                self._record_checks(stage, result)
                raise _StageFailure(f"checks failed: {_failing(result)}")
            self.journal.note(f"  checks: {result.verdict}: {result.summary()}", environment=stage.env.name)
            now = time.monotonic()
            if now >= deadline or (result.verdict is Verdict.PASS and now >= earliest):
                break
            for check in forecast.too_slow(result, deadline - now):
                self._forecast(stage, check, deadline - now)
            self.interrupts.wait(min(spec.interval, deadline - now))
        self._record_checks(stage, result)
        if result.verdict is Verdict.INCONCLUSIVE:
            unproven = _unproven(result, time.monotonic() - started)
            raise _Held(unproven) if spec.on_inconclusive == "hold" else _Unproven(unproven)

    def _forecast(self, stage: _Stage, check: CheckResult, left: float) -> None:
        """Say at once that a check will not decide before the bake ends, and what would help."""
        spec = stage.spec
        needs = (
            "no amount of traffic at the current rates decides it"
            if math.isinf(check.needs or 0.0)
            else f"it needs about {span(check.needs or 0.0)} more at the current rate"
        )
        ending = "hold (exit 5)" if spec.on_inconclusive == "hold" else "fail safe and roll back"
        self.journal.record(
            Event.BAKE_TOO_SHORT,
            f"{spec.name}: {check.check} will not decide in time: {needs}, but the bake ends in {span(left)}, "
            f"and an undecided bake would {ending}; to decide in time: {check.advice}",
            release=stage.release.version,
            stage=spec.name,
            environment=stage.env.name,
            data={
                "check": check.check,
                "needs_seconds": None if math.isinf(check.needs or 0.0) else round(check.needs or 0.0),
                "left_seconds": round(left),
                "summary": check.summary,
            },
        )

    def _hold(self, stage: _Stage, why: str) -> None:
        """Neither pass nor roll back: the hosts keep the release; promote again or roll back."""
        spec, version = stage.spec, stage.release.version
        with self.store.transaction():
            self.store.set_stage_run_status(stage.run.id, RunStatus.HELD, why)
            self.journal.record(
                Event.STAGE_HELD,
                f"{spec.name}: {version} held on {stage.env.name}, the checks could not decide: {why}",
                release=version,
                stage=spec.name,
                environment=stage.env.name,
                data={"reason": why},
            )
        raise Inconclusive(
            f"{spec.name} of {version} is held (inconclusive, nothing rolled back): {why}; run "
            f"`releaser promote {version} --to {spec.name}` to bake again, or `releaser rollback {stage.env.name}`"
        )

    def _record_checks(self, stage: _Stage, result: GateResult) -> None:
        self.journal.record(
            _CHECKED[result.verdict],
            f"{stage.spec.name}: checks {result.verdict}: {result.summary()}",
            release=stage.release.version,
            stage=stage.spec.name,
            environment=stage.env.name,
            data={"results": [r.to_dict() for r in result.results]},
        )

    def _pass(self, stage: _Stage, seconds: float) -> None:
        from .report.outbox import schedule as schedule_report

        spec, version = stage.spec, stage.release.version
        last = spec.name == self.config.pipeline[-1].name
        window_until = datetime.now(UTC) + timedelta(seconds=spec.rollback_window)
        with self.store.transaction():
            self.store.set_stage_run_status(stage.run.id, RunStatus.PASSED)
            self.store.set_release_status(version, ReleaseStatus.LIVE if last else ReleaseStatus.PROMOTING)
            self.journal.record(
                Event.STAGE_PASSED,
                f"{spec.name}: {version} passed on {stage.env.name} in {seconds:.1f}s"
                + (" — the release is live" if last else ""),
                release=version,
                stage=spec.name,
                environment=stage.env.name,
                data={
                    "run": stage.run.id,
                    "seconds": round(seconds, 3),
                    "rollback_window_until": window_until.isoformat(timespec="seconds"),
                },
            )
            if last:
                schedule_report(self.config, self.store, self.journal, version, stage.env.name)

    # -- failing: everything goes to the one rollback path --

    def _fail(self, stage: _Stage, why: str, cause: Cause) -> None:
        """Record the failure and roll the stage back. Always raises: StageFailed when every
        host serving the release was switched back, NeedsHuman when some could not be."""
        spec, env, version = stage.spec, stage.env, stage.release.version
        self.journal.record(
            Event.STAGE_FAILED,
            f"{spec.name}: {version} failed on {env.name}: {why}",
            release=version,
            stage=spec.name,
            environment=env.name,
            data={"reason": why, "cause": str(cause), "run": stage.run.id},
        )
        rollbacks = Rollbacks(self.store, self.journal, stage.deployer)
        rollback = rollbacks.begin(
            cause, [version], why, stage.lock.claim(), stage.run, fault_at=self._fault_at(stage.run)
        )
        self._conclude(rollbacks.carry_out(rollback), f"{spec.name} of {version} failed ({why})")

    def _fault_at(self, run: StageRun) -> str:
        """When a fault of this stage run could first be seen: its first switch (or, if no host
        switched, its start)."""
        for event in self.store.events(release=run.release):
            if event.kind == Event.SWITCH_STARTED and event.data.get("run") == f"stage-{run.id}":
                return event.ts
        return run.started_at

    def _conclude(self, result: RollbackResult, what: str) -> None:
        if result.complete:
            raise StageFailed(
                f"{what} and was rolled back ({len(result.switched)} host(s))"
                + (f"; {result.hosts_kept()}" if result.kept else "")
            )
        raise NeedsHuman(
            f"{what}; the rollback could not finish on {result.hosts_left()}; {result.rollback.environment} may run "
            "mixed versions (see `releaser status`): `releaser resume` finishes the rollback once they can be reached"
        )

    def roll_back_window(self, run: StageRun, why: str, fault_at: str, cause: Cause = Cause.WINDOW) -> RollbackResult:
        """Roll back a release whose stage passed (a check failed inside its rollback window, or an
        alert fired). Raises BusyError when the environment is locked."""
        env = self.config.environments[run.environment]
        with self._lock(env.name, f"watch: roll back {run.release}") as lock, self._fleet(env) as fleet:
            current = self.store.get_stage_run(run.id)
            if current is None or current.status is not RunStatus.PASSED:
                raise BusyError(f"run {run.id} is no longer passed ({current.status if current else 'gone'})")
            rollbacks = Rollbacks(self.store, self.journal, self._deployer(env, fleet))
            rollback = rollbacks.begin(cause, [run.release], why, lock.claim(), current, fault_at=fault_at)
            return rollbacks.carry_out(rollback)

    # -- recovery --

    def resume(self, roll_back: bool = False) -> list[StageRun]:
        """Finish every unfinished rollback, then finish (or, with roll_back, undo) every stage
        run whose process died. Never takes over a run whose owner is alive."""
        finished: list[StageRun] = []
        doubts: list[str] = []  # hosts the store cannot vouch for once recovered: no success
        for env in self.config.environments.values():
            rollbacks = [r for r in self.store.rollbacks(env.name) if r.status.open]
            runs = [r for r in self.store.stage_runs() if r.environment == env.name and r.status.open]
            if not rollbacks and not runs:
                held = self.store.get_lock(env.name)
                if held is not None and is_stale(held):
                    with self._lock(env.name, f"resume {env.name}"):  # a dead holder's lock is taken over, journaled
                        pass
                route = self.store.get_route(env.name) if env.router is not None else None
                if route is not None and not route["applied"]:  # a route the router refused, or never confirmed
                    with self.interrupts.armed(), self._lock(env.name, f"resume {env.name}"), self._fleet(env) as fleet:
                        routes = self._deployer(env, fleet).routes
                        if routes is not None:
                            routes.reapply()
                doubts += self._doubts(env)
                continue
            for item in [*rollbacks, *runs]:
                self._refuse_live_owner(item)
            with self.interrupts.armed(), self._lock(env.name, f"resume {env.name}") as lock, self._fleet(env) as fleet:
                deployer = self._deployer(env, fleet)
                if deployer.routes is not None:
                    deployer.routes.reapply()
                views = deployer.ask()
                pending: list[RollbackRun] = []
                for rollback in rollbacks:
                    self.store.claim_rollback(rollback.id, lock.claim())
                    pending.append(rollback)
                for run in runs:
                    self.store.claim_stage_run(run.id, lock.claim())
                    self.journal.record(
                        Event.STAGE_RESUMED,
                        f"{run.stage}: resuming the interrupted run {run.id} of {run.release} on "
                        f"{env.name}" + (" (rolling back)" if roll_back or run.status is not RunStatus.RUNNING else ""),
                        release=run.release,
                        stage=run.stage,
                        environment=env.name,
                        data={"run": run.id},
                    )
                    if any(r.stage_run_id == run.id for r in rollbacks):
                        continue
                    if run.status is RunStatus.RUNNING and not roll_back:
                        self._finish_run(run, env, deployer, lock, views or deployer.ask())
                        views = None  # hosts changed: ask again for what follows
                        finished.append(self.store.get_stage_run(run.id))
                        continue
                    why = (
                        run.reason
                        if run.status is not RunStatus.RUNNING and run.reason
                        else "interrupted; rolled back on request (`resume --rollback`)"
                    )
                    self.journal.record(
                        Event.STAGE_FAILED,
                        f"{run.stage}: {run.release} failed on {env.name}: {why}",
                        release=run.release,
                        stage=run.stage,
                        environment=env.name,
                        data={"reason": why, "cause": str(Cause.RESUME), "run": run.id},
                    )
                    pending.append(
                        Rollbacks(self.store, self.journal, deployer).begin(
                            Cause.RESUME, [run.release], why, lock.claim(), run, fault_at=self._fault_at(run)
                        )
                    )
                for rollback in pending:
                    result = Rollbacks(self.store, self.journal, deployer).carry_out(rollback, views)
                    views = None  # hosts changed: ask again for the next one
                    if rollback.stage_run_id:
                        finished.append(self.store.get_stage_run(rollback.stage_run_id))
                    what = f"{rollback.cause} rollback {rollback.id} of {', '.join(rollback.releases)} on {env.name}"
                    if not result.complete:
                        self._conclude(result, what)
                doubts += self._doubts(env)
        if doubts:
            raise NeedsHuman("resume could not vouch for every host: " + "; ".join(doubts))
        for run in finished:
            if run is not None and run.status is RunStatus.ROLLED_BACK:
                raise StageFailed(f"{run.stage} of {run.release} was rolled back on {run.environment}")
        return finished

    def _doubts(self, env: Environment) -> list[str]:
        """The hosts of `env` in doubt, each with why and the command that heals it."""
        doubt = {name: state for name, state in self.store.host_states(env.name).items() if state.doubt}
        if not doubt:
            return []
        return [
            f"{name} of {env.name} is in doubt ({state.doubt}): `releaser redeploy {env.name} --host {name} "
            f"--reason TEXT` puts it back on {state.version or 'nothing'} through the normal switch"
            for name, state in sorted(doubt.items())
        ]

    def abort(self, version: str, reason: str, by: str | None = None, wait: bool = True) -> StageRun | None:
        """Roll back the promotion of `version` in progress, whichever runner works on it: its
        process is asked (through the store) and rolls the stage back at its next safe point; a
        run whose process died is rolled back here. Approval requests still open are cancelled.
        Returns the run as it ended, or as it is when not `wait`ing for its runner (None when only
        requests were cancelled). `by`: who asks (default: whoever runs releaser)."""
        if not reason.strip():
            raise UsageError("abort needs --reason TEXT, which is journaled")
        by = by or whoami()
        self._release(version)
        cancelled = cancel_requests(self.store, self.journal, version, reason)
        runs = [r for r in self.store.stage_runs(version) if r.status.open]
        if not runs:
            if cancelled:
                return None
            raise UsageError(
                f"no promotion of {version} is in progress; `releaser rollback ENV --reason TEXT` "
                "rolls back a release that is out"
            )
        run = runs[-1]
        if owner_alive(run.pid, run.hostname, run.lease_until):
            with self.store.transaction():
                if not self.store.request_abort(run.id, by, reason):
                    raise Refused(
                        f"{run.stage} of {version} ended before the abort reached it "
                        f"({self.store.get_stage_run(run.id).status}); `releaser rollback {run.environment} "
                        "--reason TEXT` rolls back a release that is out"
                    )
                self.journal.record(
                    Event.ABORT_REQUESTED,
                    f"{run.stage}: {by} asks pid {run.pid} on "
                    f"{run.hostname} to roll {version} back on {run.environment}: {reason}",
                    release=version,
                    stage=run.stage,
                    environment=run.environment,
                    data={"run": run.id, "by": by, "reason": reason},
                )
            if not wait:
                return self.store.get_stage_run(run.id)
            while (current := self.store.get_stage_run(run.id)).status.open:
                if not owner_alive(current.pid, current.hostname, current.lease_until):
                    break  # its process died on the way: roll back here
                self.interrupts.wait(POLL)
            else:
                if current.status is RunStatus.PASSED:
                    raise Refused(
                        f"{run.stage} of {version} passed before the abort reached it; "
                        f"`releaser rollback {run.environment} --reason TEXT` rolls it back"
                    )
                return current
        self.journal.record(
            Event.ABORT_REQUESTED,
            f"{run.stage}: {by} rolls {version} back on {run.environment} (its runner is gone): {reason}",
            release=version,
            stage=run.stage,
            environment=run.environment,
            data={"run": run.id, "by": by, "reason": reason},
        )
        with contextlib.suppress(StageFailed):  # rolled back: what was asked
            self.resume(roll_back=True)
        return self.store.get_stage_run(run.id)

    def _finish_run(
        self, run: StageRun, env: Environment, deployer: Deployer, lock: EnvironmentLock, views: dict[str, HostView]
    ) -> None:
        release = self._release(run.release)
        verify_artifact(release)
        self._execute(
            _Stage(release, self.config.stage(run.stage), run, env, deployer, lock, source_for(env.metrics)), views
        )

    def _refuse_live_owner(self, item: StageRun | RollbackRun) -> None:
        if owner_alive(item.pid, item.hostname, item.lease_until):
            what = f"run {item.id}" if isinstance(item, StageRun) else f"rollback {item.id}"
            raise BusyError(
                f"{what} on {item.environment} is still being worked on by pid {item.pid} on {item.hostname}; "
                "resume never takes over a live run: wait for it, or stop that process first"
            )

    def rebuild(self) -> dict[str, dict[str, str | None]]:
        """Rebuild what every host runs from the hosts themselves (their `current`, records and
        apps), for a state database that was lost. Refuses while a host cannot be asked."""
        rebuilt: dict[str, dict[str, str | None]] = {}
        for env in self.config.environments.values():
            with self._lock(env.name, "state rebuild"), self._fleet(env) as fleet:
                deployer = self._deployer(env, fleet)
                views = deployer.ask_every_host("rebuild")
                deployer.reconcile(views)
                self.journal.record(
                    Event.STATE_REBUILT,
                    f"{env.name}: rebuilt from the hosts' own records",
                    environment=env.name,
                    data={"hosts": {n: v.current for n, v in views.items()}},
                )
                rebuilt[env.name] = {name: view.current for name, view in views.items()}
        return rebuilt

    def rollback(self, env_name: str, to_version: str | None, reason: str) -> dict[str, str]:
        """Roll an environment back by hand; returns {host: version switched to}."""
        env = self._rollback_environment(env_name, to_version)
        if not reason.strip():
            raise UsageError("rollback needs --reason TEXT, which is journaled")
        with self.interrupts.armed(), self._lock(env.name, f"rollback {env.name}") as lock, self._fleet(env) as fleet:
            for item in [*self.store.rollbacks(env.name), *self.store.stage_runs()]:
                if item.environment == env.name and item.status.open:
                    self._refuse_live_owner(item)
            deployer = self._deployer(env, fleet)
            views = deployer.ask_every_host("roll back")
            plan, releases = _manual_plan(env.name, views, to_version, self._known_bad())
            if not plan:
                self.journal.note(f"every host of {env.name} already runs {to_version}; nothing to do")
                return {}
            with self.store.transaction():
                for item in self.store.rollbacks(env.name):
                    if item.status.open:
                        self.store.update_rollback(item.id, status=RollbackStatus.SUPERSEDED)
                for run in self.store.stage_runs():
                    if run.environment == env.name and run.status.open:
                        self.store.set_stage_run_status(run.id, RunStatus.ROLLED_BACK, f"manual rollback: {reason}")
            rollbacks = Rollbacks(self.store, self.journal, deployer)
            record = rollbacks.begin(Cause.MANUAL, sorted(releases), reason, lock.claim(), target=to_version, plan=plan)
            result = rollbacks.carry_out(record, views)
            if not result.complete:
                self._conclude(result, f"manual rollback of {env.name}")
            return {h: plan[h] for h in result.switched}

    def redeploy(self, env_name: str, host_names: list[str], reason: str) -> dict[str, str]:
        """Put hosts back on what the store says they run, through the normal switch (restart,
        verify, the served version checked), journaled: the cure for a host in doubt. Without
        `host_names`, every host of the environment in doubt. Returns {host: release}."""
        env = self.config.environments.get(env_name)
        if env is None:
            raise UsageError(f"unknown environment {env_name!r} (known: {', '.join(self.config.environments)})")
        if not reason.strip():
            raise UsageError("redeploy needs --reason TEXT, which is journaled")
        known = {h.name for h in env.hosts}
        unknown = [name for name in host_names if name not in known]
        if unknown:
            raise UsageError(f"{', '.join(unknown)}: no such host in {env.name} (hosts: {', '.join(sorted(known))})")
        with self.interrupts.armed(), self._lock(env.name, f"redeploy {env.name}") as lock, self._fleet(env) as fleet:
            self._refuse_open_runs(env)
            states = self.store.host_states(env.name)
            chosen = host_names or [h.name for h in env.hosts if h.name in states and states[h.name].doubt]
            if not chosen:
                self.journal.note(f"no host of {env.name} is in doubt; name hosts with --host to redeploy them anyway")
                return {}
            never = [name for name in chosen if name not in states or states[name].version is None]
            if never:
                raise UsageError(
                    f"{', '.join(never)} of {env.name}: releaser has recorded no release there to "
                    "redeploy; promote a release instead"
                )
            targets = {name: states[name].version for name in chosen}
            run = f"redeploy-{int(time.time())}"
            self.journal.record(
                Event.REDEPLOY_STARTED,
                f"redeploying {len(targets)} host(s) of {env.name} onto what they should run "
                f"({', '.join(f'{h}: {v}' for h, v in sorted(targets.items()))}): {reason}",
                environment=env.name,
                data={"targets": targets, "reason": reason, "run": run, "by": lock.claim().owner},
            )
            deployer = self._deployer(env, fleet)
            releases = {v: r for v in set(targets.values()) if (r := self.store.get_release(v)) is not None}
            outcome = deployer.switch_back(targets, None, releases, None, run, action="redeploy")
            hosts = [h for h in env.hosts if h.name in targets]
            deployer.reconcile(deployer.ask(hosts))
            states = self.store.host_states(env.name)
            left = {**{name: states[name].doubt for name in targets if states[name].doubt}, **outcome.failed}
            self.journal.record(
                Event.REDEPLOY_FINISHED,
                f"redeployed {len(targets) - len(left)}/{len(targets)} host(s) of {env.name}"
                + (
                    f"; still in doubt or failed: {'; '.join(f'{h}: {w}' for h, w in sorted(left.items()))}"
                    if left
                    else ""
                ),
                environment=env.name,
                data={"targets": targets, "left": left, "run": run},
            )
            if left:
                raise NeedsHuman(
                    f"the redeploy could not heal {', '.join(sorted(left))} of {env.name}: "
                    + "; ".join(f"{h}: {w}" for h, w in sorted(left.items()))
                    + "; fix the host or its hooks (see `releaser history --env "
                    + f"{env.name}`), then `releaser redeploy {env.name} --reason TEXT` again"
                )
            return targets

    def rollback_plan(self, env_name: str, to_version: str | None) -> dict[str, dict[str, str | None]]:
        """What `rollback` would do, from asking the hosts, changing nothing (no lock, no journal):
        {host: {"runs": version, "to": version or None when it stays}}."""
        env = self._rollback_environment(env_name, to_version)
        with self._fleet(env) as fleet:
            views = self._deployer(env, fleet).ask_every_host("plan a rollback")
        plan, _releases = _manual_plan(env.name, views, to_version, self._known_bad())
        return {name: {"runs": view.current, "to": plan.get(name)} for name, view in views.items()}

    def _known_bad(self) -> set[str]:
        """Releases a rollback by hand never goes back to unless named: rolled back, or failed."""
        return {
            r.version
            for r in self.store.list_releases()
            if r.status in (ReleaseStatus.ROLLED_BACK, ReleaseStatus.FAILED)
        }

    def _rollback_environment(self, env_name: str, to_version: str | None):
        env = self.config.environments.get(env_name)
        if env is None:
            raise UsageError(f"unknown environment {env_name!r} (known: {', '.join(self.config.environments)})")
        if to_version is not None:
            self._release(to_version)
        if not self.store.host_states(env.name):
            raise UsageError(
                f"nothing to roll back on {env.name}: releaser has recorded no deployment there "
                "(if the state was lost, `releaser state rebuild` reads it back from the hosts)"
            )
        return env


def _manual_plan(
    env_name: str, views: dict, to_version: str | None, known_bad: set[str] = frozenset()
) -> tuple[dict[str, str], set[str]]:
    """({host: target}, the releases taken away) of a rollback by hand: every host back to the
    release it ran before its current one, passing over releases known bad (rolled back, or
    failed), or to `to_version`; one target for the environment."""
    plan, releases = {}, set()
    for name, view in views.items():
        for version in view.running:
            if version != to_version:
                releases.add(version)
        target = to_version or (view.previous(view.current) if view.current else None)
        seen = set()
        while to_version is None and target in known_bad and target not in seen:
            seen.add(target)
            target = view.previous(target)
        if target is None:
            raise UsageError(
                f"{name} has no earlier release on record"
                + (f" that was not rolled back ({', '.join(sorted(seen))} were)" if seen else "")
                + "; name one with --to VERSION"
            )
        if view.running - {target}:
            plan[name] = target
    if to_version is None and len(set(plan.values())) > 1:
        raise UsageError(
            f"the hosts of {env_name} would roll back to different releases "
            f"({', '.join(sorted(set(plan.values())))}); name one with --to VERSION"
        )
    return plan, releases - set(plan.values())


def _failing(result: GateResult) -> str:
    return "; ".join(f"{r.check}: {r.summary}" for r in result.failing())


def _unproven(result: GateResult, seconds: float) -> str:
    """Why a bake that ended undecided failed safe: how long it had, how long it needed, what
    would decide it."""
    undecided = [r for r in result.results if r.verdict is Verdict.INCONCLUSIVE]
    needs = [r.needs for r in undecided if r.needs is not None]
    needed = (
        ""
        if not needs
        else " (no amount of traffic at these rates would decide)"
        if math.isinf(max(needs))
        else f" (needed about {span(seconds + max(needs))})"
    )
    advice = "; ".join(f"{r.check}: {r.advice}" for r in undecided if r.advice)
    return f"not enough evidence in {span(seconds)}{needed}: {result.summary()}" + (
        f"; to decide in time: {advice}" if advice else ""
    )


class ForecastNotes:
    """Which checks were already said to be too slow for the bake, kept in the stage's check
    memory so a resumed stage does not say it twice."""

    def __init__(self, memory: dict):
        self.said: list[str] = memory.setdefault("too_slow", [])

    def too_slow(self, result: GateResult, left: float) -> list[CheckResult]:
        slow = [
            r
            for r in result.results
            if r.verdict is Verdict.INCONCLUSIVE and r.needs is not None and r.needs > left and r.check not in self.said
        ]
        self.said.extend(r.check for r in slow)
        return slow
