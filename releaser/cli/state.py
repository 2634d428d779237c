"""The state database and locks: rebuild it from the hosts, move it to PostgreSQL, clear a
stale lock."""

from __future__ import annotations

import click

from ..errors import UsageError
from .app import App
from .base import cli, command
from .complete import complete_environments


@cli.group()
def state() -> None:
    """The state database."""


@command(state, "rebuild", examples=("releaser state rebuild",), exits=(0, 2, 3, 4))
def state_rebuild(app: App) -> None:
    """Rebuild what every host runs from the hosts' own records (after the state database was lost)."""
    from ..recovery import Recovery

    rebuilt = app.operation(Recovery).rebuild()
    for env, hosts in rebuilt.items():
        versions = sorted({v or "nothing" for v in hosts.values()})
        app.out.result(f"{env}: {len(hosts)} host(s) run {', '.join(versions)}")
    app.out.emit({"ok": True, "environments": rebuilt})


@command(
    state,
    "migrate",
    examples=("RELEASER_DATABASE_URL=postgresql://releaser@db/releaser releaser state migrate --to postgresql",),
    exits=(0, 2, 3, 4),
)
@click.option("--to", "backend", type=click.Choice(["postgresql"]), required=True, help="Where the state goes.")
@click.option(
    "--url-env",
    default="RELEASER_DATABASE_URL",
    show_default=True,
    help="The variable holding the PostgreSQL URL (the password stays there).",
)
def state_migrate(app: App, backend: str, url_env: str) -> None:
    """Move the state from SQLite to PostgreSQL: every release, run, host and journal event, ids
    kept, compared row by row. Then set `state: {backend: postgresql}`; the SQLite file refuses
    further use, so no runner keeps writing to it."""
    from ..journal import Journal
    from ..processes import is_stale
    from ..store.move import move_to_postgres

    config = app.config()
    if config.state_backend != "sqlite":
        raise UsageError(f"the state of {config.path} is already on {config.state_backend}")
    where, copied = move_to_postgres(app.store(), config.state_path, url_env, config.state_wait, is_stale, Journal)
    app.out.result(
        f"moved {sum(copied.values())} rows to {where}, each compared with the original "
        f"({', '.join(f'{t} {n}' for t, n in copied.items() if n)})"
    )
    url_key = "" if url_env == "RELEASER_DATABASE_URL" else f", url_env: {url_env}"
    app.out.result(
        f"next: set `state: {{backend: postgresql{url_key}}}` "
        f"in {config.path.name}; {config.state_path.name} now refuses use"
    )
    app.out.emit({"ok": True, "to": where, "rows": copied})


@command(cli, examples=('releaser unlock prod --force --reason "holder wedged"',))
@click.argument("environment", shell_complete=complete_environments)
@click.option("--force", is_flag=True, required=True, help="Required: this clears a lock another process may hold.")
@click.option("--reason", required=True, help="Why (journaled).")
def unlock(app: App, environment: str, force: bool, reason: str) -> None:
    """Clear a stale lock on ENVIRONMENT."""
    from ..locks import clear_lock

    config = app.config()
    if environment not in config.environments:
        raise UsageError(f"unknown environment {environment!r}")
    store = app.existing_store()
    held = clear_lock(store, app.journal, environment, reason) if store else None
    if held is None:
        app.out.say(f"{environment} was not locked")
    app.out.emit({"ok": True, "environment": environment, "cleared": held is not None})
