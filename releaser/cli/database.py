"""The app's database: `migrate` (where it stands, contract steps, a repair), `backups`, and `drill`
(the rollback and a restore, rehearsed)."""

from __future__ import annotations

from dataclasses import asdict

import click

from ..errors import Refused, UsageError
from .app import App
from .base import cli, command, known_environment
from .complete import complete_environments


@command(
    cli,
    examples=(
        "releaser migrate prod",
        "releaser migrate prod --contract",
        'releaser migrate prod --contract --force --reason "verified by hand, window not needed"',
        'releaser migrate prod --to 0042 --reason "finish the step cut short"',
    ),
    exits=(0, 1, 2, 3, 4),
    meanings={
        0: "done, or nothing to do",
        1: "the step failed (journaled, with where the database is); the hosts are untouched",
        3: "the environment is locked, or the contract step may not run yet (its window is open, or a host "
        "runs a release that would not work after it)",
    },
)
@click.argument("environment", shell_complete=complete_environments)
@click.option("--contract", is_flag=True, help="Run the contract step whose rollback window has closed.")
@click.option("--to", "to_version", help="Take the database up or down to VERSION with the migration tool (a repair).")
@click.option("--force", is_flag=True, help="With --contract: close the rollback window now (needs --reason).")
@click.option("--reason", default="", help="Why (journaled); needed with --force and --to.")
def migrate(app: App, environment: str, contract: bool, to_version: str | None, force: bool, reason: str) -> None:
    """Where the database of ENVIRONMENT stands (asked with the playbook's `migrate.current`), the
    steps run there and the contract steps waiting; --contract runs the one that is due (`watch`
    runs it by itself at its next look), --to repairs a step that stopped between versions."""
    known_environment(app, environment)
    config = app.config()
    env = config.environments[environment]
    if config.playbooks[env.playbook].migrate is None:
        raise UsageError(f"{environment}'s playbook {config.playbooks[env.playbook].file} has no `migrate:`")
    if contract and to_version:
        raise UsageError("--contract runs a release's contract step; --to takes the database to a version: one of them")
    if force and not contract:
        raise UsageError("--force closes a rollback window early: it goes with --contract")
    if (force or to_version) and not reason.strip():
        raise UsageError(f"{'--force' if force else '--to'} needs --reason TEXT, which is journaled")
    if contract:
        _contract(app, environment, force, reason)
    elif to_version:
        _to(app, environment, to_version, reason)
    else:
        _show(app, environment)


def _show(app: App, environment: str) -> None:
    from ..contracts import pending_contracts
    from ..database import Database
    from ..errors import BusyError
    from ..pipeline import Pipeline

    operation = app.operation(Pipeline)
    env = operation.environment(environment)
    try:  # holding the environment, what is found is recorded (a backup restored by hand, say)
        with operation.hold(env, f"migrate {environment}") as held:
            database = Database.of(operation, held)
            current = database.observe()
    except BusyError:  # a step may be running: look only
        with operation.look(env) as deployer:
            database = Database(operation, env, deployer)
            current = database.ask()
        app.out.say(f"{environment} is held by another command: where the database stands is shown, not recorded")
    history = database.history
    store = operation.store
    app.out.result(f"{environment}: the database is at {current or 'an empty schema'} (asked on {database.host.name})")
    if history.index(current) is None:
        app.out.result(
            f"  no release declares {current} (`release create --expand/--contract`); "
            f"`{database.spec.current}` printed last: {database.said!r}"
        )
    for migration in store.migrations(environment)[-10:]:
        app.out.result(
            f"  {migration.started_at[:19].replace('T', ' ')}  {migration.release or '-':<12} {migration.phase:<8} "
            f"{migration.from_version or '-'} -> {migration.to_version or '?'}  {migration.status}"
            + (f": {app.out.told(migration.detail)}" if migration.detail else "")
        )
    pending = pending_contracts(app.config(), store, environment)
    for item in pending:
        app.out.result(f"  {item.describe()}")
    app.out.emit(
        {
            "ok": True,
            "environment": environment,
            "current": current,
            "migrations": [asdict(m) for m in store.migrations(environment)],
            "pending": [
                {**asdict(p), "due_at": p.due_at.isoformat() if p.due_at else None, "words": p.describe()}
                for p in pending
            ],
        }
    )


