"""Moving releases: promote and run stages, approve or reject one, abort a promotion, roll an
environment back by hand, redeploy hosts in doubt, resume what a dead process left."""

from __future__ import annotations

from dataclasses import asdict

import click

from ..errors import NeedsHuman, UsageError
from ..names import STAGE_ORDER
from .app import App
from .base import cli, command, known_environment, unknown_release, validate_release_id
from .complete import complete_environments, complete_releases


@command(
    cli,
    examples=("releaser promote 2.4.0", 'releaser promote 2.4.0 --to gray --force --reason "hotfix INC-42"'),
    exits=(0, 1, 2, 3, 4, 5),
)
@click.argument("version", shell_complete=complete_releases)
@click.option("--to", "to_stage", type=click.Choice(STAGE_ORDER), help="The stage to run (default: the next one).")
@click.option("--force", is_flag=True, help="Allow skipping stages that have not passed, or promoting during a freeze.")
@click.option("--reason", default="", help="Why (required with --force; journaled).")
@click.option("--wait", is_flag=True, help="A stage that needs approval: wait for the decision instead of exiting 5.")
@click.option("--ask-again", is_flag=True, help="Ask for approval again after a stage was rejected.")
def promote(
    app: App, version: str, to_stage: str | None, force: bool, reason: str, wait: bool, ask_again: bool
) -> None:
    """Run the next stage of VERSION (or --to STAGE)."""
    validate_release_id(version)
    app.recorded_state(unknown_release(version))
    run = app.pipeline().promote(version, to_stage, force=force, reason=reason, wait=wait, ask_again=ask_again)
    app.out.emit({"ok": True, "release": version, "runs": [asdict(run)] if run else []})


@command(cli, examples=("releaser run 2.4.0", "releaser run 2.4.0 --to gray"), exits=(0, 1, 2, 3, 4, 5))
@click.argument("version", shell_complete=complete_releases)
@click.option("--to", "to_stage", type=click.Choice(STAGE_ORDER), help="Stop after this stage (default: the last).")
@click.option("--force", is_flag=True, help="Promote during a freeze (needs --reason; journaled).")
@click.option("--reason", default="", help="Why (required with --force; journaled).")
@click.option("--wait", is_flag=True, help="Wait for the approval a stage needs instead of exiting 5.")
@click.option("--ask-again", is_flag=True, help="Ask for approval again after a stage was rejected.")
def run(app: App, version: str, to_stage: str | None, force: bool, reason: str, wait: bool, ask_again: bool) -> None:
    """Run every remaining stage of VERSION, in order."""
    validate_release_id(version)
    app.recorded_state(unknown_release(version))
    if force and not reason.strip():
        raise UsageError("--force needs --reason TEXT, which is journaled")
    runs = app.pipeline().run(version, to_stage, force=force, reason=reason, wait=wait, ask_again=ask_again)
    app.out.emit({"ok": True, "release": version, "runs": [asdict(r) for r in runs]})


def _decide(app: App, version: str, stage: str | None, reason: str, approve: bool, force: bool = False) -> None:
    from ..decisions import decide

    validate_release_id(version)
    store = app.recorded_state(unknown_release(version))
    config = app.config()
    request = decide(
        store, app.journal(), version, stage, approve, reason, config.freezes, config.stage_environment, force
    )
    app.out.result(f"{request.stage} of {version}: {request.state} by {request.decided_by}")
    app.out.emit(
        {
            "ok": True,
            "release": version,
            "stage": request.stage,
            "state": request.state,
            "by": request.decided_by,
            "requested_by": request.requested_by,
        }
    )


@command(
    cli,
    examples=(
        'releaser approve 2.4.0 --reason "canary numbers look right"',
        'RELEASER_ACTOR=alice releaser approve 2.4.0 --stage full --reason "CAB-118"',
    ),
    exits=(0, 2, 3),
)
@click.argument("version", shell_complete=complete_releases)
@click.option("--stage", type=click.Choice(STAGE_ORDER), help="The stage (default: the one awaiting approval).")
@click.option("--reason", required=True, help="Why (journaled).")
@click.option("--force", is_flag=True, help="Approve through a freeze of the stage's environment (journaled).")
def approve(app: App, version: str, stage: str | None, reason: str, force: bool) -> None:
    """Approve the stage of VERSION that awaits approval; a waiting or later `promote` runs it."""
    _decide(app, version, stage, reason, approve=True, force=force)


@command(cli, examples=('releaser reject 2.4.0 --reason "error budget spent this week"',), exits=(0, 2, 3))
@click.argument("version", shell_complete=complete_releases)
@click.option("--stage", type=click.Choice(STAGE_ORDER), help="The stage (default: the one awaiting approval).")
@click.option("--reason", required=True, help="Why (journaled).")
def reject(app: App, version: str, stage: str | None, reason: str) -> None:
    """Reject the stage of VERSION that awaits approval; its promotion exits 3."""
    _decide(app, version, stage, reason, approve=False)


