"""Thin click commands: parse, call, print. Results go to stdout, progress and logs to
stderr; --json puts one JSON document on stdout. Exit codes: 0 ok, 1 stage failed and rolled back, 2 usage or
config error, 3 busy, 4 needs a human, 5 inconclusive."""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import click

from . import __version__, secrets
from .errors import (
    EXIT_NEEDS_HUMAN,
    EXIT_STAGE_FAILED,
    EXIT_USAGE,
    ConfigError,
    ReleaserError,
    UsageError,
)
from .interrupts import Interrupts
from .model import DEFAULT_CONFIG, STAGE_ORDER

if TYPE_CHECKING:  # the commands import what they use when they run: `--help` starts fast
    from .journal import Journal
    from .model import Event
    from .pipeline import Pipeline

INTERRUPTS = Interrupts()  # signals while a command acts on hosts: see interrupts.py


class App:
    """Per-invocation context: where the config is, how to print, lazily opened state."""

    def __init__(self, config_file: str | None = None):
        self.config_file = config_file
        self.json = False
        self.quiet = False  # progress off; results and errors still shown
        self.verbose = False
        self.color = not os.environ.get("NO_COLOR")
        self._config = None
        self._store = None
        self._journal = None
        self._notifier = None
        self._started = time.monotonic()

    def apply(self, directory: str | None, config_file: str | None, as_json: bool | None, quiet: bool | None,
              verbose: bool | None, no_color: bool | None) -> None:
        """Global options, from before the command or after it (after wins)."""
        if directory:
            try:
                os.chdir(directory)
            except OSError as exc:
                raise UsageError(f"-C {directory}: {exc.strerror}") from None
        self.config_file = config_file or self.config_file
        self.json = bool(as_json) if as_json is not None else self.json
        self.quiet = bool(quiet) if quiet is not None else self.quiet
        self.verbose = bool(verbose) if verbose is not None else self.verbose
        if no_color:
            self.color = False

    def config(self):
        if self._config is None:
            from .config import load_config, register_secrets

            self._config = load_config(Path(self.config_file or DEFAULT_CONFIG))
            register_secrets(self._config)
        return self._config

    def store(self, read_only: bool = False):
        """The state; a command that only reads creates no database (StoreMissing instead)."""
        if self._store is None:
            from .store import open_store

            config = self.config()
            self._store = open_store(config.state_backend, config.state_path, config.state_wait, create=not read_only)
        return self._store

    def existing_store(self):
        """The state if a database exists, else None (and none is created): for commands that
        act on what earlier commands recorded."""
        from .store import StoreMissing

        try:
            return self.store(read_only=True)
        except StoreMissing:
            return None

    def recorded_state(self, nothing: str):
        """The state, for a command that cannot go on without records: UsageError(`nothing`)."""
        store = self.existing_store()
        if store is None:
            raise UsageError(nothing)
        return store

    def journal(self) -> Journal:
        if self._journal is None:
            from .notify import open_journal

            config = self.config()
            self._journal, self._notifier = open_journal(self.store(), self.show_event, config.project, config.webhooks)
        return self._journal

    def pipeline(self) -> Pipeline:
        from .pipeline import Pipeline

        return Pipeline(self.config(), self.store(), self.journal(), tick=self.tick if self.live else None,
                        interrupts=INTERRUPTS)

    @property
    def live(self) -> bool:
        """Live per-host progress only on a terminal; CI logs get the plain per-phase lines."""
        return sys.stderr.isatty() and os.environ.get("TERM") != "dumb"

    def tick(self, phase: str, done: int, failed: int, total: int, seconds: float) -> None:
        line = f"  {phase}: {done}/{total} hosts done, {failed} failed, {total - done} pending, {seconds:.1f}s"
        click.echo("\r\x1b[K" + self._styled(line, "red" if failed else None, sys.stderr), err=True, nl=False)
        if done == total:
            click.echo("\r\x1b[K", err=True, nl=False)

    # -- output --

    def say(self, text: str, color: str | None = None) -> None:
        """Progress and logs: stderr (silenced by --quiet)."""
        if not self.quiet:
            click.echo(self._styled(printable(secrets.scrub(text)), color, sys.stderr), err=True)

    def warn(self, text: str, color: str | None = "red") -> None:
        """An error or warning: stderr, even with --quiet."""
        click.echo(self._styled(printable(secrets.scrub(text)), color, sys.stderr), err=True)

    def result(self, text: str, color: str | None = None) -> None:
        """What the command answers (status, history, findings, paths): stdout, unless --json
        holds stdout for its one document (then stderr)."""
        stream = sys.stderr if self.json else sys.stdout
        if self.json and self.quiet:
            return
        click.echo(self._styled(printable(secrets.scrub(text)), color, stream), err=self.json)

    def _styled(self, text: str, color: str | None, stream) -> str:
        if color and self.color and stream.isatty():
            return click.style(text, fg=color)
        return text

    def show_event(self, event: Event) -> None:
        color = None
        if event.kind.endswith(("failed", "failed.")) or event.kind in ("checks.fail", "host.failed"):
            color = "red"
        elif event.kind in ("stage.passed", "rollback.done"):
            color = "green"
        elif event.kind.startswith(("rollback", "reconcile", "lock")):
            color = "yellow"
        self.say(f"[{time.monotonic() - self._started:6.1f}s] {event.message}", color)

    def emit(self, document: dict) -> None:
        if self.json:
            click.echo(json.dumps(secrets.scrub_data(document), indent=2, default=str))

    def close(self) -> None:
        if self._notifier is not None:
            self._notifier.close()
        if self._store is not None:
            self._store.close()


