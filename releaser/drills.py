"""Drills: an environment's rollback rehearsed where it is safe, and timed against the rollback SLA.

`releaser drill ENV` takes hosts that all run one release R, each with an earlier release P on
record (the environment's hosts, `--hosts`, or its `drills: {hosts: [...]}` cohort), rolls them
back to P and forward to R again through the one rollback path (rollback.py: `begin` and
`carry_out`, cause `drill`), timing each way. A drill's rollbacks are no incident, leave R and P
their status and passed stages, and touch only the drill's hosts. Then, when the playbook's
`migrate:` has `restore` and `verify`, it restores the newest backup into a scratch database on
the migration host (after checking the file's sha256 against the recorded one) and verifies it.

Drills change no schema: when P cannot run on the database as it stands, the drill is refused
before anything is recorded (with the real rollback's words when the way down is irreversible).

Each drill is stored (store.drills: `status` and the effect report read it) and journaled
`drill.started`, then `drill.done` with what was measured against `report.rollback_sla`.

A drill holds the environment's lock. One whose rollback could not finish, or that was killed
mid-way, leaves what every rollback leaves: an open rollback that `releaser resume` finishes; its
hosts may then run P. The next `releaser drill` first rolls them forward to R (through the same
path), then rehearses anew; `releaser rollback ENV --to R --reason TEXT` also takes them there.
"""

from __future__ import annotations

import time
from dataclasses import replace

from .errors import NeedsHuman, Refused, UsageError
from .events import Event
from .hostrecord import HostView
from .model import Backup, Cause, Drill, Environment, utcnow
from .operation import Held, Operation
from .record import Record
from .rollback import RollbackResult, Rollbacks, plan
from .terminal import span


class Measured(Record):
    """What a drill measured, as it went."""

    release: str | None = None
    previous: str | None = None
    hosts: tuple[str, ...] = ()
    rollback_seconds: float | None = None
    forward_seconds: float | None = None
    restore_seconds: float | None = None
    backup: Backup | None = None
    restore_note: str = ""  # why no restore was rehearsed, when none was


