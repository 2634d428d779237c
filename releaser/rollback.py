"""The one rollback path, and its one planner.

Every rollback enters here, whatever its cause: a stage that fails (a step, a check, an abort, a
signal: `Rollbacks.after_failure`), a check failing in a rollback window or an alert
(`Rollbacks.window`), `releaser rollback` by hand (`Rollbacks.by_hand`, `dry_run`), and `resume`
of an interrupted run or rollback (recovery.py calls `begin` and `carry_out`).

1. `begin`: the rollback is recorded in the store (cause, the releases it takes away, who works
   on it) and journaled `rollback.started`, before anything is touched.
2. `carry_out`: ask every host of the environment what it really runs (`current`, its own
   record, the version its app serves) and make the store agree; `plan`: every host serving one
   of the releases goes back to what it ran before that release (its record says; or the
   release named by hand), journaled `rollback.planned`; switch exactly those hosts back with
   the deploy's own switch.
3. Done: `rollback.done`, the stage run and the releases `rolled_back`, and one `incident`
   (none when the stage failed safe for want of evidence: nothing was shown wrong). A drill
   (`drills.py`, cause `drill`) rehearses this path on a good release: no incident, the releases
   keep their status, and it touches only the hosts it planned, whoever carries it out.
   Hosts left (unreachable, or their switch failed): `rollback.incomplete`; the rollback and
   its stage run stay open, the releases are `failed`, and `resume` carries it out again.

Carrying a rollback out again re-plans from the hosts, anchored on the same releases and the
targets already planned, so it never overshoots to an older release.
"""

from __future__ import annotations

import time
from collections.abc import Set
from dataclasses import field, replace
from typing import NoReturn

from .errors import BusyError, NeedsHuman, StageFailed, UsageError
from .events import Event
from .hostrecord import HostView
from .model import (
    Cause,
    DeployAction,
    Environment,
    HostState,
    ReleaseStatus,
    RollbackRun,
    RollbackStatus,
    RunStatus,
    StageRun,
    parse_ts,
    utcnow,
)
from .operation import Held, Operation
from .record import Record
from .store import Store


class RollbackResult(Record):
    rollback: RollbackRun
    switched: list[str] = field(default_factory=list)
    left: dict[str, str] = field(default_factory=dict)  # host -> why it still may serve a rolled-back release
    kept: dict[str, str] = field(
        default_factory=dict
    )  # host -> the release it keeps: it ran none before (first install)
    seconds: float = 0.0
    unreachable: list[str] = field(default_factory=list)  # of `left`: hosts that could not be reached or read back

    @property
    def complete(self) -> bool:
        return not self.left

    def next_step(self) -> str:
        """What finishes the rollback: reaching the hosts again, fixing what they said, or the database."""
        if any(why.startswith("database:") for why in self.left.values()):
            return "do what the database needs (above), then `releaser resume` finishes it"
        if set(self.left) <= set(self.unreachable):
            return "`releaser resume` finishes it once they can be reached"
        return "fix what the hosts said, then `releaser resume` finishes it"

    def hosts_left(self) -> str:
        return "; ".join(f"{host}: {why}" for host, why in sorted(self.left.items()))

    def hosts_kept(self) -> str:
        """Hosts of a first install that failed: nothing to go back to, so they keep the release."""
        if not self.kept:
            return ""
        releases = ", ".join(sorted(set(self.kept.values())))
        return (
            f"{', '.join(sorted(self.kept))} keep {releases}: nothing ran there before it (a first install); "
            "promote a fixed release"
        )


class Plan(Record):
    """Where each host goes back to, and the hosts that cannot go back now."""

    targets: dict[str, str] = field(default_factory=dict)  # host -> the release it goes back to
    left: dict[str, str] = field(default_factory=dict)  # host -> why it may serve a release taken away
    kept: dict[str, str] = field(default_factory=dict)  # host -> the release it keeps (a first install)
    releases: set[str] = field(default_factory=set)  # the releases taken away
    passed_over: set[str] = field(default_factory=set)  # earlier releases skipped: rolled back or failed


