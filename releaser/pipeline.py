"""Promotion: stage by stage, deploy, check, bake, then pass, hold, or hand the failure to the
one rollback path (`rollback.py`).

An orchestrator over deploy (`deploy.py`) and the checks (`health/`). Every transition is
journaled before the action it announces and its outcome after; signals are read at safe
points (`interrupts.py`). Finishing a run whose process died is recovery's (`recovery.py`).
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import NoReturn

from .cohort import gray_cohort, split_waves, stable_order
from .decisions import AbortListener, approved
from .deploy import Deployer
from .errors import Inconclusive, NeedsHuman, Refused, UsageError
from .events import Event
from .health.base import CheckResult, CheckTarget, Verdict
from .health.gate import Gate, GateResult
from .hostrecord import HostView
from .interrupts import Interrupted
from .links import link_for, signs_here
from .metrics import MetricSource, source_for
from .model import Cause, Environment, Host, Release, ReleaseStatus, RunStatus, StageRun, StageSpec
from .operation import Held, Operation
from .preflight import check_hosts
from .processes import whoami
from .record import Record
from .releases import verify_artifact
from .rollback import Rollbacks
from .router.keeper import RouteRefused
from .schema import format_duration
from .terminal import span

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


class _SetupFailed(_StageFailure):
    """Raised when the environment failed before any host changed (the database's backup, the
    migration tool's `current`): the stage fails, no incident, no verdict on the release."""


class _Held(Exception):
    """Raised when the bake ends inconclusive and the stage is configured to hold."""


class _Stage(Record):
    """Everything one stage run works with."""

    release: Release
    spec: StageSpec
    run: StageRun
    held: Held  # the environment, locked, and a deployer over its hosts
    metrics: MetricSource | None = None  # the environment's metric source
    aborted: tuple[str, str] | None = None  # who asked `releaser abort`, and why

    @property
    def env(self) -> Environment:
        return self.held.env

    @property
    def deployer(self) -> Deployer:
        return self.held.deployer

    def abort(self, by: str, reason: str) -> None:
        self.aborted = (by, reason)


class Pipeline(Operation):
    # -- where a release stands --

    def passed_stages(self, version: str) -> set[str]:
        """Stages whose latest run passed (or was skipped), and whose environment has not rolled
        the release back since: after a rollback, promotion starts again from the first stage
        on that environment, never straight to `full`."""
        rolled_back: dict[str, str] = {}
        for rollback in self.store.rollbacks():
            if version in rollback.releases and rollback.cause.condemns:  # a drill undoes no stage
                rolled_back[rollback.environment] = max(rolled_back.get(rollback.environment, ""), rollback.started_at)
        latest: dict[str, RunStatus] = {}
        for run in self.store.stage_runs(version):
            undone = run.finished_at is not None and run.finished_at <= rolled_back.get(run.environment, "")
            latest[run.stage] = RunStatus.ROLLED_BACK if undone else run.status
        return {stage for stage, status in latest.items() if status in (RunStatus.PASSED, RunStatus.SKIPPED)}

    def next_stage(self, version: str) -> str | None:
        passed = self.passed_stages(version)
        return next((name for name in self.config.stage_names() if name not in passed), None)

    # -- promote and run --

    def promote(
        self,
        version: str,
        to_stage: str | None = None,
        force: bool = False,
        reason: str = "",
        wait: bool = False,
        ask_again: bool = False,
    ) -> StageRun | None:
        """Run one stage: the next one, or `to_stage`, which may skip stages (or a freeze) only when
        forced. A stage that needs approval asks for it and stops, or with `wait` waits for it.
        A signal from here on ends it like a failed stage (see interrupts.py)."""
        with self.interrupts.armed():
            return self._promote(version, to_stage, force, reason, wait, ask_again)

    def _promote(
        self, version: str, to_stage: str | None, force: bool, reason: str, wait: bool, ask_again: bool
    ) -> StageRun | None:
        release = self.release(version)
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
        runs_images = self.config.playbooks[env.playbook].container is not None
        if bool(release.image) != runs_images:
            playbook = self.config.playbooks[env.playbook].file
            raise UsageError(
                f"{version} is an image release but {env.name}'s playbook {playbook} has no `container:` to run it"
                if release.image
                else f"{env.name}'s playbook {playbook} runs container images (`container:`) but {version} is a "
                f"tarball; register the release with `releaser release create VERSION --image REGISTRY/NAME:TAG`"
            )
        if release.schema and self.config.playbooks[env.playbook].migrate is None:
            raise UsageError(
                f"{version} has schema steps (expand {release.schema.expand or '-'}, contract "
                f"{release.schema.contract or '-'}) but {env.name}'s playbook "
                f"{self.config.playbooks[env.playbook].file} has no `migrate:` to run them"
            )
        if release.image:
            from .appsecrets import registry_auth

            registry_auth(self.config.registry(release.image.split("/", 1)[0]))  # its credentials are set
        if env.artifacts == "pull" and not release.url and not release.image:
            raise UsageError(
                f"{env.name} has its hosts fetch artifacts (artifacts: pull) but {version} has no URL; "
                f"register it with `releaser release create {version} --artifact FILE --url URL`"
            )
        overridden = self._refuse_frozen(env, version, stage, force, reason)
        approval = approved(
            self.store,
            self.journal,
            spec,
            version,
            wait,
            self.interrupts,
            lambda request: self._approval_link(request, version, stage),
            ask_again,
        )
        if approval is not None and wait and not force:
            overridden |= self._refuse_frozen(env, version, stage, force, reason)  # one begun while it waited
        self.interrupts.check()
        with self.hold(env, f"promote {version} --to {stage}") as held:
            self.refuse_open_runs(env)
            self._refuse_crossing(held, release, stage, force, reason)
            deployer = held.deployer
            check_hosts(
                self.config, env, deployer.playbook, deployer.fleet, self._scope(spec, env), f"{stage} of {version}"
            )
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
                run = self.store.start_stage_run(  # the --force reason only where it forced something here
                    version,
                    stage,
                    env.name,
                    whoami(),
                    forced=bool(skipped),
                    reason=reason if skipped or overridden else "",
                    claim=held.lock.claim(),
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
            self._execute(_Stage(release, spec, run, held, source_for(env.metrics)))
        return self.store.get_stage_run(run.id)

    def run(
        self,
        version: str,
        to_stage: str | None = None,
        force: bool = False,
        reason: str = "",
        wait: bool = False,
        ask_again: bool = False,
    ) -> list[StageRun]:
        """Promote stage after stage through `to_stage` (default: the last one); `force` with a
        reason promotes through a freeze, `wait` waits for each approval a stage needs, `ask_again`
        asks anew for one that was rejected."""
        names = self.config.stage_names()
        to_stage = to_stage or names[-1]
        if to_stage not in names:
            raise UsageError(f"unknown stage {to_stage!r}: this pipeline runs {' -> '.join(names)}")
        runs = []
        with self.interrupts.armed():  # a signal between two stages stops before the next one starts
            while (stage := self.next_stage(version)) is not None and names.index(stage) <= names.index(to_stage):
                run = self.promote(version, stage, force=force, reason=reason, wait=wait, ask_again=ask_again)
                if run is not None:
                    runs.append(run)
        return runs

    # -- one stage --

    def _approval_link(self, request: int, version: str, stage: str) -> str | None:
        """The dashboard's link to an approval request; says so when, without the secret here, it
        can only be the release's page."""
        spec = self.config.dashboard
        address = link_for(spec, request, version, stage)
        if address and spec is not None and not signs_here(spec):
            self.journal.note(
                f"${spec.secret_env} is not set here: the approval link opens {version}'s page, not its request "
                "(set it as on the dashboard's servers)"
            )
        return address

    def _refuse_frozen(self, env: Environment, version: str, stage: str, force: bool, reason: str) -> bool:
        """A freeze refuses the promotion (exit 3), unless forced with a reason, which is journaled;
        True when it was forced through one."""
        if not self.config.freezes:
            return False
        from .freezes import frozen

        held = frozen(self.config.freezes, env.name)
        if held is None:
            return False
        if not force:
            raise Refused(
                f"{env.name} is frozen: {held.describe()} ({held.freeze.line}); promote after it, or "
                "pass --force --reason TEXT to override (journaled)"
            )
        held.overridden(self.journal, whoami(), "promotes", version, stage, env.name, reason)
        return True

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
        except _SetupFailed as exc:
            self._fail(stage, str(exc), Cause.SETUP)
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

    def _refuse_crossing(self, held: Held, release: Release, stage: str, force: bool, reason: str) -> None:
        """Refused (exit 3) before the stage starts, unless forced with a reason (journaled): an
        expand step that would run another release's contract step before its window closed."""
        if held.deployer.playbook.migrate is None:
            return
        from .database import Database

        why = Database.of(self, held).crossing(release)
        if why is None:
            return
        if not force:
            raise Refused(why)
        self.journal.record(
            Event.MIGRATION_FORCED,
            f"{stage}: {whoami()} promotes {release.version} on {held.env.name} past a contract step still waiting: "
            f"{reason} ({why})",
            release=release.version,
            stage=stage,
            environment=held.env.name,
            data={"by": whoami(), "reason": reason, "why": why},
        )

    def _expand(self, stage: _Stage) -> None:
        """The release's expand step, before its code reaches any host of the environment."""
        from .database import Database, StepFailed

        try:
            Database.of(self, stage.held).expand(stage.release, stage.spec.name, f"stage-{stage.run.id}")
        except StepFailed as exc:
            failed = _SetupFailed if exc.setup else _StageFailure
            raise failed(
                f"the database's expand step for {stage.release.version} failed before any host switched: {exc}"
            ) from None

    def _deploy_and_bake(self, stage: _Stage) -> None:
        spec, env, version = stage.spec, stage.env, stage.release.version
        if stage.deployer.playbook.migrate is not None:  # the version its code needs, before any host
            self._expand(stage)
            self.interrupts.check()
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
            if number < len(waves) and spec.checks and spec.wave_bake:
                self._bake(stage, gate, done, after_wave=f"{number}/{len(waves)}")
            elif number < len(waves) and spec.checks:
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

    def _bake(self, stage: _Stage, gate: Gate, cohort: list[Host], after_wave: str = "") -> None:
        """Look at the checks every interval: fail at the first failing round; pass at the end of a
        fixed bake, or, with an adaptive one (`bake: {min, max}`), at the first round after
        `min` in which every check passed; a bake that ends undecided holds or fails safe.
        `after_wave` ("1/3"): the stage's `wave_bake` between two waves, a fixed one."""
        from .report.timeline import record_if_due

        spec = stage.spec
        if after_wave:
            shortest = longest = spec.wave_bake
            length = f"{format_duration(longest)} after wave {after_wave}"
        else:
            longest, shortest = spec.bake, spec.bake if spec.bake_min is None else spec.bake_min
            length = (
                f"{format_duration(shortest)} to {format_duration(longest)}, until every check decides"
                if spec.adaptive
                else format_duration(longest)
            )
        self.journal.record(
            Event.BAKE_STARTED,
            f"{spec.name}: baking {length}, checking {len(spec.checks)} check(s) every "
            f"{format_duration(spec.interval)} on {len(cohort)} host(s)",
            release=stage.release.version,
            stage=spec.name,
            environment=stage.env.name,
            data={"min": shortest, "max": longest, **({"after_wave": after_wave} if after_wave else {})},
        )
        started = time.monotonic()
        deadline, earliest = started + longest, started + shortest
        target = self._target(stage, cohort)
        forecast = ForecastNotes(gate.memory, after_wave)
        while True:
            record_if_due(self.config, self.store)
            left = max(deadline - time.monotonic(), 0.0)
            result = self._look(stage, gate, replace(target, bake_left=left))
            if result.verdict is Verdict.FAIL:
                self._record_checks(stage, result)
                raise _StageFailure(
                    f"checks failed{f' after wave {after_wave}' if after_wave else ''}: {_failing(result)}"
                )
            self.journal.note(f"  checks: {result.verdict}: {result.summary()}", environment=stage.env.name)
            now = time.monotonic()
            if now >= deadline or (result.verdict is Verdict.PASS and now >= earliest):
                break
            self._record_checks(stage, result, shown=False)  # kept, not shown again: the dashboard draws each look
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
            "at the current rates it never decides (no traffic comes in, or no count separates these ratios)"
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

    def _record_checks(self, stage: _Stage, result: GateResult, shown: bool = True) -> None:
        (self.journal.record if shown else self.journal.keep)(
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

    def _fail(self, stage: _Stage, why: str, cause: Cause) -> NoReturn:
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
        Rollbacks.like(self).after_failure(stage.held, stage.run, cause, why)

    # -- a run whose process died --

    def go_on(self, run: StageRun, held: Held, views: dict[str, HostView]) -> None:
        """Finish the stage run an interrupted process left, from what the hosts said (`views`)."""
        release = self.release(run.release)
        verify_artifact(release)
        self._execute(_Stage(release, self.config.stage(run.stage), run, held, source_for(held.env.metrics)), views)


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
        else " (at these rates it never decides: no traffic came in, or no count separates these ratios)"
        if math.isinf(max(needs))
        else f" (needed about {span(seconds + max(needs))})"
    )
    advice = "; ".join(f"{r.check}: {r.advice}" for r in undecided if r.advice)
    return f"not enough evidence in {span(seconds)}{needed}: {result.summary()}" + (
        f"; to decide in time: {advice}" if advice else ""
    )


class ForecastNotes:
    """Which checks were already said to be too slow for the bake (each bake between waves, and
    the stage's own), kept in the stage's check memory so a resumed stage does not say it twice."""

    def __init__(self, memory: dict, after_wave: str = ""):
        self.said: list[str] = memory.setdefault("too_slow" + (f" after wave {after_wave}" if after_wave else ""), [])

    def too_slow(self, result: GateResult, left: float) -> list[CheckResult]:
        slow = [
            r
            for r in result.results
            if r.verdict is Verdict.INCONCLUSIVE and r.needs is not None and r.needs > left and r.check not in self.said
        ]
        self.said.extend(r.check for r in slow)
        return slow