_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: str) -> str:
    """Text for a terminal: control characters (escape sequences, carriage returns) shown
    escaped, so that a host name or a server's reply cannot repaint the screen."""
    return _UNPRINTABLE.sub(lambda m: repr(m.group())[1:-1], text)


def global_options(fn):
    """-C, -c, --json, --quiet, --verbose, --no-color: taken before the command or after it."""
    for option in reversed((
        click.option("-C", "chdir", type=click.Path(file_okay=False), help="Run as if started in DIR."),
        click.option("-c", "config_path", type=click.Path(dir_okay=False),
                     help=f"Configuration file (default {DEFAULT_CONFIG})."),
        click.option("--json", "as_json", is_flag=True, default=None, help="Print one JSON document on stdout."),
        click.option("-q", "--quiet", is_flag=True, default=None, help="No progress; results and errors only."),
        click.option("-v", "--verbose", is_flag=True, default=None, help="Full verdicts and every progress line."),
        click.option("--no-color", is_flag=True, default=None, help="No colors (NO_COLOR is honoured too)."),
    )):
        fn = option(fn)
    return fn


def command(group, name=None, **kwargs):
    """A subcommand that takes the global options and turns releaser errors into exit codes."""

    def decorate(fn):
        @group.command(name, **kwargs)
        @global_options
        @click.pass_obj
        @functools.wraps(fn)
        def wrapper(app: App, chdir, config_path, as_json, quiet, verbose, no_color, **params):
            try:
                app.apply(chdir, config_path, as_json, quiet, verbose, no_color)
                return fn(app, **params)
            except ReleaserError as exc:
                _fail(app, exc)
            finally:
                app.close()

        return wrapper

    return decorate


