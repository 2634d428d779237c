"""The promotion state machine: stage by stage, deploy, check, bake, pass or roll back.

Every transition is journaled before the action it announces and its outcome after;
`resume` picks up a run whose process died, from what the hosts really run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable

from .cohort import gray_cohort, split_waves, stable_order
from .deploy import Deployer
from .errors import Inconclusive, NeedsHuman, StageFailed, UsageError
from .fleet import Fleet, HostResult, TickFn
from .health.base import CheckTarget, Verdict
from .health.gate import Gate, GateResult
from .health.sources import source_for
from .journal import Journal
from .locks import EnvironmentLock, whoami
from .model import Config, Environment, Host, Release, ReleaseStatus, RunStatus, StageRun, StageSpec
from .releases import verify_artifact
from .report.outbox import schedule as schedule_report
from .report.timeline import record_if_due
from .schema import format_duration
from .store import Store
from .transport import Transport, transport_for


class _StageFailure(Exception):
    """Raised inside a stage to send it to rollback; never leaves this module."""


class _Held(Exception):
    """Raised when the bake ends inconclusive and the stage is configured to hold."""


@dataclass
class _Stage:
    """Everything one stage run works with."""

    release: Release
    spec: StageSpec
    run: StageRun
    env: Environment
    deployer: Deployer
    metrics: object | None = None  # the environment's metric source


class Pipeline:
    def __init__(
        self,
        config: Config,
        store: Store,
        journal: Journal,
        sleep: Callable[[float], None] = time.sleep,
        transports: Callable[..., Transport] = transport_for,
        tick: TickFn | None = None,
    ):
        self.config, self.store, self.journal = config, store, journal
        self.sleep = sleep
        self.transports = transports
        self.tick = tick

    # -- where a release stands --

    def passed_stages(self, version: str) -> set[str]:
        latest: dict[str, RunStatus] = {}
        for run in self.store.stage_runs(version):
            latest[run.stage] = run.status
        return {stage for stage, status in latest.items() if status in (RunStatus.PASSED, RunStatus.SKIPPED)}

    def next_stage(self, version: str) -> str | None:
        passed = self.passed_stages(version)
        return next((name for name in self.config.stage_names() if name not in passed), None)

    def _release(self, version: str) -> Release:
        release = self.store.get_release(version)
        if release is None:
            raise UsageError(f"unknown release {version!r}: register it with `releaser release create {version} --artifact FILE`")
        return release

    # -- promote and run --

    def promote(self, version: str, to_stage: str | None = None, force: bool = False, reason: str = "") -> StageRun | None:
        """Run one stage: the next one, or `to_stage`, which may skip stages only when forced."""
        release = self._release(version)
        names = self.config.stage_names()
        if to_stage is not None and to_stage not in names:
            raise UsageError(f"unknown stage {to_stage!r}: this pipeline runs {' -> '.join(names)}")
        if force and not reason.strip():
            raise UsageError("--force needs --reason TEXT, which is journaled")
        if release.status is ReleaseStatus.FAILED:
            raise NeedsHuman(
                f"{version} failed to roll back earlier; check `releaser status` and fix the hosts with "
                f"`releaser rollback ENV --reason TEXT` before promoting it again"
            )
        following = self.next_stage(version)
        stage = to_stage or following
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
        with self._lock(env.name, f"promote {version} --to {stage}"):
            self._refuse_open_runs(env)
            with self.store.transaction():
                for name in skipped:
                    self.store.start_stage_run(version, name, self.config.stage(name).environment, whoami(),
                                               RunStatus.SKIPPED, forced=True, reason=reason)
                    self.journal.record("stage.skipped", f"{name} skipped for {version} (forced): {reason}",
                                        release=version, stage=name, data={"reason": reason})
                run = self.store.start_stage_run(version, stage, env.name, whoami(), forced=bool(skipped), reason=reason)
                self.store.set_release_status(version, ReleaseStatus.PROMOTING)
                self.journal.record(
                    "stage.started", f"{stage}: promoting {version} on {env.name}", release=version, stage=stage,
                    environment=env.name, data={"run": run.id, "forced": bool(skipped)},
                )
            self._execute(release, spec, run, env)
        return self.store.get_stage_run(run.id)

    def run(self, version: str, to_stage: str | None = None) -> list[StageRun]:
        """Promote stage after stage through `to_stage` (default: the last one)."""
        names = self.config.stage_names()
        to_stage = to_stage or names[-1]
        if to_stage not in names:
            raise UsageError(f"unknown stage {to_stage!r}: this pipeline runs {' -> '.join(names)}")
        runs = []
        while (stage := self.next_stage(version)) is not None and names.index(stage) <= names.index(to_stage):
            runs.append(self.promote(version, stage))
        return runs

    # -- one stage --

    def _lock(self, environment: str, command: str) -> EnvironmentLock:
        return EnvironmentLock(self.store, self.journal, environment, command)

    def _refuse_open_runs(self, env: Environment) -> None:
        for run in self.store.stage_runs():
            if run.environment == env.name and run.status.open:
                raise NeedsHuman(
                    f"{run.stage} of {run.release} on {env.name} was interrupted (run {run.id}, {run.status}); "
                    "run `releaser resume` to finish or roll it back first"
                )

    def _fleet(self, env: Environment) -> Fleet:
        def notify(kind: str, message: str, data: dict) -> None:
            self.journal.record(kind, message, environment=env.name, host=data.get("host"), data=data)

        return Fleet(env, self.transports(env, notify), progress=self._phase_progress(env), tick=self.tick)

    def _phase_progress(self, env: Environment):
        def report(phase: str, results: dict[str, HostResult], seconds: float) -> None:
            ok = sum(1 for r in results.values() if r.ok)
            failed = [name for name, r in results.items() if not r.ok]
            text = f"  {phase}: {ok}/{len(results)} hosts ok in {seconds:.2f}s"
            if failed:
                text += f" (failed: {', '.join(sorted(failed)[:10])}{'…' if len(failed) > 10 else ''})"
            self.journal.note(text, environment=env.name)

        return report

    def _execute(self, release: Release, spec: StageSpec, run: StageRun, env: Environment, resumed: bool = False,
                 roll_back: str | None = None) -> None:
        with self._fleet(env) as fleet:
            playbook = self.config.playbooks[env.playbook]
            stage = _Stage(release, spec, run, env, Deployer(env, playbook, self.store, self.journal, fleet),
                           source_for(env.metrics))
            if resumed:
                self._reconcile(stage.deployer, run)
            started = time.monotonic()
            try:
                if roll_back is not None:
                    raise _StageFailure(roll_back)
                self._deploy_and_bake(stage)
            except _Held as held:
                self._hold(stage, str(held))
            except (_StageFailure, KeyboardInterrupt) as exc:
                why = str(exc) if isinstance(exc, _StageFailure) else f"interrupted ({exc or 'SIGINT'})"
                self._roll_back_stage(stage, why, started)
            self._pass(stage, time.monotonic() - started)

    def _target(self, stage: _Stage, cohort: list[Host]) -> CheckTarget:
        return CheckTarget.of(stage.env, stage.release.version, cohort, stage.deployer.fleet, stage.metrics)

    def _deploy_and_bake(self, stage: _Stage) -> None:
        spec, env, version = stage.spec, stage.env, stage.release.version
        current = stage.deployer.current_versions()
        scope = gray_cohort(env.name, env.hosts, spec.cohort) if spec.name == "gray" else stable_order(env.name, env.hosts)
        done = [h for h in scope if current[h.name] == version]
        waves = split_waves([h for h in scope if current[h.name] != version], spec.waves)
        gate = Gate(spec.checks)
        failed: dict[str, str] = {}
        for number, wave in enumerate(waves, 1):
            self.journal.record(
                "wave.started",
                f"{spec.name}: wave {number}/{len(waves)}: {version} to {len(wave)} host(s): "
                + ", ".join(h.name for h in wave[:12]) + ("…" if len(wave) > 12 else ""),
                release=version, stage=spec.name, environment=env.name, data={"hosts": [h.name for h in wave]},
            )
            outcome = stage.deployer.deploy(stage.release, wave, stage.run.id, spec.name)
            failed.update(outcome.failed)
            done += [h for h in wave if h.name in outcome.ok]
            if len(outcome.failed) > spec.max_failed_hosts:
                raise _StageFailure(
                    f"{len(outcome.failed)} host(s) of wave {number} failed (budget {spec.max_failed_hosts} per wave): "
                    + "; ".join(f"{host}: {why}" for host, why in sorted(outcome.failed.items())[:5])
                )
            if number < len(waves) and spec.checks:
                result = gate.evaluate(self._target(stage, done))
                self._record_checks(stage, result)
                if result.verdict is Verdict.FAIL:
                    raise _StageFailure(f"checks failed after wave {number}: {_failing(result)}")
        if failed:
            self.journal.record(
                "stage.degraded",
                f"{spec.name}: {len(failed)} host(s) failed within the budget of {spec.max_failed_hosts} per wave; "
                f"{env.name} runs mixed versions until they are fixed: {', '.join(sorted(failed))}",
                release=version, stage=spec.name, environment=env.name, data={"failed": failed},
            )
        self._bake(stage, gate, done)

    def _bake(self, stage: _Stage, gate: Gate, cohort: list[Host]) -> None:
        spec = stage.spec
        self.journal.record(
            "bake.started",
            f"{spec.name}: baking {format_duration(spec.bake)}, checking {len(spec.checks)} check(s) every "
            f"{format_duration(spec.interval)} on {len(cohort)} host(s)",
            release=stage.release.version, stage=spec.name, environment=stage.env.name,
        )
        deadline = time.monotonic() + spec.bake
        target = self._target(stage, cohort)
        while True:
            record_if_due(self.config, self.store)
            result = gate.evaluate(target)
            if result.verdict is Verdict.FAIL:
                self._record_checks(stage, result)
                raise _StageFailure(f"checks failed: {_failing(result)}")
            self.journal.note(f"  checks: {result.verdict}: {result.summary()}", environment=stage.env.name)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self.sleep(min(spec.interval, remaining))
        self._record_checks(stage, result)
        if result.verdict is Verdict.INCONCLUSIVE:
            if spec.on_inconclusive == "hold":
                raise _Held(result.summary())
            raise _StageFailure(f"checks still inconclusive when the bake ended (fail safe): {result.summary()}")

    def _hold(self, stage: _Stage, why: str) -> None:
        """Neither pass nor roll back: the hosts keep the release; promote again or roll back."""
        spec, version = stage.spec, stage.release.version
        with self.store.transaction():
            self.store.set_stage_run_status(stage.run.id, RunStatus.HELD, why)
            self.journal.record(
                "stage.held",
                f"{spec.name}: {version} held on {stage.env.name}, the checks could not decide: {why}",
                release=version, stage=spec.name, environment=stage.env.name, data={"reason": why},
            )
        raise Inconclusive(
            f"{spec.name} of {version} is held (inconclusive, nothing rolled back): {why}; run "
            f"`releaser promote {version} --to {spec.name}` to bake again, or `releaser rollback {stage.env.name}`"
        )

    def _record_checks(self, stage: _Stage, result: GateResult) -> None:
        self.journal.record(
            "checks." + str(result.verdict), f"{stage.spec.name}: checks {result.verdict}: {result.summary()}",
            release=stage.release.version, stage=stage.spec.name, environment=stage.env.name,
            data={"results": [r.to_dict() for r in result.results]},
        )

    def _pass(self, stage: _Stage, seconds: float) -> None:
        spec, version = stage.spec, stage.release.version
        last = spec.name == self.config.pipeline[-1].name
        window_until = datetime.now(timezone.utc) + timedelta(seconds=spec.rollback_window)
        with self.store.transaction():
            self.store.set_stage_run_status(stage.run.id, RunStatus.PASSED)
            self.store.set_release_status(version, ReleaseStatus.LIVE if last else ReleaseStatus.PROMOTING)
            self.journal.record(
                "stage.passed",
                f"{spec.name}: {version} passed on {stage.env.name} in {seconds:.1f}s"
                + (" — the release is live" if last else ""),
                release=version, stage=spec.name, environment=stage.env.name,
                data={"run": stage.run.id, "seconds": round(seconds, 3),
                      "rollback_window_until": window_until.isoformat(timespec="seconds")},
            )
            if last:
                schedule_report(self.config, self.store, self.journal, version, stage.env.name)

    def _roll_back_stage(self, stage: _Stage, why: str, started: float) -> None:
        """Roll every host of the environment that runs the release back to its previous one.
        Always raises: StageFailed when the rollback worked, NeedsHuman when it did not."""
        spec, env, version = stage.spec, stage.env, stage.release.version
        detected = time.monotonic()
        with self.store.transaction():
            self.store.set_stage_run_status(stage.run.id, RunStatus.ROLLING_BACK, why)
            self.journal.record("stage.failed", f"{spec.name}: {version} failed on {env.name}: {why}",
                                release=version, stage=spec.name, environment=env.name, data={"reason": why})
        states = self.store.host_states(env.name)
        targets, stuck = {}, []
        for host in env.hosts:
            state = states.get(host.name)
            if state is None or state.version != version:
                continue
            if state.previous:
                targets[host.name] = state.previous
            else:
                stuck.append(host.name)
        releases = {v: self.store.get_release(v) for v in set(targets.values())}
        self.journal.record(
            "rollback.started",
            f"{spec.name}: rolling back {len(targets)} host(s) of {env.name} to "
            f"{', '.join(sorted(set(targets.values()))) or 'nothing'}",
            release=version, stage=spec.name, environment=env.name, data={"targets": targets},
        )
        outcome = stage.deployer.switch_back(targets, stage.run.id, releases, spec.name)
        failed = {**outcome.failed, **{h: "no earlier release to roll back to" for h in stuck}}
        seconds = time.monotonic() - detected
        if failed:
            with self.store.transaction():
                self.store.set_stage_run_status(stage.run.id, RunStatus.ROLLBACK_FAILED)
                self.store.set_release_status(version, ReleaseStatus.FAILED)
                self.journal.record(
                    "rollback.failed",
                    f"{spec.name}: rollback failed on {len(failed)} host(s) of {env.name}: "
                    + "; ".join(f"{h}: {w}" for h, w in sorted(failed.items())),
                    release=version, stage=spec.name, environment=env.name, data={"failed": failed},
                )
            raise NeedsHuman(
                f"{spec.name} of {version} failed ({why}) and the rollback failed on {', '.join(sorted(failed))}; "
                f"{env.name} may run mixed versions (see `releaser status`); fix the hosts, then run "
                f"`releaser rollback {env.name} --to VERSION --reason TEXT`"
            )
        with self.store.transaction():
            self.store.set_stage_run_status(stage.run.id, RunStatus.ROLLED_BACK)
            self.store.set_release_status(version, ReleaseStatus.ROLLED_BACK)
            self.journal.record(
                "rollback.done",
                f"{spec.name}: rolled back {len(outcome.ok)} host(s) of {env.name} in {seconds:.1f}s",
                release=version, stage=spec.name, environment=env.name,
                data={"hosts": outcome.ok, "seconds": round(seconds, 3)},
            )
            if stage.run.status is not RunStatus.PASSED:  # a window's incident is recorded by the watcher
                self.journal.record(
                    "incident",
                    f"{spec.name}: {version} on {env.name}: detected {detected - started:.1f}s after the stage "
                    f"started, rolled back in {seconds:.1f}s",
                    release=version, stage=spec.name, environment=env.name,
                    data={"time_to_detect": round(detected - started, 3), "time_to_rollback": round(seconds, 3),
                          "within_window": True, "reason": why},
                )
        raise StageFailed(f"{spec.name} of {version} failed and was rolled back: {why}")

    # -- recovery --

    def _reconcile(self, deployer: Deployer, run: StageRun | None = None) -> None:
        """Make the store agree with what the hosts really run."""
        env = deployer.env
        actual = deployer.probe()
        with self.store.transaction():
            if run is not None:
                for dep in self.store.deployments(stage_run_id=run.id):
                    if dep.status in ("preparing", "switching") and not isinstance(actual.get(dep.host), Exception):
                        really = actual.get(dep.host)
                        status = "switched" if really == dep.to_version else "failed"
                        self.store.update_deployment(dep.id, status, f"interrupted; the host runs {really or 'nothing'}")
            states = self.store.host_states(env.name)
            for name, value in actual.items():
                if isinstance(value, Exception):
                    self.journal.record("reconcile.unreachable", f"{name}: cannot read what it runs: {value}",
                                        environment=env.name, host=name)
                    continue
                believed = states[name].version if name in states else None
                if value != believed:
                    previous = deployer.previous_good(name, value) if value else None
                    self.store.set_host_state(env.name, name, value, previous)
                    self.journal.record(
                        "reconcile.corrected", f"{name}: the store said {believed or 'nothing'}, the host runs "
                        f"{value or 'nothing'}", environment=env.name, host=name,
                        data={"believed": believed, "actual": value},
                    )

    def roll_back_passed(self, run: StageRun, why: str) -> None:
        """Roll back a release whose stage passed (a check failed inside its rollback window).
        Raises StageFailed when done, NeedsHuman when the rollback failed, BusyError when locked."""
        release = self._release(run.release)
        spec = self.config.stage(run.stage)
        env = self.config.environments[run.environment]
        with self._lock(env.name, f"watch: roll back {run.release}"), self._fleet(env) as fleet:
            playbook = self.config.playbooks[env.playbook]
            stage = _Stage(release, spec, run, env, Deployer(env, playbook, self.store, self.journal, fleet),
                           source_for(env.metrics))
            self._roll_back_stage(stage, why, time.monotonic())

    def resume(self, roll_back: bool = False) -> list[StageRun]:
        """Finish (or, with roll_back, undo) every stage run whose process died."""
        finished = []
        for run in [r for r in self.store.stage_runs() if r.status.open]:
            release = self._release(run.release)
            spec = self.config.stage(run.stage)
            env = self.config.environments[run.environment]
            with self._lock(env.name, f"resume {run.release} {run.stage}"):
                current = self.store.get_stage_run(run.id)
                if current is None or not current.status.open:
                    continue
                finishing_rollback = current.status is RunStatus.ROLLING_BACK
                self.journal.record(
                    "stage.resumed",
                    f"{run.stage}: resuming the interrupted run {run.id} of {run.release} on {env.name}"
                    + (" (rolling back)" if finishing_rollback or roll_back else ""),
                    release=run.release, stage=run.stage, environment=env.name, data={"run": run.id},
                )
                why = None
                if finishing_rollback:
                    why = current.reason or "finishing an interrupted rollback"
                elif roll_back:
                    why = "interrupted; rolled back on request (`resume --rollback`)"
                else:
                    verify_artifact(release)
                self._execute(release, spec, current, env, resumed=True, roll_back=why)
            finished.append(self.store.get_stage_run(run.id))
        return finished

    def rollback(self, env_name: str, to_version: str | None, reason: str) -> dict[str, str]:
        """Roll an environment back by hand; returns {host: version switched to}."""
        env = self.config.environments.get(env_name)
        if env is None:
            raise UsageError(f"unknown environment {env_name!r} (known: {', '.join(self.config.environments)})")
        if not reason.strip():
            raise UsageError("rollback needs --reason TEXT, which is journaled")
        if to_version is not None:
            self._release(to_version)
        with self._lock(env.name, f"rollback {env.name}"), self._fleet(env) as fleet:
            deployer = Deployer(env, self.config.playbooks[env.playbook], self.store, self.journal, fleet)
            self._reconcile(deployer)
            states = self.store.host_states(env.name)
            targets, current = {}, {}
            for host in env.hosts:
                state = states.get(host.name)
                current[host.name] = state.version if state else None
                target = to_version or (state.previous if state else None)
                if target is None:
                    raise UsageError(f"{host.name} has no earlier release on record; name one with --to VERSION")
                if target != current[host.name]:
                    targets[host.name] = target
            if to_version is None and len(set(targets.values())) > 1:
                raise UsageError(
                    f"the hosts of {env.name} would roll back to different releases "
                    f"({', '.join(sorted(set(targets.values())))}); name one with --to VERSION"
                )
            if not targets:
                self.journal.note(f"every host of {env.name} already runs {to_version}; nothing to do")
                return {}
            left = sorted({current[h] for h in targets if current[h]})
            with self.store.transaction():
                for run in self.store.stage_runs():
                    if run.environment == env.name and run.status.open:
                        self.store.set_stage_run_status(run.id, RunStatus.ROLLED_BACK, f"manual rollback: {reason}")
                self.journal.record(
                    "rollback.started",
                    f"manual rollback of {len(targets)} host(s) of {env.name} from {', '.join(left) or 'nothing'} "
                    f"to {', '.join(sorted(set(targets.values())))}: {reason}",
                    environment=env.name, data={"targets": targets, "reason": reason, "manual": True},
                )
            releases = {v: self._release(v) for v in set(targets.values())}
            outcome = deployer.switch_back(targets, None, releases, None)
            with self.store.transaction():
                for version in left:
                    if version not in targets.values():
                        self.store.set_release_status(version, ReleaseStatus.ROLLED_BACK)
                kind = "rollback.failed" if outcome.failed else "rollback.done"
                self.journal.record(
                    kind,
                    f"manual rollback of {env.name}: {len(outcome.ok)} host(s) switched"
                    + (f", {len(outcome.failed)} failed: {', '.join(sorted(outcome.failed))}" if outcome.failed else ""),
                    environment=env.name, data={"ok": outcome.ok, "failed": outcome.failed},
                )
            if outcome.failed:
                raise NeedsHuman(
                    f"rollback failed on {', '.join(sorted(outcome.failed))}; {env.name} runs mixed versions "
                    "(see `releaser status`)"
                )
            return {h: targets[h] for h in outcome.ok}


def _failing(result: GateResult) -> str:
    return "; ".join(f"{r.check}: {r.summary}" for r in result.failing())