class Drills(Operation):
    def drill(self, env_name: str, hosts: list[str] | None, restore: bool = True, reason: str = "") -> Drill:
        """Rehearse the rollback of `env_name` (on `hosts`, else its `drills.hosts`, else every
        host) and, with `restore`, a restore of its newest backup. Returns the passed drill;
        raises StageFailed (exit 1) when a restore failed with the hosts back on R, NeedsHuman
        (exit 4) when the rollback could not finish, UsageError (exit 2) or NeedsHuman when
        there is nothing to rehearse, before anything is recorded."""
        env = self.environment(env_name)
        cohort = self._cohort(env, hosts)
        self._refuse_freeze(env)
        if env.router is not None:
            raise UsageError(
                f"{env.name} is behind a router: drills rehearse the rollback of environments without one for now "
                "(the test environment, or a cohort of hosts outside the router); nothing was changed"
            )
        reason = reason.strip() or "rehearsal"
        self._finish_last(env)
        with self.hold(cohort, f"drill {env.name}", armed=True) as held:
            self.refuse_open_runs(env)
            views = held.deployer.ask_every_host("rehearse the rollback")
            release, previous, targets = self._rehearsable(cohort, views)
            self._refuse_schema(held, env, previous)
            backup = self._backup_to_restore(held) if restore else None
            measured = Measured(release=release, previous=previous, hosts=tuple(sorted(targets)), backup=backup)
            if restore and backup is None:
                measured.restore_note = self._why_no_restore(held)
            drill = self._start(env, measured, reason)
            try:
                self._rehearse(held, drill, measured, targets, views)
            except BaseException as exc:
                self._done(drill, measured, reason, why=str(exc) or f"interrupted ({type(exc).__name__})")
                raise
            return self._done(drill, measured, reason)

    # -- what may be rehearsed --

    def _cohort(self, env: Environment, names: list[str] | None) -> Environment:
        """The environment held with only the drill's hosts."""
        chosen = names or (list(env.drills.hosts) if env.drills and env.drills.hosts else None)
        if chosen is None:
            return env
        known = {h.name for h in env.hosts}
        unknown = [n for n in chosen if n not in known]
        if unknown:
            raise UsageError(f"not a host of {env.name}: {', '.join(unknown)} (its hosts: {', '.join(sorted(known))})")
        return replace(env, hosts=tuple(h for h in env.hosts if h.name in chosen))

    def _refuse_freeze(self, env: Environment) -> None:
        """A drill changes what users are served, briefly: not while the environment is frozen."""
        if not self.config.freezes:
            return
        from .freezes import frozen

        now = frozen(self.config.freezes, env.name)
        if now is not None:
            raise Refused(f"{env.name} is frozen ({now.describe()}): a drill waits for the freeze to end")

    def _rehearsable(self, cohort: Environment, views: dict[str, HostView]) -> tuple[str, str, dict[str, str]]:
        """R, P and each host's target, from what the hosts say; UsageError when the hosts do
        not all run one release with one earlier release on record."""
        doubt = {name: view.doubt for name, view in views.items() if view.doubt}
        if doubt:
            raise NeedsHuman(
                "cannot rehearse a rollback on hosts in doubt; nothing was changed: "
                + "; ".join(f"{name}: {why}" for name, why in sorted(doubt.items()))
                + f" (`releaser redeploy {cohort.name} "
                + " ".join(f"--host {name}" for name in sorted(doubt))
                + " --reason TEXT` puts them back on what they should run)"
            )
        bare = sorted(name for name, view in views.items() if view.current is None)
        if bare:
            raise UsageError(f"nothing is deployed on {', '.join(bare)}: there is no rollback to rehearse there")
        running = {view.current or "" for view in views.values()}
        if len(running) != 1:
            by = {v: sorted(n for n, view in views.items() if view.current == v) for v in running if v}
            raise UsageError(
                f"the hosts of {cohort.name} run different releases ("
                + "; ".join(f"{v} on {', '.join(names)}" for v, names in sorted(by.items()))
                + "): a drill rehearses the rollback of one release; name hosts that run one with --hosts"
            )
        release = next(iter(running))
        chosen = plan(cohort, views, self.store.host_states(cohort.name), {release})
        if chosen.kept or chosen.left:
            why = chosen.left or {h: "no earlier release on record (a first install)" for h in chosen.kept}
            raise UsageError(
                f"{release} cannot be rolled back on {', '.join(sorted(why))}: "
                + "; ".join(f"{h}: {w}" for h, w in sorted(why.items()))
                + "; a drill needs an earlier release to go back to on every host"
            )
        previous = set(chosen.targets.values())
        if len(previous) != 1:
            raise UsageError(
                f"the hosts of {cohort.name} ran different releases before {release} "
                f"({', '.join(sorted(previous))}): name hosts that go back to one with --hosts"
            )
        return release, next(iter(previous)), chosen.targets

    def _refuse_schema(self, held: Held, env: Environment, previous: str) -> None:
        """Drills change no schema: P must run on the database as it stands."""
        if held.deployer.playbook.migrate is None:
            return
        from .database import Database
        from .dbschema import describe_undo

        database = Database(self, env, held.deployer)
        needs = database.needs({previous}, database.observe)
        if needs is None:
            return
        if needs.why:  # the real rollback would be refused too: say it as it would
            raise NeedsHuman(
                f"cannot rehearse the rollback of {env.name} to {previous}: {database.refusal(needs)}; "
                "nothing was changed"
            )
        raise UsageError(
            f"a drill changes no schema, and {previous} needs the database taken {describe_undo(needs)} "
            f"before it runs: the rollback of {env.name} to {previous} would run `down`; nothing was changed "
            "(rehearse it once the hosts run a release whose previous one needs no schema step)"
        )

    def _backup_to_restore(self, held: Held) -> Backup | None:
        spec = held.deployer.playbook.migrate
        if spec is None or not spec.restore or not spec.verify:
            return None
        backups = self.store.backups(held.env.name)
        return backups[-1] if backups else None

    def _why_no_restore(self, held: Held) -> str:
        spec = held.deployer.playbook.migrate
        if spec is None:
            return "no restore drill: the playbook has no `migrate:`"
        if not spec.restore or not spec.verify:
            return "no restore drill: the playbook's `migrate:` has no `restore` and `verify`"
        return "no restore drill: no backup of this environment is recorded yet (one is taken before each migration)"

    # -- the rehearsal --

    def _start(self, env: Environment, measured: Measured, reason: str) -> Drill:
        with self.store.transaction():
            drill = self.store.start_drill(env.name)
            self.store.update_drill(drill.id, release=measured.release, previous=measured.previous)
            self.journal.record(
                Event.DRILL_STARTED,
                f"drill {drill.id}: rehearsing the rollback of {env.name}: {len(measured.hosts)} host(s) from "
                f"{measured.release} back to {measured.previous} and forward again"
                + (f", then a restore of backup {measured.backup.name}" if measured.backup else "")
                + f" ({reason})",
                environment=env.name,
                release=measured.release,
                data={
                    "drill": drill.id,
                    "release": measured.release,
                    "previous": measured.previous,
                    "hosts": list(measured.hosts),
                    "backup": measured.backup.id if measured.backup else None,
                    "reason": reason,
                },
            )
        return drill

    def _rehearse(
        self, held: Held, drill: Drill, measured: Measured, targets: dict[str, str], views: dict[str, HostView]
    ) -> None:
        release, previous = measured.release or "", measured.previous or ""
        path = Rollbacks.like(self)
        started = time.monotonic()
        back = path.begin(
            held, Cause.DRILL, [release], f"drill {drill.id}: back to {previous}", target=previous, targets=targets
        )
        self._complete(path.carry_out(held, back, views), f"the rollback to {previous}")
        measured.rollback_seconds = time.monotonic() - started
        self.store.update_drill(drill.id, rollback_seconds=round(measured.rollback_seconds, 3))
        started = time.monotonic()
        forward = path.begin(
            held,
            Cause.DRILL,
            [previous],
            f"drill {drill.id}: forward to {release}",
            target=release,
            targets=dict.fromkeys(targets, release),
        )
        self._complete(path.carry_out(held, forward), f"the roll forward to {release}")
        measured.forward_seconds = time.monotonic() - started
        self.store.update_drill(drill.id, forward_seconds=round(measured.forward_seconds, 3))
        if measured.backup is not None:
            measured.restore_seconds = self._restore(held, release, measured.backup)

    @staticmethod
    def _complete(result: RollbackResult, what: str) -> None:
        if not result.complete:
            raise NeedsHuman(
                f"{what} could not finish on {result.hosts_left()}; rollback {result.rollback.id} stays open: "
                f"{result.next_step()}"
            )

    def _restore(self, held: Held, release: str, backup: Backup) -> float:
        """Restore `backup` into a scratch database and verify it (database.Database.restore)."""
        from .database import Database

        return Database.of(self, held).restore(backup, self.release(release))

    def _done(self, drill: Drill, measured: Measured, reason: str, why: str = "") -> Drill:
        """Store and journal how the drill ended (`why` it failed, "" when it passed)."""
        sla = self.config.report.rollback_sla
        with self.store.transaction():
            self.store.update_drill(
                drill.id,
                status="failed" if why else "passed",
                finished_at=utcnow(),
                rollback_seconds=_rounded(measured.rollback_seconds),
                forward_seconds=_rounded(measured.forward_seconds),
                restore_seconds=_rounded(measured.restore_seconds),
                backup_id=measured.backup.id if measured.backup else None,
                detail=why or measured.restore_note,
            )
            stored = self.store.get_drill(drill.id)
            if stored is None:
                raise NeedsHuman(f"drill {drill.id} is gone from the state database")
            self.journal.record(
                Event.DRILL_DONE,
                describe(stored, sla),
                environment=drill.environment,
                release=measured.release,
                data={
                    "drill": drill.id,
                    "status": stored.status,
                    "rollback_seconds": stored.rollback_seconds,
                    "forward_seconds": stored.forward_seconds,
                    "restore_seconds": stored.restore_seconds,
                    "sla_seconds": sla,
                    "within_sla": stored.within(sla),
                    "backup": stored.backup_id,
                    "previous": stored.previous,
                    "release": stored.release,
                    "hosts": list(measured.hosts),
                    "reason": reason,
                    "why": why or None,
                },
            )
        return stored

    # -- a drill cut short --

    def _finish_last(self, env: Environment) -> None:
        """After a drill that did not pass (its process died, or its rollback could not finish
        and `resume` finished it), its hosts may still run P: roll them forward to R again
        through the one path, unless something since (a stage, a rollback) chose what they run.
        A drill whose process died (its record still `running`) is recorded failed."""
        last = self.store.drills(env.name)[-1:]
        if not last or last[0].status == "passed":
            return
        old = last[0]
        since = [r for r in self.store.rollbacks(env.name) if r.started_at >= old.started_at]
        if any(r.cause is not Cause.DRILL for r in since) or any(
            run.environment == env.name and run.started_at >= old.started_at for run in self.store.stage_runs()
        ):
            return
        hosts = {host for rollback in since for host in rollback.plan}
        cohort = replace(env, hosts=tuple(h for h in env.hosts if h.name in hosts))
        with self.hold(cohort, f"drill {env.name}: finish drill {old.id}", armed=True) as held:
            current = self.store.get_drill(old.id)
            if current is None or current.status == "passed":
                return
            self.refuse_open_runs(env)
            views = held.deployer.ask_every_host(f"finish drill {old.id}") if cohort.hosts else {}
            back = {name for name, view in views.items() if old.previous and view.current == old.previous}
            forward = ""
            if back and old.release and old.previous:
                path = Rollbacks.like(self)
                rollback = path.begin(
                    held,
                    Cause.DRILL,
                    [old.previous],
                    f"drill {old.id}: forward to {old.release}, as it did not finish",
                    target=old.release,
                    targets=dict.fromkeys(back, old.release),
                )
                self._complete(path.carry_out(held, rollback, views), f"the roll forward to {old.release}")
                forward = f"{', '.join(sorted(back))} rolled forward to {old.release} again"
            if current.status == "running":
                why = "interrupted: its process ended before it did" + (f"; {forward}" if forward else "")
                self._done(
                    old, Measured(release=old.release, previous=old.previous, hosts=tuple(sorted(hosts))), "", why
                )
            elif forward:
                self.journal.note(f"drill {old.id} of {env.name} did not finish: {forward}", environment=env.name)


def describe(drill: Drill, sla: float) -> str:
    """A drill's outcome in plain words: what was measured, against the rollback SLA."""
    parts = []
    if drill.rollback_seconds is not None:
        parts.append(
            f"rolled back from {drill.release} to {drill.previous} in {drill.rollback_seconds:.1f}s"
            + ("" if drill.forward_seconds is None else f" and forward again in {drill.forward_seconds:.1f}s")
        )
    if drill.restore_seconds is not None:
        parts.append(f"backup B-{drill.backup_id} restored in {drill.restore_seconds:.1f}s and verified")
    timed = [s for s in (drill.rollback_seconds, drill.restore_seconds) if s is not None]
    if timed:
        late = [s for s in timed if s > sla]
        parts.append(
            f"{'over' if late else 'within'} the rollback SLA of {span(sla)}"
            + (f" (the slowest took {span(max(late))})" if late else "")
        )
    text = f"drill {drill.id} of {drill.environment} {drill.status}"
    if drill.status == "failed":
        return text + f": {drill.detail}" + (f"; measured: {'; '.join(parts)}" if parts else "")
    if drill.detail:
        parts.append(drill.detail)
    return text + (f": {'; '.join(parts)}" if parts else "")


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
