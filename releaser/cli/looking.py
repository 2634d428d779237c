"""Looking at what releaser did and keeps doing: status, history, and `watch`, which keeps the
rollback windows armed."""

from __future__ import annotations

import sys
import threading

import click

from ..errors import EXIT_NEEDS_HUMAN, EXIT_STAGE_FAILED, UsageError
from ..terminal import shown_time
from .app import App
from .base import cli, command, duration_option
from .complete import complete_environments, complete_releases


def read_status(app: App) -> dict:
    """The status document (an empty one when there is no state yet)."""
    from ..status import status_document

    return status_document(app.config(), app.readable_store())


@command(cli, examples=("releaser status", "releaser status --json | jq '.environments.prod.current'"))
def status(app: App) -> None:
    """Which release each environment runs and on which hosts, every release's stages and why
    one failed, locks, rollback windows and whether a watch keeps them, effect reports."""
    from ..status import print_status

    document = read_status(app)
    if app.out.json:
        app.out.emit(document)
    else:
        print_status(document, app.out.result, relative=app.out.tty, told=app.out.told)


@command(cli, examples=("releaser history --release 2.4.0", "releaser history --env prod --limit 20 | less"))
@click.option("--release", "release_id", shell_complete=complete_releases, help="Only this release.")
@click.option("--env", "environment", shell_complete=complete_environments, help="Only this environment.")
@click.option("--limit", type=click.IntRange(min=1, max=10**9), default=None, help="Only the newest N events.")
def history(app: App, release_id: str | None, environment: str | None, limit: int | None) -> None:
    """The journal: every state change, oldest first."""
    from ..status import history_document
    from ..store import StoreMissing

    try:
        events = app.store(read_only=True).events(release=release_id, environment=environment, limit=limit)
    except StoreMissing as missing:
        app.out.say(f"note: {missing}", "yellow")
        events = []
    if app.out.json:
        app.out.emit(history_document(events))
        return
    for event in events:
        scope = "/".join(x for x in (event.environment, event.release, event.stage, event.host) if x)
        app.out.result(f"{shown_time(event.ts)}  {event.kind:<20} {scope:<28} {app.out.told(event.message)}")


@command(
    cli,
    examples=(
        "releaser watch",
        "* * * * *  releaser -C /srv/deploy watch --once --quiet   # cron",
        "RELEASER_ALERT_TOKEN=... releaser watch --listen 127.0.0.1:9095   # Alertmanager's webhook",
    ),
    exits=(0, 1, 2, 4),
)
@click.option("--once", is_flag=True, help="Look once at every armed window and exit (for cron and CI schedules).")
@click.option("--interval", default="30s", show_default=True, help="Time between looks.")
@click.option(
    "--listen",
    metavar="HOST:PORT",
    help="Also receive Alertmanager's webhook here: firing alerts that match an environment's `alerts:` roll it back.",
)
@click.option(
    "--token-env",
    default="RELEASER_ALERT_TOKEN",
    show_default=True,
    help="The variable holding the bearer token Alertmanager must send (with --listen).",
)
def watch(app: App, once: bool, interval: str, listen: str | None, token_env: str) -> None:
    """Keep rollback windows armed: re-run the checks of every stage still inside its window and
    roll back what fails. Exit 1 if --once rolled something back, 4 on an alarm."""
    from ..watch import Watcher, keep_watching, stop_on_signals

    pause = duration_option("--interval", interval, 0.1, 86400, "100ms and 1d")
    if listen and once:
        raise UsageError("--listen needs a daemon: it cannot go with --once")
    if once and app.existing_store() is None:
        app.out.result("no rollback window is open")
        app.out.emit(
            {
                "ok": True,
                "looks": 0,
                "windows": [],
                "rolled_back": [],
                "alarms": [],
                "blind": [],
                "closed": [],
                "elsewhere": [],
                "contracted": [],
                "reports": [],
            }
        )
        return
    watcher = Watcher(app.pipeline(), None if once else pause)
    stop, wake = stop_on_signals()
    receiver = _alert_receiver(app, listen, token_env, wake) if listen else None
    watched = keep_watching(
        watcher,
        stop,
        wake,
        receiver,
        app.journal_hangup,
        lambda exc: app.out.warn(f"watch: {exc}; looking again in {interval}"),
    )
    if once and watched.looks:
        for step in watched.last.get("contracted", []):
            app.out.result(f"ran the contract step of {step}")
        elsewhere = watched.last["elsewhere"]
        if elsewhere:
            app.out.result(f"{len(elsewhere)} window(s) watched by another watch: " + ", ".join(elsewhere))
        elif not watched.last["windows"]:
            app.out.result("no rollback window is open")
    if watched.stopped:
        app.out.say("watch stopped; windows stay armed in the store for the next `releaser watch`")
    app.out.emit(watched.to_dict())
    if watched.alarms:
        sys.exit(EXIT_NEEDS_HUMAN)
    if watched.rolled_back and once:  # a daemon's rollbacks are its job done: a service manager sees a normal stop
        sys.exit(EXIT_STAGE_FAILED)


def _alert_receiver(app: App, listen: str, token_env: str, wake: threading.Event):
    """Alertmanager's webhook endpoint for `watch --listen`: what it receives wakes the watch."""
    from .. import secrets
    from ..alerts import AlertReceiver, parse_address

    try:
        address = parse_address(listen)
    except ValueError as exc:
        raise UsageError(f"--listen: {exc}") from None
    token = secrets.read_env(token_env)
    if len(token) < 16:
        raise UsageError(
            f"--listen needs a bearer token of at least 16 characters in ${token_env}: Alertmanager "
            "sends it (http_config.authorization.credentials), anything else is refused"
        )
    config = app.config()
    if not any(env.alerts for env in config.environments.values()):
        app.out.warn("no environment has `alerts:`: notifications will be accepted and roll nothing back")
    try:
        receiver = AlertReceiver(address, token, app.store(), config.environments, lambda _new: wake.set())
    except OSError as exc:
        raise UsageError(f"--listen {listen}: {exc.strerror}") from None
    app.out.say(f"receiving Alertmanager's webhook on http://{listen}/alerts")
    return receiver.start()