def _contract(app: App, environment: str, force: bool, reason: str) -> None:
    from ..contracts import pending_contracts
    from ..database import StepFailed, run_contract
    from ..errors import StageFailed
    from ..pipeline import Pipeline
    from ..windows import armed_windows, close_window

    operation = app.operation(Pipeline)
    store, config = operation.store, app.config()
    pending = pending_contracts(config, store, environment)
    if not pending:
        app.out.result(f"{environment}: no contract step is waiting")
        app.out.emit({"ok": True, "environment": environment, "migration": None})
        return
    item = pending[0]
    if item.blocked or item.due_at is None:
        raise Refused(item.describe())
    if not item.due(again=True):
        if not force:
            raise Refused(f"{item.describe()}; pass --force --reason TEXT to close the window now (journaled)")
        for window in armed_windows(config, store):
            if window.run.environment == environment and window.run.release == (item.carrier or item.release):
                close_window(store, operation.journal, window.run, f"closed by hand for its contract step: {reason}")
        item = next(p for p in pending_contracts(config, store, environment) if p.release == item.release)
    try:
        migration = run_contract(operation, item, f"migrate {environment} --contract", again=True, armed=True)
    except StepFailed as exc:
        raise StageFailed(
            f"{item.release}'s contract step on {environment} failed: {exc}; the hosts are untouched"
        ) from None
    if migration is None:
        app.out.result(f"{environment}: another runner ran {item.release}'s contract step meanwhile")
    app.out.emit({"ok": True, "environment": environment, "migration": asdict(migration) if migration else None})


def _to(app: App, environment: str, version: str, reason: str) -> None:
    from ..database import Database, StepFailed
    from ..dbschema import History
    from ..errors import StageFailed
    from ..pipeline import Pipeline

    operation = app.operation(Pipeline)
    history = History(operation.store.list_releases())
    goal = history.index(version)
    if goal is None:
        raise UsageError(f"no release declares schema version {version!r} (see `releaser release show`)")
    knowing = [s.release for s in history.steps[max(goal, 0) :]] or [r.version for r in history.releases]
    release = operation.release(knowing[-1])  # the newest tool knows every version before its own
    env = operation.environment(environment)
    with operation.hold(env, f"migrate {environment} --to {version}", armed=True) as held:
        try:
            Database.of(operation, held).to(release, version, f"repair-{version}", f"by hand: {reason}")
        except StepFailed as exc:
            raise StageFailed(f"the database of {environment} did not get to {version}: {exc}") from None
    app.out.emit({"ok": True, "environment": environment, "to": version})


@command(cli, examples=("releaser backups prod", "releaser backups prod --json"))
@click.argument("environment", shell_complete=complete_environments)
def backups(app: App, environment: str) -> None:
    """The backups taken before the database's migrations on ENVIRONMENT, newest first: where,
    how big, their sha256, and the schema version each holds."""
    known_environment(app, environment)
    store = app.store(read_only=True)
    found = list(reversed(store.backups(environment)))
    for backup in found:
        app.out.result(
            f"{backup.name:<6} {backup.created_at[:19].replace('T', ' ')}  "
            f"schema {backup.schema_version or 'empty':<10} {backup.size:>12} bytes  "
            f"sha256 {backup.sha256[:12]}  {backup.host}:{backup.path}"
        )
    if not found:
        app.out.result(f"{environment}: no backup yet (one is taken before every migration)")
    app.out.emit({"ok": True, "environment": environment, "backups": [asdict(b) for b in found]})


@command(
    cli,
    examples=(
        "releaser drill staging",
        'releaser drill prod --reason "quarterly rehearsal, off-peak"',
        "releaser drill prod --hosts web-9,web-10 --no-restore",
    ),
    exits=(0, 1, 2, 3, 4),
    meanings={
        0: "the drill passed (its message says how the timings compare with the rollback SLA)",
        1: "the restore drill failed (the backup changed, `restore` or `verify` failed); the hosts are back on "
        "their release",
        3: "the environment is locked or frozen",
        4: "the rollback could not finish (`releaser resume` finishes it), or the real rollback would be refused "
        "(the database), or hosts could not be asked",
    },
)
@click.argument("environment", shell_complete=complete_environments)
@click.option("--hosts", default="", help="Only these hosts, comma-separated (default: `drills.hosts`, else all).")
@click.option("--no-restore", is_flag=True, help="Rehearse the rollback only, not a restore of the newest backup.")
@click.option("--reason", default="", help="Why (journaled).")
def drill(app: App, environment: str, hosts: str, no_restore: bool, reason: str) -> None:
    """Rehearse the rollback of ENVIRONMENT: hosts that run one release go back to the release they
    ran before and forward again, through the real rollback path (no incident), timed against
    `report.rollback_sla`; then, when the playbook's `migrate:` has `restore` and `verify`, the
    newest backup is checked (sha256), restored into a scratch database and verified. A drill
    changes no schema: nothing to rehearse (hosts on different releases, no earlier release on
    record, a rollback that would run `down`) exits 2 with nothing changed. If it is cut short,
    `releaser resume` finishes its rollback and the next `releaser drill` rolls its hosts forward
    again first."""
    known_environment(app, environment)
    app.recorded_state(f"nothing to rehearse on {environment}: releaser has recorded no deployment there")
    from ..drills import Drills, describe

    names = [name.strip() for name in hosts.split(",") if name.strip()] or None
    done = app.operation(Drills).drill(environment, names, restore=not no_restore, reason=reason)
    sla = app.config().report.rollback_sla
    app.out.result(describe(done, sla))
    app.out.emit(
        {
            "ok": True,
            "environment": environment,
            "drill": asdict(done),
            "sla_seconds": sla,
            "within_sla": done.within(sla),
        }
    )
