"""The one rollback path.

Every rollback goes through here, whatever its cause: a stage that fails, a check failing in a
rollback window, a signal, a manual `releaser rollback`, `resume` of an interrupted run.

1. `begin`: the rollback is recorded in the store (cause, the releases it takes away, who works
   on it) and journaled `rollback.started`, before anything is touched.
2. `carry_out`: ask every host of the environment what it really runs (`current`, its own
   record, the version its app serves) and make the store agree; plan: every host serving one
   of the releases goes back to what it ran before that release (its record says; or the
   release named by hand), journaled `rollback.planned`; switch exactly those hosts back with
   the deploy's own switch.
3. Done: `rollback.done`, the stage run and the releases `rolled_back`, and one `incident`
   (none when the stage failed safe for want of evidence: nothing was shown wrong).
   Hosts left (unreachable, or their switch failed): `rollback.incomplete`; the rollback and
   its stage run stay open, the releases are `failed`, and `resume` carries it out again.

Carrying a rollback out again re-plans from the hosts, anchored on the same releases and the
targets already planned, so it never overshoots to an older release.
"""

from __future__ import annotations

import time
from dataclasses import field

from .deploy import Deployer
from .events import Event
from .hostrecord import HostView
from .journal import Journal
from .model import Cause, Claim, ReleaseStatus, RollbackRun, RollbackStatus, RunStatus, StageRun, parse_ts, utcnow
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

    @property
    def complete(self) -> bool:
        return not self.left

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