def plan(
    env: Environment,
    views: dict[str, HostView],
    states: dict[str, HostState],
    releases: Set[str] | None,
    to: str | None = None,
    planned: dict[str, str] | None = None,
    known_bad: Set[str] = frozenset(),
) -> Plan:
    """The one rollback planner. Every host serving one of `releases` goes back to `to`, or to the
    target `planned` for it already, or to the release it ran before (its record says; else the
    store), passing over `known_bad` releases. A host that ran nothing before keeps its release (a
    first install); one whose earlier release is taken away too, or that cannot be asked, is left.

    By hand (`releases` None, `releaser rollback`): every release a host runs but `to` is taken
    away; a host with no earlier release is a usage error, and without `to` the environment must
    go back to one release."""
    by_hand = releases is None
    taken: Set[str] = releases or set()
    result = Plan()
    for host in env.hosts:
        seen: set[str] = set()
        view, state = views.get(host.name), states.get(host.name)
        if view is None or not view.reachable:
            if state is not None and (state.version in taken or state.doubt):
                result.left[host.name] = f"unreachable: {view.error if view else 'not asked'}"
            continue
        serving = view.running - {to} if by_hand else view.running & taken
        result.releases |= serving
        if not by_hand and not serving:
            continue
        start = view.current if by_hand else min(serving)
        target = to or (planned or {}).get(host.name) or _before(view, start, known_bad, seen)
        if target is None and not by_hand and state is not None and state.version == start:
            target = state.previous
        if target is None and by_hand:
            raise UsageError(
                f"{host.name} has no earlier release on record"
                + (f" that was not rolled back ({', '.join(sorted(seen))} were)" if seen else "")
                + "; name one with --to VERSION"
            )
        if target is None:  # a first install: there is nothing to go back to, now or later
            result.kept[host.name] = min(serving)
        elif target in taken:
            result.left[host.name] = f"serves {min(serving)} and its earlier release {target} is rolled back too"
        elif view.running - {target}:
            result.targets[host.name] = target
            result.passed_over |= seen
    if by_hand and to is None and len(set(result.targets.values())) > 1:
        raise UsageError(
            f"the hosts of {env.name} would roll back to different releases "
            f"({', '.join(sorted(set(result.targets.values())))}); name one with --to VERSION"
        )
    result.releases -= set(result.targets.values())
    return result


def _before(view: HostView, release: str | None, known_bad: Set[str], seen: set[str]) -> str | None:
    """What the host ran before `release`, passing over known-bad releases (noted in `seen`)."""
    target = view.previous(release) if release else None
    while target is not None and target in known_bad and target not in seen:
        seen.add(target)
        target = view.previous(target)
    return target


