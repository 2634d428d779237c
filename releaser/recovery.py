"""Recovery: finish what a process that died left (`resume`), roll back a promotion from any
runner (`abort`), rebuild the state from the hosts' own records (`state rebuild`), and put hosts
in doubt back on what they should run (`redeploy`).

Recovery never takes over a run whose owner is alive. It finishes a stage through promotion
(`pipeline.py`) and rolls back through the one rollback path (`rollback.py`).
"""

from __future__ import annotations

import contextlib
import time

from .decisions import POLL, cancel_requests
from .errors import NeedsHuman, Refused, StageFailed, UsageError
from .events import Event
from .hostrecord import HostView
from .model import Cause, DeployAction, Environment, MigrationStatus, RollbackRun, RunStatus, StageRun
from .operation import Operation
from .pipeline import Pipeline
from .processes import is_stale, owner_alive, whoami
from .rollback import Rollbacks, conclude, fault_seen_at


class Recovery(Operation):
    finished_other: list[str]  # what `resume` finished besides stage runs (rollbacks, schema steps), in words

    def resume(self, roll_back: bool = False) -> list[StageRun]:
        """Finish every unfinished rollback, then finish (or, with roll_back, undo) every stage
        run whose process died. Never takes over a run whose owner is alive."""
        finished: list[StageRun] = []
        self.finished_other = []
        doubts: list[str] = []  # hosts the store cannot vouch for once recovered: no success
        rollback_path = Rollbacks.like(self)
        for env in self.config.environments.values():
            rollbacks = [r for r in self.store.rollbacks(env.name) if r.status.open]
            runs = [r for r in self.store.stage_runs() if r.environment == env.name and r.status.open]
            if not rollbacks and not runs:
                stale = self.store.get_lock(env.name)
                if stale is not None and is_stale(stale):
                    with self.lock(env.name, f"resume {env.name}"):  # a dead holder's lock is taken over, journaled
                        pass
                route = self.store.get_route(env.name) if env.router is not None else None
                if route is not None and not route["applied"]:  # a route the router refused, or never confirmed
                    with self.hold(env, f"resume {env.name}", armed=True) as held:
                        if held.deployer.routes is not None:
                            held.deployer.routes.reapply()
                doubts += self._doubts(env) + self._cut_short_step(env)
                continue
            unfinished: list[RollbackRun | StageRun] = [*rollbacks, *runs]
            for item in unfinished:
                self.refuse_live_owner(item)
            with self.hold(env, f"resume {env.name}", armed=True) as held:
                deployer, claim = held.deployer, held.lock.claim()
                if deployer.routes is not None:
                    deployer.routes.reapply()
                views: dict[str, HostView] | None = deployer.ask()
                pending: list[RollbackRun] = []
                for rollback in rollbacks:
                    self.store.claim_rollback(rollback.id, claim)
                    pending.append(rollback)
                for run in runs:
                    self.store.claim_stage_run(run.id, claim)
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
                        Pipeline.like(self).go_on(run, held, views or deployer.ask())
                        views = None  # hosts changed: ask again for what follows
                        finished.append(self._run(run.id))
                        continue
                    cause = Cause.ABORT if run.abort_by else Cause.RESUME  # an abort whose runner was gone
                    if run.status is not RunStatus.RUNNING and run.reason:
                        why = run.reason
                    elif run.abort_by:
                        why = f"aborted by {run.abort_by}: {run.abort_reason}"
                    else:
                        why = "interrupted; rolled back on request (`resume --rollback`)"
                    self.journal.record(
                        Event.STAGE_FAILED,
                        f"{run.stage}: {run.release} failed on {env.name}: {why}",
                        release=run.release,
                        stage=run.stage,
                        environment=env.name,
                        data={"reason": why, "cause": str(cause), "run": run.id},
                    )
                    fault = fault_seen_at(self.store, run)
                    pending.append(rollback_path.begin(held, cause, [run.release], why, run, fault_at=fault))
                for rollback in pending:
                    result = rollback_path.carry_out(held, rollback, views)
                    views = None  # hosts changed: ask again for the next one
                    if rollback.stage_run_id:
                        finished.append(self._run(rollback.stage_run_id))
                    what = f"{rollback.cause} rollback {rollback.id} of {', '.join(rollback.releases)} on {env.name}"
                    if not result.complete:
                        conclude(result, what)
                    if not rollback.stage_run_id:
                        self.finished_other.append(f"finished {what}")
                doubts += self._doubts(env)
        if doubts:
            raise NeedsHuman("resume could not vouch for every host: " + "; ".join(doubts))
        for run in finished:
            if run.status is RunStatus.ROLLED_BACK:
                raise StageFailed(f"{run.stage} of {run.release} was rolled back on {run.environment}")
        return finished

    def _cut_short_step(self, env: Environment) -> list[str]:
        """A schema step whose process died outside any stage or rollback: a contract step runs
        again (it asks the database where it stands); a repair by hand is named, for its author."""
        migrations = self.store.migrations(env.name)
        last = migrations[-1] if migrations else None
        if last is None or last.status is not MigrationStatus.RUNNING or last.rollback_id is not None:
            return []
        if last.phase != "contract":
            if last.phase == "expand":
                return []  # a stage's: resumed with its run
            return [
                f"the database step of {env.name} to {last.target or 'an empty schema'} (by hand) was cut short: "
                f"`releaser migrate {env.name}` says where it stands, `--to {last.target or 'VERSION'}` finishes it"
            ]
        from .contracts import pending_contracts
        from .database import StepFailed, run_contract

        for pending in pending_contracts(self.config, self.store, env.name):
            if pending.release == last.release:
                try:
                    if run_contract(self, pending, f"resume {env.name}", again=True, armed=True) is not None:
                        self.finished_other.append(f"finished {last.release}'s contract step on {env.name}")
                except StepFailed as exc:
                    return [f"{last.release}'s contract step on {env.name} failed again: {exc}"]
        return []

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
        self.release(version)
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
                        f"({self._run(run.id).status}); `releaser rollback {run.environment} "
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
                return self._run(run.id)
            while (current := self._run(run.id)).status.open:
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
        with self.store.transaction():  # the rollback below says who asked, and why
            self.store.request_abort(run.id, by, reason)
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
        return self._run(run.id)

    def rebuild(self) -> dict[str, dict[str, str | None]]:
        """Rebuild what every host runs from the hosts themselves (their `current`, records and
        apps), for a state database that was lost. Refuses while a host cannot be asked."""
        rebuilt: dict[str, dict[str, str | None]] = {}
        for env in self.config.environments.values():
            with self.hold(env, "state rebuild") as held:
                views = held.deployer.ask_every_host("rebuild")
                held.deployer.reconcile(views)
                self.journal.record(
                    Event.STATE_REBUILT,
                    f"{env.name}: rebuilt from the hosts' own records",
                    environment=env.name,
                    data={"hosts": {n: v.current for n, v in views.items()}},
                )
                rebuilt[env.name] = {name: view.current for name, view in views.items()}
        return rebuilt

    def redeploy(self, env_name: str, host_names: list[str], reason: str) -> dict[str, str]:
        """Put hosts back on what the store says they run, through the normal switch (restart,
        verify, the served version checked), journaled: the cure for a host in doubt. Without
        `host_names`, every host of the environment in doubt. Returns {host: release}."""
        env = self.environment(env_name)
        if not reason.strip():
            raise UsageError("redeploy needs --reason TEXT, which is journaled")
        known = {h.name for h in env.hosts}
        unknown = [name for name in host_names if name not in known]
        if unknown:
            raise UsageError(f"{', '.join(unknown)}: no such host in {env.name} (hosts: {', '.join(sorted(known))})")
        with self.hold(env, f"redeploy {env.name}", armed=True) as held:
            self.refuse_open_runs(env)
            states = self.store.host_states(env.name)
            chosen = host_names or [h.name for h in env.hosts if h.name in states and states[h.name].doubt]
            if not chosen:
                self.journal.note(f"no host of {env.name} is in doubt; name hosts with --host to redeploy them anyway")
                return {}
            never = [name for name in chosen if name not in states or states[name].version is None]
            if never and (host_names or len(never) == len(chosen)):
                raise UsageError(
                    f"{', '.join(never)} of {env.name}: releaser has recorded no release there to "
                    "redeploy (a first install that broke off); promote a release, which asks each host first"
                )
            if never:  # the others are redeployed; these wait for a promotion
                self.journal.note(
                    f"{', '.join(never)} of {env.name}: no release recorded there to redeploy; promote one"
                )
                chosen = [name for name in chosen if name not in never]
            targets = {name: version for name in chosen if (version := states[name].version) is not None}
            run = f"redeploy-{int(time.time())}"
            self.journal.record(
                Event.REDEPLOY_STARTED,
                f"redeploying {len(targets)} host(s) of {env.name} onto what they should run "
                f"({', '.join(f'{h}: {v}' for h, v in sorted(targets.items()))}): {reason}",
                environment=env.name,
                data={"targets": targets, "reason": reason, "run": run, "by": held.lock.claim().owner},
            )
            deployer = held.deployer
            releases = {v: r for v in set(targets.values()) if (r := self.store.get_release(v)) is not None}
            outcome = deployer.switch_back(targets, None, releases, None, run, action=DeployAction.REDEPLOY)
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

    def _run(self, run_id: int) -> StageRun:
        """A stage run as the store has it now (runs are never deleted)."""
        run = self.store.get_stage_run(run_id)
        if run is None:
            raise NeedsHuman(f"stage run {run_id} is gone from the state database")
        return run
