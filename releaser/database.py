"""The app's database, as the playbook's migration tool reaches it from the environment's
migration host: where it stands, and the schema steps releaser runs on it (a release's expand
and contract steps, a rollback's `down`), each after a backup.

Every step is recorded in the store and journaled before it runs (`migration.started`) and after
(`migration.done` / `migration.failed`, with the versions `current` said before and after), and
on the host in its record. A step first asks the database where it stands and does nothing when
it is already there, so a step cut short (the process killed, the connection lost) is finished by
running it again: `resume`, or the next promotion or look of `watch`. The environment's lock makes
it run once however many runners there are; the host's lock waits for a step still running there.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from . import playbook as pb
from .contracts import Pending, pending_contracts
from .dbschema import EMPTY, History, Plan, describe_undo, shown
from .deploy import Deployer, session_timeout
from .errors import NeedsHuman, ReleaserError
from .events import Event
from .model import CONTROLLER, Backup, Environment, Host, Migration, MigrationStatus, Release, utcnow
from .operation import Held, Operation
from .record import Record


class Outcome(Record):
    """What a step's script said: `current` before and after, the backup, whether it had nothing to do."""

    before: str | None = None
    after: str | None = None
    backup: Backup | None = None
    already: bool = False


class StepFailed(ReleaserError):
    """A schema step did not reach its target; the message says where the database is and why.
    `setup`: it failed before the tool ran the step (the host, the backup, `current`): nothing
    was shown wrong with the release."""

    def __init__(self, message: str, outcome: Outcome | None = None, setup: bool = False):
        super().__init__(message)
        self.outcome = outcome or Outcome()
        self.setup = setup