class Rollbacks:
    def __init__(self, store: Store, journal: Journal, deployer: Deployer):
        self.store, self.journal, self.deployer = store, journal, deployer
        self.env = deployer.env

    def begin(
        self,
        cause: Cause,
        releases: list[str],
        reason: str,
        claim: Claim | None,
        stage_run: StageRun | None = None,
        target: str | None = None,
        fault_at: str | None = None,
        plan: dict[str, str] | None = None,
    ) -> RollbackRun:
        """Record the rollback before anything is touched."""
        with self.store.transaction():
            record = self.store.start_rollback(
                self.env.name,
                cause,
                releases,
                reason,
                stage_run.id if stage_run else None,
                target,
                fault_at,
                claim.owner if claim else "",
                claim,
            )
            self.store.update_rollback(record.id, detected_at=utcnow(), plan=plan or {})
            if stage_run is not None:
                self.store.set_stage_run_status(stage_run.id, RunStatus.ROLLING_BACK, reason)
                if claim is not None:  # the run is this rollback's now (a window's run was its promoter's)
                    self.store.claim_stage_run(stage_run.id, claim)
            what = ", ".join(releases) or "nothing"
            self.journal.record(
                Event.ROLLBACK_STARTED,
                f"{stage_run.stage + ': ' if stage_run else ''}rolling back {what} on {self.env.name} "
                f"({cause}): {reason}",
                environment=self.env.name,
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
        return self.store.get_rollback(record.id)

    def carry_out(self, rollback: RollbackRun, views: dict[str, HostView] | None = None) -> RollbackResult:
        """Ask the hosts, plan, switch back; finish the records. Never raises for a host."""
        started = time.monotonic()
        if self.deployer.routes is not None:  # the instant part: no user reaches the release any more
            self.deployer.routes.to_stable(f"rollback {rollback.id} ({rollback.cause})")
        stage_run = self.store.get_stage_run(rollback.stage_run_id) if rollback.stage_run_id else None
        stage = stage_run.stage if stage_run else None
        views = views or self.deployer.ask()
        self.deployer.reconcile(views)
        targets, left, kept = self.plan(rollback, views)
        tag = {
            "environment": self.env.name,
            "stage": stage,
            "release": rollback.releases[0] if len(rollback.releases) == 1 else None,
        }
        with self.store.transaction():
            self.store.update_rollback(rollback.id, plan={**rollback.plan, **targets}, left=left)
            self.journal.record(
                Event.ROLLBACK_PLANNED,
                f"rollback {rollback.id}: {len(targets)} host(s) of {self.env.name} "
                f"serve {', '.join(rollback.releases)}"
                + (f" -> {', '.join(sorted(set(targets.values())))}" if targets else "")
                + (f"; cannot be rolled back now: {', '.join(sorted(left))}" if left else "")
                + (f"; nothing to go back to on {', '.join(sorted(kept))} (a first install)" if kept else ""),
                data={"rollback": rollback.id, "targets": targets, "left": left, "kept": kept},
                **tag,
            )
        releases = {v: self.store.get_release(v) for v in set(targets.values())}
        outcome = self.deployer.switch_back(
            targets, rollback.stage_run_id, {v: r for v, r in releases.items() if r}, stage, f"rollback-{rollback.id}"
        )
        left.update(outcome.failed)
        # hosts a stopped deploy drained but never switched are back in rotation too
        self.deployer.back_in_rotation([h.name for h in self.env.hosts], set(left), "rollback")
        result = RollbackResult(rollback, outcome.ok, left, kept, time.monotonic() - started)
        self._finish(rollback, stage_run, result, tag)
        result.rollback = self.store.get_rollback(rollback.id)
        return result

    def plan(
        self, rollback: RollbackRun, views: dict[str, HostView]
    ) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
        """({host: target} for every host serving a rolled-back release, {host: why} for hosts
        that may serve one but cannot be switched now)."""
        states = self.store.host_states(self.env.name)
        rolled_back = set(rollback.releases)
        targets, left, kept = {}, {}, {}
        for host in self.env.hosts:
            view, state = views.get(host.name), states.get(host.name)
            if view is None or not view.reachable:
                if state is not None and (state.version in rolled_back or state.doubt):
                    left[host.name] = f"unreachable: {view.error if view else 'not asked'}"
                continue
            serving = sorted(view.running & rolled_back)
            if not serving:
                continue
            target = (
                rollback.target
                or rollback.plan.get(host.name)
                or view.previous(serving[0])
                or (state.previous if state and state.version == serving[0] else None)
            )
            if target is None:  # a first install: there is nothing to go back to, now or later
                kept[host.name] = serving[0]
            elif target in rolled_back:
                left[host.name] = f"serves {serving[0]} and its earlier release {target} is rolled back too"
            else:
                targets[host.name] = target
        return targets, left, kept

    def _finish(self, rollback: RollbackRun, stage_run: StageRun | None, result: RollbackResult, tag: dict) -> None:
        with self.store.transaction():
            if not result.complete:
                self.store.update_rollback(rollback.id, status=RollbackStatus.INCOMPLETE, left=result.left)
                if stage_run is not None:
                    self.store.set_stage_run_status(stage_run.id, RunStatus.ROLLBACK_FAILED)
                for version in rollback.releases:
                    self.store.set_release_status(version, ReleaseStatus.FAILED)
                self.journal.record(
                    Event.ROLLBACK_INCOMPLETE,
                    f"rollback {rollback.id} of {self.env.name} could not finish on {len(result.left)} host(s): "
                    f"{result.hosts_left()}; it stays open: `releaser resume` finishes it once they can be reached",
                    data={"rollback": rollback.id, "left": result.left, "switched": result.switched},
                    **tag,
                )
                return
            finished = utcnow()
            self.store.update_rollback(rollback.id, status=RollbackStatus.DONE, left={}, finished_at=finished)
            if stage_run is not None:
                self.store.set_stage_run_status(stage_run.id, RunStatus.ROLLED_BACK)
            for version in rollback.releases:
                self.store.set_release_status(version, ReleaseStatus.ROLLED_BACK)
            self.journal.record(
                Event.ROLLBACK_DONE,
                f"rolled back {len(result.switched)} host(s) of {self.env.name} in {result.seconds:.1f}s"
                + (f"; {result.hosts_kept()}" if result.kept else ""),
                data={
                    "rollback": rollback.id,
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
        "time_to_detect": round((detected - fault).total_seconds(), 3) if fault else None,
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