class Rollbacks(Operation):
    # -- the doors: every cause of a rollback --

    def after_failure(self, held: Held, run: StageRun, cause: Cause, why: str) -> NoReturn:
        """Roll back a stage run that failed while its promoter held the environment (a step or a
        check failed, an abort, a signal). Always raises: StageFailed when every host serving the
        release was switched back, NeedsHuman when some could not be."""
        rollback = self.begin(held, cause, [run.release], why, run, fault_at=fault_seen_at(self.store, run))
        result = self.carry_out(held, rollback)
        if cause is Cause.SETUP and result.complete:
            raise StageFailed(
                f"{run.stage} of {run.release} could not start on {held.env.name}: the environment failed before any "
                f"host changed (cause setup: {why}); no incident, and {run.release} keeps its status: fix it, then "
                f"promote {run.release} again"
            )
        conclude(result, f"{run.stage} of {run.release} failed ({why})")

    def window(self, run: StageRun, why: str, fault_at: str, cause: Cause = Cause.WINDOW) -> RollbackResult:
        """Roll back a release whose stage passed (a check failed inside its rollback window, or an
        alert fired). Raises BusyError when the environment is locked."""
        env = self.config.environments[run.environment]
        with self.hold(env, f"watch: roll back {run.release}") as held:
            current = self.store.get_stage_run(run.id)
            if current is None or current.status is not RunStatus.PASSED:
                raise BusyError(f"run {run.id} is no longer passed ({current.status if current else 'gone'})")
            return self.carry_out(held, self.begin(held, cause, [run.release], why, current, fault_at=fault_at))

    def by_hand(self, env_name: str, to_version: str | None, reason: str) -> dict[str, str]:
        """Roll an environment back by hand (`releaser rollback`); returns {host: version switched to}."""
        env = self._to_roll_back(env_name, to_version)
        if not reason.strip():
            raise UsageError("rollback needs --reason TEXT, which is journaled")
        with self.hold(env, f"rollback {env.name}", armed=True) as held:
            unfinished: list[RollbackRun | StageRun] = [*self.store.rollbacks(env.name), *self.store.stage_runs()]
            for item in unfinished:
                if item.environment == env.name and item.status.open:
                    self.refuse_live_owner(item)
            views = held.deployer.ask_every_host("roll back")
            chosen = self._by_hand_plan(env, views, to_version)
            if not chosen.targets:
                self.journal.note(f"every host of {env.name} already runs {to_version}; nothing to do")
                return {}
            self._refuse_schema(held, chosen.targets)
            if chosen.passed_over:
                self.journal.note(
                    f"passing over {', '.join(sorted(chosen.passed_over))}: rolled back or failed (name one with --to)",
                    environment=env.name,
                )
            with self.store.transaction():
                for item in self.store.rollbacks(env.name):
                    if item.status.open:
                        self.store.update_rollback(item.id, status=RollbackStatus.SUPERSEDED)
                for run in self.store.stage_runs():
                    if run.environment == env.name and run.status.open:
                        self.store.set_stage_run_status(run.id, RunStatus.ROLLED_BACK, f"manual rollback: {reason}")
            record = self.begin(
                held, Cause.MANUAL, sorted(chosen.releases), reason, target=to_version, targets=chosen.targets
            )
            result = self.carry_out(held, record, views)
            if not result.complete:
                conclude(result, f"manual rollback of {env.name}")
            return {h: chosen.targets[h] for h in result.switched}

    def dry_run(
        self, env_name: str, to_version: str | None
    ) -> tuple[dict[str, dict[str, str | None]], str | None, list[str]]:
        """What `by_hand` would do, from asking the hosts, changing nothing (no lock, no journal):
        {host: {"runs": version, "to": version or None when it stays}}, what it would do to the
        database first, in words (None: nothing), and the earlier releases it passes over."""
        env = self._to_roll_back(env_name, to_version)
        with self.look(env) as deployer:
            views = deployer.ask_every_host("plan a rollback")
            chosen = self._by_hand_plan(env, views, to_version)
            targets = chosen.targets
            schema = None
            if deployer.playbook.migrate is not None:
                from .database import Database
                from .dbschema import describe_undo

                database = Database(self, env, deployer)
                needs = database.needs(set(targets.values()), database.ask)
                if needs is not None:
                    schema = f"refused: {database.refusal(needs)}" if needs.why else describe_undo(needs)
        hosts = {name: {"runs": view.current, "to": targets.get(name)} for name, view in views.items()}
        return hosts, schema, sorted(chosen.passed_over)

    def _by_hand_plan(self, env: Environment, views: dict[str, HostView], to_version: str | None) -> Plan:
        """The plan of a rollback by hand, which never goes back to a release rolled back or failed
        unless it is named."""
        known_bad = {
            r.version
            for r in self.store.list_releases()
            if r.status in (ReleaseStatus.ROLLED_BACK, ReleaseStatus.FAILED)
        }
        return plan(env, views, self.store.host_states(env.name), None, to_version, known_bad=known_bad)

    def _refuse_schema(self, held: Held, targets: dict[str, str]) -> None:
        """A rollback by hand to a release that cannot run on the database, and whose way down
        is irreversible, is refused before anything is recorded (exit 4), with the way out."""
        if held.deployer.playbook.migrate is None:
            return
        from .database import Database

        database = Database.of(self, held)
        needs = database.needs(set(targets.values()), database.observe)
        if needs is not None and needs.why:
            raise NeedsHuman(f"cannot roll {held.env.name} back: {database.refusal(needs)}; nothing was changed")

    def _schema_first(
        self, held: Held, rollback: RollbackRun, targets: dict[str, str], stage: str | None
    ) -> dict[str, str]:
        """Before the hosts go back, the database goes where their release runs: the declared
        `down`, inside this rollback's record. Returns the hosts that cannot go back (and why)
        when it cannot: the way down is irreversible, or `down` failed."""
        if held.deployer.playbook.migrate is None or not targets:
            return {}
        from .database import Database, StepFailed

        database = Database.of(self, held)
        needs = database.needs(set(targets.values()))
        if needs is None:
            return {}
        if needs.why:
            why = f"database: {database.refusal(needs)}"
        else:
            try:
                database.down(needs, rollback.id, stage, f"rollback-{rollback.id}")
                return {}
            except StepFailed as exc:
                why = f"database: the down step to {needs.target or 'an empty schema'} failed: {exc}"
        return dict.fromkeys(targets, why)

    def _to_roll_back(self, env_name: str, to_version: str | None) -> Environment:
        env = self.environment(env_name)
        if to_version is not None:
            self.release(to_version)
        if not self.store.host_states(env.name):
            raise UsageError(
                f"nothing to roll back on {env.name}: releaser has recorded no deployment there "
                "(if the state was lost, `releaser state rebuild` reads it back from the hosts)"
            )
        return env

    # -- the one path --

    def begin(
        self,
        held: Held,
        cause: Cause,
        releases: list[str],
        reason: str,
        stage_run: StageRun | None = None,
        target: str | None = None,
        fault_at: str | None = None,
        targets: dict[str, str] | None = None,
    ) -> RollbackRun:
        """Record the rollback before anything is touched."""
        env, claim = held.env, held.lock.claim()
        with self.store.transaction():
            record = self.store.start_rollback(
                env.name,
                cause,
                releases,
                reason,
                stage_run.id if stage_run else None,
                target,
                fault_at,
                claim.owner,
                claim,
            )
            self.store.update_rollback(record.id, detected_at=utcnow(), plan=targets or {})
            if stage_run is not None:
                self.store.set_stage_run_status(stage_run.id, RunStatus.ROLLING_BACK, reason)
                self.store.claim_stage_run(stage_run.id, claim)  # the run is this rollback's now
            what = ", ".join(releases) or "nothing"
            self.journal.record(
                Event.ROLLBACK_STARTED,
                f"{stage_run.stage + ': ' if stage_run else ''}rolling back {what} on {env.name} ({cause}): {reason}",
                environment=env.name,
                release=releases[0] if len(releases) == 1 else None,
                stage=stage_run.stage if stage_run else None,
                data={
                    "rollback": record.id,
                    "cause": str(cause),
                    "releases": releases,
                    "reason": reason,
                    "target": target,
                    "run": stage_run.id if stage_run else None,
                },
            )
        return self._stored(record.id)

    def carry_out(self, held: Held, rollback: RollbackRun, views: dict[str, HostView] | None = None) -> RollbackResult:
        """Ask the hosts, plan, switch back; finish the records. Never raises for a host."""
        started, env, deployer = time.monotonic(), held.env, held.deployer
        if rollback.cause is Cause.DRILL:  # a drill's hosts only, even when `resume` holds every host
            env = replace(env, hosts=tuple(h for h in env.hosts if h.name in rollback.plan))
        if deployer.routes is not None:  # the instant part: no user reaches the release any more
            deployer.routes.to_stable(f"rollback {rollback.id} ({rollback.cause})")
        stage_run = self.store.get_stage_run(rollback.stage_run_id) if rollback.stage_run_id else None
        stage = stage_run.stage if stage_run else None
        views = views or deployer.ask()
        deployer.reconcile(views)
        chosen = plan(
            env, views, self.store.host_states(env.name), set(rollback.releases), rollback.target, rollback.plan
        )
        targets, left, kept = chosen.targets, chosen.left, chosen.kept
        tag = {
            "environment": env.name,
            "stage": stage,
            "release": rollback.releases[0] if len(rollback.releases) == 1 else None,
        }
        with self.store.transaction():
            self.store.update_rollback(rollback.id, plan={**rollback.plan, **targets}, left=left)
            self.journal.record(
                Event.ROLLBACK_PLANNED,
                f"rollback {rollback.id}: {len(targets)} host(s) of {env.name} "
                f"serve {', '.join(rollback.releases)}"
                + (f" -> {', '.join(sorted(set(targets.values())))}" if targets else "")
                + (f"; cannot be rolled back now: {', '.join(sorted(left))}" if left else "")
                + (f"; nothing to go back to on {', '.join(sorted(kept))} (a first install)" if kept else ""),
                data={"rollback": rollback.id, "targets": targets, "left": left, "kept": kept},
                **tag,
            )
        blocked = self._schema_first(held, rollback, targets, stage)
        if blocked:
            left.update(blocked)
            targets = {}
        releases = {v: self.store.get_release(v) for v in set(targets.values())}
        outcome = deployer.switch_back(
            targets, rollback.stage_run_id, {v: r for v, r in releases.items() if r}, stage, f"rollback-{rollback.id}"
        )
        left.update(outcome.failed)
        # hosts a stopped deploy drained but never switched are back in rotation too
        deployer.back_in_rotation([h.name for h in env.hosts], set(left), DeployAction.ROLLBACK)
        unreachable = [h for h, why in left.items() if why.startswith("unreachable") or h in outcome.unknown]
        result = RollbackResult(rollback, outcome.ok, left, kept, time.monotonic() - started, unreachable)
        self._finish(env, rollback, stage_run, result, tag)
        result.rollback = self._stored(rollback.id)
        return result

    def _stored(self, rollback_id: int) -> RollbackRun:
        """A rollback as the store has it now (rollbacks are never deleted)."""
        rollback = self.store.get_rollback(rollback_id)
        if rollback is None:
            raise NeedsHuman(f"rollback {rollback_id} is gone from the state database")
        return rollback

    def _finish(
        self, env: Environment, rollback: RollbackRun, stage_run: StageRun | None, result: RollbackResult, tag: dict
    ) -> None:
        with self.store.transaction():
            if not result.complete:
                self.store.update_rollback(rollback.id, status=RollbackStatus.INCOMPLETE, left=result.left)
                if stage_run is not None:
                    self.store.set_stage_run_status(stage_run.id, RunStatus.ROLLBACK_FAILED)
                for version in rollback.releases if rollback.cause.condemns else ():
                    self.store.set_release_status(version, ReleaseStatus.FAILED)
                self.journal.record(
                    Event.ROLLBACK_INCOMPLETE,
                    f"rollback {rollback.id} of {env.name} could not finish on {len(result.left)} host(s): "
                    f"{result.hosts_left()}; it stays open: {result.next_step()}",
                    data={"rollback": rollback.id, "left": result.left, "switched": result.switched},
                    **tag,
                )
                return
            finished = utcnow()
            self.store.update_rollback(rollback.id, status=RollbackStatus.DONE, left={}, finished_at=finished)
            if stage_run is not None:
                self.store.set_stage_run_status(stage_run.id, RunStatus.ROLLED_BACK)
            for version in rollback.releases if rollback.cause.condemns else ():
                self.store.set_release_status(version, ReleaseStatus.ROLLED_BACK)
            self.journal.record(
                Event.ROLLBACK_DONE,
                f"rolled back {len(result.switched)} host(s) of {env.name} in {result.seconds:.1f}s"
                + (f"; {result.hosts_kept()}" if result.kept else ""),
                data={
                    "rollback": rollback.id,
                    "cause": str(rollback.cause),
                    "hosts": result.switched,
                    "kept": result.kept,
                    "seconds": round(result.seconds, 3),
                },
                **tag,
            )
            if rollback.cause.fault:  # a stage that failed safe for want of evidence is no incident
                self.journal.record(
                    Event.INCIDENT,
                    incident_message(rollback, finished),
                    data=incident_data(rollback, finished, result.switched),
                    **tag,
                )