class Database:
    """One environment's database, through its migration host (an environment held)."""

    def __init__(self, operation: Operation, env: Environment, deployer: Deployer):
        """`deployer`: over a fleet of `env`'s hosts (held for a step; a look only asks)."""
        self.store, self.journal, self.config = operation.store, operation.journal, operation.config
        self.env, self.deployer = env, deployer
        spec = deployer.playbook.migrate
        if spec is None:
            raise NeedsHuman(f"{env.name}'s playbook {deployer.playbook.file} has no `migrate:`")
        self.spec = spec
        self.said = ""  # the last line `current` printed, when asked
        # the configured one, also when `env` is held with a cohort of its hosts (a drill)
        configured = operation.config.environments.get(env.name, env)
        self.on_controller = configured.migrates_on_controller
        if self.on_controller:  # releases are unpacked under the state's directory, as on a host
            root = operation.config.state_path.parent / CONTROLLER / env.name
            self.host = Host(CONTROLLER, "127.0.0.1", str(root.resolve()), dict(configured.vars))
        else:
            self.host = configured.migration_host

    @contextlib.contextmanager
    def _on_host(self) -> Iterator[Deployer]:
        """A deployer that reaches the migration host: the environment's, or this machine's
        (`migrate_on: controller`, through the local transport, for this call)."""
        if not self.on_controller:
            yield self.deployer
            return
        from dataclasses import replace

        from .fleet import Fleet
        from .transport import transport_for

        here = replace(self.env, transport="local", hosts=(self.host,), router=None)
        with Fleet(here, transport_for(here)) as fleet:
            deployer = self.deployer
            yield Deployer(here, deployer.playbook, self.store, self.journal, fleet, None, deployer.registries)

    @classmethod
    def of(cls, operation: Operation, held: Held) -> Database:
        return cls(operation, held.env, held.deployer)

    @functools.cached_property
    def history(self) -> History:
        """The releases' schema steps, read once for this look at the database."""
        return History(self.store.list_releases())

    # -- where it stands --

    def known_version(self) -> str | None:
        """Where the last migration left the database, as recorded: None when no migration
        ran here or the last one never said (ask the database)."""
        migrations = self.store.migrations(self.env.name)
        if not migrations:
            return None
        last = migrations[-1]
        if last.status is MigrationStatus.RUNNING or last.to_version in (None, "?"):
            return None
        return last.to_version

    def version(self) -> str:
        """Where the database stands: as recorded, else asked."""
        known = self.known_version()
        return known if known is not None else self.ask()

    def ask(self) -> str:
        """Run the tool's `current` on the migration host; its version ("" for an empty schema).
        It runs in the release the host runs, else in the newest one prepared there: a tool of
        a release older than the database may not know its version."""
        script = pb.current_script(self.spec, self.host, self.env)
        with self._on_host() as deployer:
            outcome = deployer.fleet.run("schema", [self.host], lambda _: script, timeout=self.spec.timeout)[
                self.host.name
            ]
        if not outcome.ok:
            raise NeedsHuman(
                f"cannot ask the database of {self.env.name} where it stands "
                f"(`{self.spec.current}` on {self.host.name}): {outcome.why()}"
            )
        found = EMPTY
        for line in outcome.stdout.splitlines():
            if line.startswith(f"{pb.SCHEMA_MARKER} now"):
                found = line.split(" ", 2)[2].strip() if line.count(" ") >= 2 else EMPTY
            elif line.startswith(f"{pb.SCHEMA_MARKER} said"):
                self.said = line.split(" ", 2)[2][:200] if line.count(" ") >= 2 else ""
        return found

    def observe(self) -> str:
        """Ask the database where it stands and, when that is not where the last step left it
        (a backup restored by hand, a change outside releaser), record what was found: rollbacks
        and steps plan from it from now on."""
        known, found = self.known_version(), self.ask()
        history = self.history
        if history and history.index(found) is None:  # not a version: what the tool printed is noise
            self.journal.note(
                f"{self.env.name}: `{self.spec.current}` printed {self.said!r} last, and no release declares "
                f"{found!r}: not recorded; make the command print the version on its last line",
                environment=self.env.name,
            )
            return found
        if found != known:
            with self.store.transaction():
                migration = self.store.start_migration(self.env.name, "", "found", found, known)
                self.store.update_migration(
                    migration.id,
                    status=MigrationStatus.DONE,
                    finished_at=utcnow(),
                    to_version=found,
                    detail="asked: not where the last step left it" if known is not None else "asked",
                )
                self.journal.record(
                    Event.MIGRATION_FOUND,
                    f"{self.env.name}: the database is at {shown(found)}"
                    + (f", not at {shown(known)} where the last step left it: recorded" if known is not None else ""),
                    environment=self.env.name,
                    data={"migration": migration.id, "found": found, "recorded": known, "host": self.host.name},
                )
        return found

    def needs(self, releases: set[str], where: Callable[[], str] | None = None) -> Plan | None:
        """What the database needs before hosts run `releases` (a rollback's targets): None
        when every one runs on it (or no release declares schema steps); else the plan of the
        release that needs the deepest `down`, or one that cannot run here at all (`why`).
        `where` says where it stands (`ask`, `observe`), only when that matters: by default as
        recorded, else asked."""
        history = self.history
        if not history or not releases:
            return None
        current = (where or self.version)()
        plans = [history.plan(release, current) for release in sorted(releases)]
        unfit = [plan for plan in plans if not plan.fits]
        if not unfit:
            return None
        refused = [plan for plan in unfit if plan.why]
        if refused:
            return refused[0]
        return min(unfit, key=lambda plan: _index_or_empty(history, plan.target or EMPTY))

    def refusal(self, plan: Plan) -> str:
        """Why `plan.release` cannot run on the database, and what can be done, in words."""
        history = self.history
        low, high = history.floor(plan.release), history.ceiling(plan.release)
        fitting = [
            backup
            for backup in self.store.backups(self.env.name)
            if (index := history.index(backup.schema_version)) is not None and low <= index <= high
        ]
        if fitting:
            backup = fitting[-1]
            restore = (
                f"restore backup {backup.name} (schema {shown(backup.schema_version)}, {backup.host}:{backup.path}, "
                f"taken {backup.created_at[:16].replace('T', ' ')} UTC) with the database's own tool"
            )
        else:
            restore = f"restore a backup of a schema {plan.release} runs on (none is recorded)"
        return (
            f"{plan.why}: {restore}, then `releaser migrate {self.env.name}` records where it stands and the "
            "rollback can go on; or roll forward with a fixed release"
        )

    def crossing(self, release: Release) -> str | None:
        """Why `release`'s expand step may not run yet, or None: a migration tool goes through
        every version on its way, so an expand step past a contract step that has not run would
        run that contract step too, before its rollback window closed."""
        history = self.history
        target = history.needed(release.version)
        goal = history.index(target) if target is not None else None
        if goal is None:
            return None
        before = [s for s in history.steps[:goal] if s.phase == "contract" and s.release != release.version]
        if not before:
            return None
        known = self.known_version()
        try:
            at = history.index(known if known is not None else self.ask())
        except NeedsHuman:
            return None  # the step itself asks, and says what it finds
        if at is None:
            return None  # the step itself stops at a version nobody declared
        waiting = [s for s in history.steps[at + 1 : goal] if s in before]
        if not waiting:
            return None
        step = waiting[0]
        pending = next(
            (p for p in pending_contracts(self.config, self.store, self.env.name) if p.release == step.release), None
        )
        if pending is None or pending.due_at is None:
            way = (
                f"neither {step.release} nor a later release has passed {self.env.name}'s last stage, so that step "
                f"has not run: promote {step.release} (or a fixed release after it) there first; its contract step "
                f"runs once that window closes, then {release.version}"
            )
        else:
            way = (
                f"{pending.describe()}: promote {release.version} after it runs, or run it now with "
                f"`releaser migrate {self.env.name} --contract --force --reason TEXT`"
            )
        return (
            f"{release.version}'s expand step to {target} would run {step.describe()} on the way; {way}; or pass "
            "--force --reason TEXT to run it now (hosts on a release that does not work after it will fail)"
        )

    # -- steps --

    def expand(self, release: Release, stage: str | None, run: str) -> Migration | None:
        """Take the database to the version `release` needs (its expand step, else the last one
        before it: `History.needed`) unless it is there (or past it) already."""
        target = self.history.needed(release.version)
        if target is None:
            return None
        return self._forward(release, "expand", target, stage, run)

    def contract(self, release: Release, run: str) -> Migration | None:
        target = release.schema.contract
        if target is None:
            return None
        return self._forward(release, "contract", target, None, run)

    def _forward(self, release: Release, phase: str, target: str, stage: str | None, run: str) -> Migration | None:
        history = self.history
        satisfied = history.satisfied(target)
        known = self.known_version()
        if known is not None and known in satisfied:
            return None
        index = history.index(target) or 0
        expected = (EMPTY, *(s.version for s in history.steps[:index]))
        owner = history.steps[index].release if history.steps else release.version
        why = "" if owner == release.version else f"{owner}'s expand step, which {release.version} was built on"
        return self.step(release, phase, target, satisfied, expected, stage, run, why=why)

    def down(self, plan: Plan, rollback_id: int | None, stage: str | None, run: str) -> Migration:
        """A rollback's down steps, run with the newest undone release's tool (it knows them)."""
        newest = self.store.get_release(plan.undo[0].release)
        if newest is None:
            raise StepFailed(f"{plan.undo[0].release} is no longer registered: its `down` cannot run")
        target = plan.target or EMPTY
        return self.step(newest, "down", target, (target,), (), stage, run, rollback_id, describe_undo(plan))

    def to(self, release: Release, target: str, run: str, why: str) -> Migration:
        """`releaser migrate ENV --to VERSION`: up or down from wherever the database stands,
        with `release`'s tool (the repair after a step that stopped between versions)."""
        history = self.history
        at, goal = history.index(self.ask()), history.index(target)
        phase = "down" if at is not None and goal is not None and goal < at else "up"
        return self.step(release, phase, target, (target,), (), None, run, why=why)

    def step(
        self,
        release: Release,
        phase: str,
        target: str,
        satisfied: tuple[str, ...] | list[str],
        expected: tuple[str, ...],
        stage: str | None,
        run: str,
        rollback_id: int | None = None,
        why: str = "",
    ) -> Migration:
        """Journal, back up, run, journal. Raises StepFailed when the database did not get there."""
        env, host = self.env.name, self.host
        tag = {"environment": env, "release": release.version, "stage": stage}
        known = self.known_version()
        backup_path = None
        if self.spec.backup is not None:
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            backup_path = f"{host.root.rstrip('/')}/backups/{env}-{stamp}-{release.version}-{phase}.dump"
        with self.store.transaction():
            cut_short = [m for m in self.store.migrations(env) if m.status is MigrationStatus.RUNNING]
            for stale in cut_short:  # its process died (this one holds the lock); this step says how it ended
                self.store.update_migration(
                    stale.id,
                    status=MigrationStatus.FAILED,
                    finished_at=utcnow(),
                    detail="cut short (its process ended); run again after it",
                )
            migration = self.store.start_migration(env, release.version, phase, target, known, rollback_id, backup_path)
            self.journal.record(
                Event.MIGRATION_STARTED,
                f"{release.version}: {phase} step of {env}'s database to {shown(target)}"
                + (f" ({why})" if why else "")
                + f", from {shown(known) if known is not None else 'where it stands'}, on {host.name}",
                data={
                    "migration": migration.id,
                    "phase": phase,
                    "target": target,
                    "from": known,
                    "host": host.name,
                    "rollback": rollback_id,
                },
                **tag,
            )
        recorded = {backup.path for backup in self.store.backups(env)}
        earlier = {m.backup_path: m for m in cut_short if m.backup_path and m.backup_path not in recorded}
        step = pb.SchemaStep(
            release=release.version,
            phase=phase,
            target=target,
            satisfied=tuple(satisfied),
            expected=expected,
            backup_path=backup_path,
            backup_required=self.env.backups == "required",
            image=release.image,
            earlier_backups=tuple(earlier),
        )
        try:
            outcome = self._run(release, step, run, earlier)
        except StepFailed as failed:
            self._finish(migration, tag, failed.outcome, str(failed))
            raise
        if outcome.already:  # a step cut short that got there on the host before its process could say
            for stale in cut_short:
                if stale.target == target:
                    self.store.update_migration(
                        stale.id,
                        status=MigrationStatus.DONE,
                        to_version=outcome.after,
                        detail=f"its process ended before it could say; migration {migration.id} found the database "
                        "there",
                    )
        return self._finish(migration, tag, outcome)

    def _run(self, release: Release, step: pb.SchemaStep, run: str, earlier: dict[str, Migration]) -> Outcome:
        with self._on_host() as deployer:
            return self._run_on(deployer, release, step, run, earlier)

    def _run_on(
        self, deployer: Deployer, release: Release, step: pb.SchemaStep, run: str, earlier: dict[str, Migration]
    ) -> Outcome:
        """Prepare the release on the migration host, then run the step's script there (detached)."""
        host, phase, target = self.host, step.phase, step.target
        op = pb.new_op()
        prepared = deployer.prepare(release, [host], {host.name: op}, run, stoppable=False)[host.name]
        if not prepared.ok:
            raise StepFailed(
                f"{release.version} could not be prepared on {host.name} to run the tool: {prepared.why()}", setup=True
            )
        body = pb.schema_step_script(self.spec, host, self.env, step, op + "m", run)
        script = pb.detached(body, host, op + "m", run, "migrate", release.version, self.spec.timeout)
        result = deployer.fleet.run(
            "migrate", [host], lambda _: script, timeout=session_timeout(self.spec.timeout), own=True
        )[host.name]
        outcome = Outcome()
        for line in result.stdout.splitlines():
            words = line.split(" ", 3)
            if words[0] == pb.SCHEMA_MARKER and len(words) >= 2:
                value = words[2].strip() if len(words) > 2 else EMPTY
                if words[1] == "before":
                    outcome.before = value
                elif words[1] == "after":
                    outcome.after = value
            elif words[0] == pb.BACKUP_MARKER and len(words) == 4 and words[1].isdigit():
                size, sha256, path = int(words[1]), words[2], words[3]
                if path == step.backup_path:
                    outcome.backup = self._record_backup(release.version, path, size, sha256, outcome.before)
                elif path in earlier:  # written by a step cut short, before its process could say
                    cut = earlier[path]
                    found = self._record_backup(cut.release, path, size, sha256, cut.from_version, " (cut short)")
                    self.store.update_migration(cut.id, backup_id=found.id)
            elif line.startswith("releaser: the database is already at"):
                outcome.already = True
        if not result.ok:
            choice = ""
            if result.exit_code == pb.EXIT_SCHEMA_ELSEWHERE:  # not where releaser can tell what to do: a person can
                choice = (
                    f"; look at it with the tool (`releaser migrate {self.env.name}`), then take it to {shown(target)} "
                    f"with `releaser migrate {self.env.name} --to {target or 'VERSION'} --reason TEXT` and promote "
                    "again, or restore the last backup (`releaser backups "
                    f"{self.env.name}`)"
                )
            # before the tool ran (no `after`): the host, the backup, `current`, a database between versions
            setup = outcome.after is None and (result.exit_code is None or result.exit_code in pb.SETUP_EXITS)
            raise StepFailed(f"on {host.name}: {result.why()}{choice}", outcome, setup)
        if outcome.backup is None and self.spec.backup is not None and not outcome.already:
            # why, as the step's script said it; the tool's own output comes after that line
            said = [line for line in result.stderr.splitlines() if line.endswith("(backups: optional)")]
            self.journal.record(
                Event.BACKUP_SKIPPED,
                f"{self.env.name}: no backup before {release.version}'s {phase} step (backups: optional): "
                f"{(said[-1].removeprefix('releaser: ') if said else result.stderr.strip())[-300:]}",
                environment=self.env.name,
                release=release.version,
                data={"host": host.name},
            )
        return outcome

    def _record_backup(
        self, release: str, path: str, size: int, sha256: str, schema: str | None, note: str = ""
    ) -> Backup:
        with self.store.transaction():
            backup = self.store.add_backup(self.env.name, self.host.name, path, size, sha256, schema or EMPTY, release)
            self.journal.record(
                Event.BACKUP_DONE,
                f"{self.env.name}: backup {backup.name} of the database at {shown(backup.schema_version)}{note}: "
                f"{self.host.name}:{path} ({size} bytes, sha256 {sha256[:12]})",
                environment=self.env.name,
                release=release,
                data={
                    "backup": backup.id,
                    "host": self.host.name,
                    "path": path,
                    "size": size,
                    "sha256": sha256,
                    "schema": backup.schema_version,
                },
            )
        return backup

    def _finish(self, migration: Migration, tag: dict, outcome: Outcome, why: str = "") -> Migration:
        """Record how the step ended (`why` it failed, or "" when it got there)."""
        ok = not why
        with self.store.transaction():
            self.store.update_migration(
                migration.id,
                status=MigrationStatus.DONE if ok else MigrationStatus.FAILED,
                finished_at=utcnow(),
                from_version=outcome.before,
                to_version=outcome.after,
                backup_id=outcome.backup.id if outcome.backup else None,
                detail="already there" if outcome.already else why,
            )
            stored = self.store.get_migration(migration.id) or migration
            if ok:
                self.journal.record(
                    Event.MIGRATION_DONE,
                    f"{migration.release}: {migration.phase} step of {self.env.name}'s database: "
                    + (
                        f"already at {shown(outcome.after)}"
                        if outcome.already
                        else f"{shown(outcome.before)} -> {shown(outcome.after)}"
                    )
                    + (f" (backup {outcome.backup.name})" if outcome.backup else ""),
                    data={
                        "migration": migration.id,
                        "phase": migration.phase,
                        "from": outcome.before,
                        "to": outcome.after,
                        "already": outcome.already,
                        "backup": outcome.backup.id if outcome.backup else None,
                        "rollback": migration.rollback_id,
                    },
                    **tag,
                )
            else:
                self.journal.record(
                    Event.MIGRATION_FAILED,
                    f"{migration.release}: {migration.phase} step of {self.env.name}'s database failed: {why}",
                    data={
                        "migration": migration.id,
                        "phase": migration.phase,
                        "reason": why,
                        "from": outcome.before,
                        "to": outcome.after,
                        "backup": outcome.backup.id if outcome.backup else None,
                        "rollback": migration.rollback_id,
                    },
                    **tag,
                )
        return stored

    def restore(self, backup: Backup, release: Release) -> float:
        """A restore drill: `backup` restored into a scratch database by the playbook's `restore`
        (its sha256 checked first) and checked by `verify`, with `release`'s tool; how long the
        restore took. StageFailed with the host's words when the file changed or is gone, or
        `restore` or `verify` failed."""
        from .errors import StageFailed

        if not self.spec.restore or not self.spec.verify:
            raise NeedsHuman("a restore drill needs `restore` and `verify` in the playbook's `migrate:`")
        script = pb.restore_drill_script(
            self.spec, self.host, self.env, release.version, release.image, backup.path, backup.sha256
        )
        started = time.monotonic()
        with self._on_host() as deployer:
            result = deployer.fleet.run("restore", [self.host], lambda _: script, timeout=self.spec.timeout)[
                self.host.name
            ]
        seconds = time.monotonic() - started
        if not result.ok:
            raise StageFailed(f"the restore drill of backup {backup.name} on {self.host.name} failed: {result.why()}")
        for line in result.stdout.splitlines():
            words = line.split()
            if len(words) == 2 and words[0] == pb.RESTORE_MARKER:
                try:
                    return float(words[1])
                except ValueError:
                    break
        return seconds


def _index_or_empty(history: History, version: str) -> int:
    index = history.index(version)
    return -1 if index is None else index


def run_contract(
    operation: Operation, pending: Pending, command: str, again: bool = False, armed: bool = False
) -> Migration | None:
    """Run a contract step that is due (`again`: after a failed attempt), holding its
    environment (BusyError when another holds it); looked at again under the lock. None when
    another runner did it meanwhile."""
    env = operation.environment(pending.environment)
    with operation.hold(env, command, armed=armed) as held:
        mine = pending_contracts(operation.config, operation.store, env.name)
        if not any(p.release == pending.release and p.due(again=again) for p in mine):
            return None
        release = operation.release(pending.release)
        return Database.of(operation, held).contract(release, f"contract-{release.version}")