def _fail(app: App, exc: ReleaserError) -> None:
    kind = type(exc).__name__
    if isinstance(exc, ConfigError):
        app.warn(f"configuration error{'s' if len(exc.problems) > 1 else ''}:")
        for problem in exc.problems:
            app.warn(f"  {problem}", None)
    else:
        app.warn(f"error: {exc}")
    if app.json:
        document = {"ok": False, "exit_code": exc.exit_code, "error": {"kind": kind, "message": str(exc)}}
        if isinstance(exc, ConfigError):
            document["error"]["problems"] = [asdict(p) for p in exc.problems]
        click.echo(json.dumps(secrets.scrub_data(document), indent=2))
    sys.exit(exc.exit_code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@global_options
@click.version_option(__version__, "-V", "--version", prog_name="releaser")
@click.pass_context
def cli(ctx: click.Context, chdir: str | None, config_path: str | None, as_json: bool | None,
        quiet: bool | None, verbose: bool | None, no_color: bool | None) -> None:
    """Promote releases through selftest -> test -> gray -> full, with automatic rollback."""
    app = ctx.obj = App()
    try:
        app.apply(chdir, config_path, as_json, quiet, verbose, no_color)
    except UsageError as exc:
        raise click.UsageError(str(exc)) from None


# -- configuration --


@command(cli)
def validate(app: App) -> None:
    """Check environments.yaml, its playbooks and check sets; exit 2 on any problem."""
    config = app.config()
    hosts = sum(len(env.hosts) for env in config.environments.values())
    app.result(
        f"{config.path.name}: ok — {len(config.environments)} environment(s), {hosts} host(s), "
        f"pipeline {' -> '.join(config.stage_names())}",
        "green",
    )
    app.emit({"ok": True, "config": str(config.path), "environments": {
        name: {"transport": env.transport, "hosts": [h.name for h in env.hosts], "playbook": env.playbook}
        for name, env in config.environments.items()
    }, "pipeline": [{"stage": s.name, "environment": s.environment, "checks": [c.name for c in s.checks]}
                    for s in config.pipeline]})


@command(cli)
@click.argument("directory", required=False, default=".", type=click.Path(file_okay=False))
def init(app: App, directory: str) -> None:
    """Scaffold a working configuration in an empty DIRECTORY."""
    from .scaffold import scaffold

    written = scaffold(Path(directory))
    for path in written:
        app.result(f"wrote {path}")
    app.say("next: edit environments.yaml, then `releaser validate`")
    app.emit({"ok": True, "written": [str(p) for p in written]})


# -- releases --


@cli.group()
def release() -> None:
    """Register releases."""


@command(release, "create")
@click.argument("version")
@click.option("--artifact", required=True, type=click.Path(dir_okay=False), help="The release tarball.")
@click.option("--notes", "notes_file", type=click.Path(dir_okay=False), help="A file with the release notes.")
@click.option("--feature", "features", multiple=True, help="A feature this release brings (repeatable).")
@click.option("--url", help="Where hosts fetch the artifact in pull mode (its sha256 is checked on the host).")
def release_create(
    app: App, version: str, artifact: str, notes_file: str | None, features: tuple[str, ...], url: str | None
) -> None:
    """Register VERSION with its artifact (sha256 and size recorded; immutable)."""
    from .releases import check_artifact, create_release
    from .yamlsrc import read_text

    validate_release_id(version)
    notes = read_text(Path(notes_file), f"--notes {notes_file}") if notes_file else ""
    for feature in features:
        _plain_option("--feature", feature)
    if url is not None:
        _plain_option("--url", url)
    app.config()
    check_artifact(Path(artifact), url)  # before the store is opened: bad input writes nothing
    rel, created = create_release(app.store(), app.journal(), version, Path(artifact), notes, features, url)
    if not created:
        app.say(f"{version} is already registered with this artifact; nothing changed")
    app.emit({"ok": True, "created": created, "release": asdict(rel)})


# -- promotion --


@command(cli)
@click.argument("version")
@click.option("--to", "to_stage", type=click.Choice(STAGE_ORDER), help="The stage to run (default: the next one).")
@click.option("--force", is_flag=True, help="Allow skipping stages that have not passed.")
@click.option("--reason", default="", help="Why (required with --force; journaled).")
def promote(app: App, version: str, to_stage: str | None, force: bool, reason: str) -> None:
    """Run the next stage of VERSION (or --to STAGE)."""
    validate_release_id(version)
    app.recorded_state(_unknown_release(version))
    run = app.pipeline().promote(version, to_stage, force=force, reason=reason)
    app.emit({"ok": True, "release": version, "runs": [asdict(run)] if run else []})


@command(cli)
@click.argument("version")
@click.option("--to", "to_stage", type=click.Choice(STAGE_ORDER), help="Stop after this stage (default: the last).")
def run(app: App, version: str, to_stage: str | None) -> None:
    """Run every remaining stage of VERSION, in order."""
    validate_release_id(version)
    app.recorded_state(_unknown_release(version))
    runs = app.pipeline().run(version, to_stage)
    app.emit({"ok": True, "release": version, "runs": [asdict(r) for r in runs]})


@command(cli)
@click.argument("environment")
@click.option("--to", "to_version", help="The release to go back to (default: each host's previous one).")
@click.option("--reason", required=True, help="Why (journaled).")
def rollback(app: App, environment: str, to_version: str | None, reason: str) -> None:
    """Roll ENVIRONMENT back by hand."""
    if to_version:
        validate_release_id(to_version)
    known = app.config().environments
    if environment not in known:
        raise UsageError(f"unknown environment {environment!r} (known: {', '.join(known)})")
    app.recorded_state(f"nothing to roll back on {environment}: releaser has recorded no deployment there")
    switched = app.pipeline().rollback(environment, to_version, reason)
    app.emit({"ok": True, "environment": environment, "switched": switched})


@command(cli)
@click.option("--rollback", "roll_back", is_flag=True, help="Roll interrupted stages back instead of finishing them.")
def resume(app: App, roll_back: bool) -> None:
    """Finish, or roll back, promotions whose process died, after reading what the hosts run."""
    runs = app.pipeline().resume(roll_back) if app.existing_store() else []
    if not runs:
        app.result("nothing to resume")
    app.emit({"ok": True, "runs": [asdict(r) for r in runs]})


@cli.group()
def state() -> None:
    """The state database."""


@command(state, "rebuild")
def state_rebuild(app: App) -> None:
    """Rebuild what every host runs from the hosts' own records (after the state database was lost)."""
    rebuilt = app.pipeline().rebuild()
    for env, hosts in rebuilt.items():
        versions = sorted({v or "nothing" for v in hosts.values()})
        app.result(f"{env}: {len(hosts)} host(s) run {', '.join(versions)}")
    app.emit({"ok": True, "environments": rebuilt})


@command(cli)
@click.argument("environment")
@click.option("--force", is_flag=True, required=True, help="Required: this clears a lock another process may hold.")
@click.option("--reason", required=True, help="Why (journaled).")
def unlock(app: App, environment: str, force: bool, reason: str) -> None:
    """Clear a stale lock on ENVIRONMENT."""
    config = app.config()
    if environment not in config.environments:
        raise UsageError(f"unknown environment {environment!r}")
    store = app.existing_store()
    held = store.force_unlock(environment) if store else None
    if held is None:
        app.say(f"{environment} was not locked")
    else:
        app.journal().record(
            "lock.cleared", f"cleared the lock of {held.owner} (pid {held.pid} on {held.hostname}) on {environment}: "
            f"{reason}", environment=environment, data={"reason": reason, "held_by": held.owner, "pid": held.pid},
        )
    app.emit({"ok": True, "environment": environment, "cleared": held is not None})


@command(cli)
@click.option("--once", is_flag=True, help="Look once at every armed window and exit (for cron and CI schedules).")
@click.option("--interval", default="30s", show_default=True, help="Time between looks.")
def watch(app: App, once: bool, interval: str) -> None:
    """Keep rollback windows armed: re-run the checks of every stage still inside its window and
    roll back what fails. Exit 1 if --once rolled something back, 4 on an alarm."""
    from .schema import parse_duration
    from .watch import Watcher

    try:
        pause = parse_duration(interval)
    except ValueError as exc:
        raise UsageError(f"--interval: {exc}") from None
    if not 0.1 <= pause <= 86400:
        raise UsageError(f"--interval: between 100ms and 1d, got {interval}")
    if once and app.existing_store() is None:
        app.result("no rollback window is open")
        app.emit({"ok": True, "looks": 0, "windows": [], "rolled_back": [], "alarms": [], "blind": [], "closed": [],
                  "reports": []})
        return
    watcher = Watcher(app.pipeline())
    rolled_back, alarms, reports, closed, looks = [], [], [], [], 0
    stop = threading.Event()
    # A signal ends the watch between looks, never in the middle of a rollback.
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.is_set():
        result = watcher.look_once()
        looks += 1
        rolled_back += result["rolled_back"]
        alarms += result["alarms"]
        reports += result["reports"]
        closed += result["closed"]
        if once:
            if not result["windows"]:
                app.result("no rollback window is open")
            break
        stop.wait(pause)
    if stop.is_set():
        app.say("watch stopped; windows stay armed in the store for the next `releaser watch`")
    app.emit({"ok": not alarms, "looks": looks, "windows": result["windows"] if looks else [],
              "rolled_back": rolled_back, "alarms": alarms, "blind": result["blind"] if looks else [],
              "closed": closed, "reports": reports})
    if alarms:
        sys.exit(EXIT_NEEDS_HUMAN)
    if rolled_back:
        sys.exit(EXIT_STAGE_FAILED)


# -- effect reports --


@command(cli)
@click.argument("target", metavar="VERSION|due")
@click.option("--format", "fmt", type=click.Choice(["html", "md", "json"]),
              help="Write this format to --out, or to stdout (default with --out: from its name, else html).")
@click.option("--out", type=click.Path(dir_okay=False, allow_dash=True), help="Write one format here ('-': stdout).")
@click.option("--send", is_flag=True, help="Deliver it (mail, webhook, copy under .releaser/reports/).")
@click.option("--force", is_flag=True, help="With --send: send a report whose delivery is unconfirmed again.")
@click.option("--release", "named", is_flag=True, help="TARGET is a release even if it is called `due`.")
def report(app: App, target: str, fmt: str | None, out: str | None, send: bool, force: bool, named: bool) -> None:
    """Write the effect report of VERSION (a preview before it is due), or with `due`, every
    report that is due. With --send, deliver them: each exactly once."""
    from .report.outbox import Outbox, produce, write_copies

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
    store = app.existing_store() if due_now else app.recorded_state(_unknown_release(target))
    if store is None:
        app.result("no report is due")
        app.emit({"ok": True, "due": [], "sent": []})
        return
    outbox = Outbox(config, store, app.journal())
    if due_now:
        due = outbox.due()
        outcomes = []
        for item in due:
            if send:
                outcomes.append(outbox.send(item.release))
            else:
                _document, rendered = produce(config, store, item.release)
                path = write_copies(config, item.release, rendered)
                app.result(f"{item.release}: due since {item.due_at}; written to {path} (not sent: add --send)")
        for outcome in outcomes:
            app.result(f"{outcome.release}: {outcome.state}" + (f": {outcome.detail}" if outcome.detail else "")
                    + (f" ({outcome.path})" if outcome.path and outcome.state == "sent" else ""),
                    "red" if outcome.needs_human else None)
        if not due:
            app.result("no report is due")
        app.emit({"ok": not any(o.needs_human for o in outcomes), "due": [i.release for i in due],
                  "sent": [asdict(o) for o in outcomes]})
        if any(o.needs_human for o in outcomes):
            sys.exit(EXIT_NEEDS_HUMAN)
        return
    if send:
        outcome = outbox.send(target, force=force)
        app.result(f"{target}: {outcome.state}" + (f": {outcome.detail}" if outcome.detail else "")
                + (f" ({outcome.path})" if outcome.path else ""), "red" if outcome.needs_human else None)
        app.emit({"ok": not outcome.needs_human, **asdict(outcome)})
        if outcome.needs_human:
            sys.exit(EXIT_NEEDS_HUMAN)
        return
    document, rendered = produce(config, store, target)
    if fmt and out is None:
        out = "-"
    if document["preview"]:
        app.say(f"{target}: a preview; " + (f"the report is due {document['due_at']}" if document["due_at"]
                                            else "the release has not passed its last stage"), "yellow")
    if out is None:
        path = write_copies(config, target, rendered)
        app.result(f"wrote {path} (and report.md, report.json beside it)")
        app.emit({"ok": True, "path": str(path), "preview": document["preview"], "report": json.loads(rendered.json)})
        return
    if out == "-" and app.json:
        raise UsageError("--out - and --json would both write to stdout; choose one")
    fmt = fmt or {".md": "md", ".json": "json"}.get(Path(out).suffix, "html")
    text = {"html": rendered.html, "md": rendered.markdown, "json": rendered.json}[fmt]
    if out == "-":
        click.echo(text, nl=False)
    else:
        try:  # O_NONBLOCK: a FIFO nobody reads is refused instead of waited on
            with os.fdopen(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NONBLOCK, 0o644), "w",
                           encoding="utf-8") as handle:
                handle.write(text)
        except OSError as exc:
            raise UsageError(f"--out {out}: cannot write: {exc.strerror or exc}") from None
        app.result(f"wrote {out}")