@command(cli, examples=('releaser abort 2.4.0 --reason "support reports checkout errors"',), exits=(0, 2, 3, 4))
@click.argument("version", shell_complete=complete_releases)
@click.option("--reason", required=True, help="Why (journaled).")
def abort(app: App, version: str, reason: str) -> None:
    """Roll back the promotion of VERSION in progress, from any runner: the process running it
    rolls its stage back (or this one does, when that process is gone); waits for the outcome."""
    validate_release_id(version)
    app.recorded_state(unknown_release(version))
    from ..recovery import Recovery

    run = app.operation(Recovery).abort(version, reason)
    if run is None:
        app.out.result(f"{version}: approval requests cancelled; nothing had started")
    else:
        app.out.result(f"{run.stage} of {version} on {run.environment}: {run.status}")
    app.out.emit({"ok": True, "release": version, "run": asdict(run) if run else None})


@command(
    cli,
    examples=(
        "releaser rollback prod --dry-run",
        'releaser rollback prod --reason "customer report"',
        'releaser rollback prod --to 2.3.1 --reason "INC-42"',
    ),
    exits=(0, 2, 3, 4),
)
@click.argument("environment", shell_complete=complete_environments)
@click.option(
    "--to",
    "to_version",
    shell_complete=complete_releases,
    help="The release to go back to (default: each host's previous one).",
)
@click.option("--reason", default="", help="Why (required, journaled).")
@click.option("--dry-run", is_flag=True, help="Ask the hosts and print the plan; change nothing.")
def rollback(app: App, environment: str, to_version: str | None, reason: str, dry_run: bool) -> None:
    """Roll ENVIRONMENT back by hand: every host to the release it ran before (or --to VERSION)."""
    if to_version:
        validate_release_id(to_version)
    known_environment(app, environment)
    if not dry_run and not reason.strip():
        raise UsageError("rollback needs --reason TEXT, which is journaled (or --dry-run to see the plan)")
    app.recorded_state(f"nothing to roll back on {environment}: releaser has recorded no deployment there")
    if dry_run:
        from ..rollback import Rollbacks

        plan, schema, passed_over = app.operation(Rollbacks).dry_run(environment, to_version)
        moving = {host: step for host, step in plan.items() if step["to"]}
        if schema and schema.startswith("refused: "):  # as the rollback itself would be: exit 4
            raise NeedsHuman(f"the rollback of {environment} would be refused: {schema.removeprefix('refused: ')}")
        if schema:
            app.out.result(f"  database: {schema}")
        if passed_over:
            app.out.result(f"  passing over {', '.join(passed_over)}: rolled back or failed (name one with --to)")
        for host, step in plan.items():
            app.out.result(
                f"  {host:<16} {step['runs'] or '-':<14} -> {step['to']}"
                if step["to"]
                else f"  {host:<16} {step['runs'] or '-':<14}    stays"
            )
        app.out.result(
            f"{environment}: {len(moving)} of {len(plan)} host(s) would be switched back; nothing was changed"
            if moving
            else f"{environment}: nothing to roll back"
        )
        app.out.emit(
            {
                "ok": True,
                "environment": environment,
                "dry_run": True,
                "plan": plan,
                "database": schema,
                "passed_over": passed_over,
            }
        )
        return
    from ..rollback import Rollbacks

    switched = app.operation(Rollbacks).by_hand(environment, to_version, reason)
    app.out.emit({"ok": True, "environment": environment, "switched": switched})


@command(
    cli,
    examples=(
        'releaser redeploy prod --reason "app did not come back after the rollback"',
        'releaser redeploy prod --host web-3 --reason "restart hook fixed"',
    ),
    exits=(0, 2, 3, 4),
)
@click.argument("environment", shell_complete=complete_environments)
@click.option("--host", "hosts", multiple=True, help="A host to redeploy (repeatable; default: the hosts in doubt).")
@click.option("--reason", default="", help="Why (required, journaled).")
def redeploy(app: App, environment: str, hosts: tuple[str, ...], reason: str) -> None:
    """Put hosts back on what releaser says they run, through the normal switch (restart, verify):
    the cure for a host in doubt. Exit 4 names the hosts it could not heal."""
    known_environment(app, environment)
    if not reason.strip():
        raise UsageError("redeploy needs --reason TEXT, which is journaled")
    app.recorded_state(f"nothing to redeploy on {environment}: releaser has recorded no deployment there")
    from ..recovery import Recovery

    done = app.operation(Recovery).redeploy(environment, list(hosts), reason)
    app.out.result(
        f"{environment}: redeployed {len(done)} host(s)"
        + (
            ": " + ", ".join(f"{host} on {version}" for host, version in sorted(done.items()))
            if done
            else " (none is in doubt)"
        )
    )
    app.out.emit({"ok": True, "environment": environment, "redeployed": done})


@command(cli, examples=("releaser resume", "releaser resume --rollback"), exits=(0, 1, 2, 3, 4))
@click.option("--rollback", "roll_back", is_flag=True, help="Roll interrupted stages back instead of finishing them.")
def resume(app: App, roll_back: bool) -> None:
    """Finish, or roll back, promotions whose process died, after reading what the hosts run."""
    from ..recovery import Recovery

    runs: list = []
    other: list[str] = []
    if app.existing_store():
        recovery = app.operation(Recovery)
        runs, other = recovery.resume(roll_back), recovery.finished_other
    for words in other:
        app.out.result(words)
    if not runs and not other:
        app.out.result("nothing to resume")
    app.out.emit({"ok": True, "runs": [asdict(r) for r in runs], "finished": other})