def conclude(result: RollbackResult, what: str) -> NoReturn:
    """Say how a rollback that followed a failure ended: StageFailed when complete, else NeedsHuman."""
    if result.complete:
        raise StageFailed(
            (
                f"{what} and was rolled back ({len(result.switched)} host(s))"
                if result.switched
                else what + ("" if result.kept else "; no host had switched to it: nothing to roll back")
            )
            + (f"; {result.hosts_kept()}" if result.kept else "")
        )
    raise NeedsHuman(
        f"{what}; the rollback could not finish on {result.hosts_left()}; {result.rollback.environment} may run "
        f"mixed versions (see `releaser status`): {result.next_step()}"
    )


def fault_seen_at(store: Store, run: StageRun) -> str:
    """When a fault of this stage run could first be seen: its first switch (or, if no host
    switched, its start)."""
    for event in store.events(release=run.release):
        if event.kind == Event.SWITCH_STARTED and event.data.get("run") == f"stage-{run.id}":
            return event.ts
    return run.started_at


def incident_data(rollback: RollbackRun, finished: str, hosts: list[str]) -> dict:
    """The one incident shape. Time to detect runs from when the fault could first be seen
    (the cohort's switch; a window's last passing look) to when the rollback began; it is
    None for rollbacks a person or a signal asked for. Time to roll back runs from then to the
    last host switched back."""
    detected = parse_ts(rollback.detected_at or rollback.started_at)
    fault = parse_ts(rollback.fault_at) if rollback.fault_at else None
    return {
        "rollback": rollback.id,
        "cause": str(rollback.cause),
        "reason": rollback.reason,
        "releases": rollback.releases,
        "hosts": hosts,
        "fault_at": rollback.fault_at,
        "detected_at": rollback.detected_at,
        "finished_at": finished,
        "time_to_detect": round((detected - fault).total_seconds(), 3) if fault and not rollback.cause.asked else None,
        "time_to_rollback": round((parse_ts(finished) - detected).total_seconds(), 3),
    }


def incident_message(rollback: RollbackRun, finished: str) -> str:
    data = incident_data(rollback, finished, [])
    detect = (
        ""
        if data["time_to_detect"] is None
        else f"detected {data['time_to_detect']:.1f}s after the fault could be seen, "
    )
    return (
        f"{', '.join(rollback.releases)} on {rollback.environment} ({rollback.cause}): {detect}rolled back in "
        f"{data['time_to_rollback']:.1f}s: {rollback.reason}"
    )