def validate_release_id(version: str) -> str:
    """A release id as typed on the command line (see releases.validate_release_id)."""
    from .releases import validate_release_id as validate

    return validate(version)


def _plain_option(option: str, value: str) -> None:
    """An option value that is shown on terminals and in reports: one line, no control characters."""
    try:
        from .schema import check_text

        check_text(value)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None
    if not value.strip() or len(value) > 2000:
        raise UsageError(f"{option}: expected 1 to 2000 characters")


def _unknown_release(version: str) -> str:
    return f"unknown release {version!r}: nothing is registered yet; register it with " \
           f"`releaser release create {version} --artifact FILE`"


# -- looking --


@command(cli)
def status(app: App) -> None:
    """What every host runs, the locks, and every release's stages."""
    from .status import print_status, status_document
    from .store import StoreMissing, open_store

    try:
        store = app.store(read_only=True)
    except StoreMissing as missing:
        app.say(f"note: {missing}", "yellow")
        store = app._store = open_store("sqlite", Path(":memory:"))
    document = status_document(app.config(), store)
    if app.json:
        app.emit(document)
    else:
        print_status(document, app.result)


@command(cli)
@click.option("--release", "release_id", help="Only this release.")
@click.option("--env", "environment", help="Only this environment.")
@click.option("--limit", type=click.IntRange(min=1, max=10**9), default=None, help="Only the newest N events.")
def history(app: App, release_id: str | None, environment: str | None, limit: int | None) -> None:
    """The journal: every state change, oldest first."""
    from .status import history_document
    from .store import StoreMissing

    try:
        events = app.store(read_only=True).events(release=release_id, environment=environment, limit=limit)
    except StoreMissing as missing:
        app.say(f"note: {missing}", "yellow")
        events = []
    if app.json:
        app.emit(history_document(events))
        return
    for event in events:
        scope = "/".join(x for x in (event.environment, event.release, event.stage, event.host) if x)
        app.result(f"{event.ts}  {event.kind:<20} {scope:<28} {event.message}")


# -- the sandbox --


@command(cli)
@click.option("--dir", "directory", type=click.Path(file_okay=False), help="Where to build the sandbox (default: a temp dir).")
def demo(app: App, directory: str | None) -> None:
    """Build a sandbox fleet on this machine and run three releases through it."""
    from .demo.run import run_demo

    summary = run_demo(Path(directory) if directory else None, app.say, app.show_event, app.tick if app.live else None)
    app.emit({"ok": True, **summary})


def main() -> None:
    INTERRUPTS.install()
    try:
        cli(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_USAGE if exc.exit_code != 0 else 0)
    except BrokenPipeError:  # `releaser history | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
    except Exception as exc:  # a bug of ours: one scrubbed line and exit 4, the traceback on request
        if os.environ.get("RELEASER_DEBUG"):
            raise
        click.echo(printable(secrets.scrub(f"releaser: internal error: {type(exc).__name__}: {exc}")), err=True)
        click.echo("this is a bug in releaser; RELEASER_DEBUG=1 shows the traceback. State and hosts are as "
                   "the journal says: `releaser status`, then `releaser resume` if a run is left open.", err=True)
        sys.exit(EXIT_NEEDS_HUMAN)


if __name__ == "__main__":
    main()
