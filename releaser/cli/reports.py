"""Effect reports: write one (a preview before it is due), or every report that is due, and
deliver them."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from ..report.outbox import Outcome

from ..errors import EXIT_NEEDS_HUMAN, UsageError
from ..terminal import shown_time
from .app import App
from .base import cli, command, unknown_release, validate_release_id
from .complete import complete_releases


@command(
    cli,
    examples=(
        "releaser report 2.4.0",
        "releaser report 2.4.0 --format md --out -",
        "releaser report due --send",
        "releaser report service --month 2026-11   # the month's service report of production",
        "releaser report service --month 2026-11 --env test --format json --out -",
        "releaser report service --month 2026-11 --send",
    ),
    exits=(0, 2, 4),
)
@click.argument("target", metavar="VERSION|due|service", shell_complete=complete_releases)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["html", "md", "json"]),
    help="Write this format to --out, or to stdout (default with --out: from its name, else html).",
)
@click.option("--out", type=click.Path(dir_okay=False, allow_dash=True), help="Write one format here ('-': stdout).")
@click.option("--send", is_flag=True, help="Deliver it (mail, webhook, copy under .releaser/reports/).")
@click.option("--force", is_flag=True, help="With --send: send a report whose delivery is unconfirmed again.")
@click.option("--release", "named", is_flag=True, help="TARGET is a release even if it is called `due` or `service`.")
@click.option("--month", help="With `service`: the month, YYYY-MM (default: the last month that has ended).")
@click.option("--env", "environment", help="With `service`: the environment (default: the last stage's).")
def report(
    app: App,
    target: str,
    fmt: str | None,
    out: str | None,
    send: bool,
    force: bool,
    named: bool,
    month: str | None,
    environment: str | None,
) -> None:
    """Write the effect report of VERSION (a preview before it is due), or with `due`, every
    report that is due, or with `service`, a month's service report of an environment. With
    --send, deliver them: each exactly once."""
    from ..report.dispatch import rendering, write_due, write_file
    from ..report.outbox import Outbox, produce, write_copies

    if target == "service" and not named:
        return service_report(app, month, environment, fmt, out, send, force)
    if month or environment:
        raise UsageError("--month and --env go with `releaser report service` (a release called service: --release)")
    config = app.config()
    due_now = target == "due" and not named
    if due_now and (out or fmt or force):
        raise UsageError("`report due` takes only --send")
    if not due_now:
        validate_release_id(target)
        if force and not send:
            raise UsageError("--force goes with --send")
        if send and (out or fmt):
            raise UsageError("--send delivers every format; leave out --out and --format")
    store = app.existing_store() if due_now else app.recorded_state(unknown_release(target))
    if store is None:
        app.out.result("no report is due")
        app.out.emit({"ok": True, "due": [], "sent": []})
        return
    outbox = Outbox(config, store, app.journal())
    if due_now:
        from ..report.monthly import due_service_reports, month_come_due, schedule_month

        come = month_come_due(config, store)
        if come is not None:  # scheduled now, as a send would: listed, and `status` shows it
            schedule_month(config, store, *come)
        due, monthly = outbox.due(), due_service_reports(store)
        outcomes = outbox.send_due() if send else []
        for item, path in [] if send else write_due(config, store, due):
            app.out.result(
                f"{item.release}: due since {shown_time(item.due_at)}; written to {path} (not sent: add --send)"
            )
        for scheduled in [] if send else monthly:
            app.out.result(
                f"the service report of {scheduled.environment} for {scheduled.month}: due since "
                f"{shown_time(scheduled.due_at)} (not sent: add --send)"
            )
        for outcome in outcomes:
            app.out.result(
                f"{outcome.name}: {outcome.state}"
                + (f": {outcome.detail}" if outcome.detail else "")
                + (f" ({outcome.path})" if outcome.path and outcome.state in ("sent", "written") else ""),
                "red" if outcome.needs_human else None,
            )
        if not due and not monthly and not outcomes:
            app.out.result("no report is due")
        service_keys = {f"service:{r.environment}:{r.month}" for r in monthly}
        service_keys |= {f"service:{o.environment}:{o.month}" for o in outcomes if o.month}
        app.out.emit(
            {
                "ok": not any(o.needs_human for o in outcomes),
                "due": [i.release for i in due] + sorted(service_keys),
                "sent": [asdict(o) for o in outcomes],
            }
        )
        if any(o.needs_human for o in outcomes):
            sys.exit(EXIT_NEEDS_HUMAN)
        return
    if send:
        return told(app, outbox.send(target, force=force))
    document, rendered = produce(config, store, target)
    if fmt and out is None:
        out = "-"
    if document["preview"]:
        app.out.say(
            f"{target}: a preview; "
            + (
                f"the report is due {document['due_at']}"
                if document["due_at"]
                else "the release has not passed its last stage"
            ),
            "yellow",
        )
    if out is None:
        path = write_copies(config, target, rendered)
        app.out.result(f"wrote {path} (and report.md, report.json beside it)")
        app.out.emit(
            {"ok": True, "path": str(path), "preview": document["preview"], "report": json.loads(rendered.json)}
        )
        return
    if out == "-" and app.out.json:
        raise UsageError("--out - and --json would both write to stdout; choose one")
    text = rendering(rendered, fmt, out)
    if out == "-":
        click.echo(text, nl=False)
    else:
        try:
            write_file(out, text)
        except OSError as exc:
            raise UsageError(f"--out {out}: cannot write: {exc.strerror or exc}") from None
        app.out.result(f"wrote {out}")


def service_report(
    app: App, month: str | None, environment: str | None, fmt: str | None, out: str | None, send: bool, force: bool
) -> None:
    """`releaser report service`: write a month's service report, or deliver it once."""
    from datetime import UTC, datetime

    from ..report.dispatch import rendering, write_file
    from ..report.monthly import ServiceParcel, copies_name, produce_service, schedule_month
    from ..report.outbox import Outbox, write_copies
    from ..report.service import last_month, month_bounds, parse_month, zone_of

    if force and not send:
        raise UsageError("--force goes with --send")
    if send and (out or fmt):
        raise UsageError("--send delivers every format; leave out --out and --format")
    if out == "-" and app.out.json:
        raise UsageError("--out - and --json would both write to stdout; choose one")
    config = app.config()
    zone = zone_of(config)
    chosen = parse_month(month) if month is not None else last_month(datetime.now(UTC), zone)
    env = environment or (config.pipeline[-1].environment if config.pipeline else "")
    if env not in config.environments:
        raise UsageError(f"--env {env}: unknown environment (known: {', '.join(config.environments)})")
    store = app.existing_store()
    if store is None:
        raise UsageError("nothing has been recorded here yet: there is no state database to report on")
    if send:
        if datetime.now(UTC) < month_bounds(chosen, zone)[1]:
            raise UsageError(
                f"{chosen} is not over: its service report is sent once it has ended (without --send: a preview)"
            )
        schedule_month(config, store, env, chosen)
        return told(app, Outbox(config, store, app.journal()).deliver(ServiceParcel(config, store, env, chosen), force))
    document, rendered = produce_service(config, store, chosen, env)
    if document["preview"]:
        app.out.say(f"{chosen}: a preview; the month is not over", "yellow")
    if fmt and out is None:
        out = "-"
    if out is None:
        path = write_copies(config, copies_name(env, chosen), rendered)
        app.out.result(f"wrote {path} (and report.md, report.json beside it)")
        app.out.emit(
            {"ok": True, "path": str(path), "preview": document["preview"], "report": json.loads(rendered.json)}
        )
        return
    text = rendering(rendered, fmt, out)
    if out == "-":
        click.echo(text, nl=False)
        return
    try:
        write_file(out, text)
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot write: {exc.strerror or exc}") from None
    app.out.result(f"wrote {out}")


def told(app: App, outcome: Outcome) -> None:
    """Say how one delivery ended; exit 4 when it needs a person."""
    app.out.result(
        f"{outcome.name}: {outcome.state}"
        + (f": {outcome.detail}" if outcome.detail else "")
        + (f" ({outcome.path})" if outcome.path else ""),
        "red" if outcome.needs_human else None,
    )
    app.out.emit({"ok": not outcome.needs_human, **asdict(outcome)})
    if outcome.needs_human:
        sys.exit(EXIT_NEEDS_HUMAN)
