"""Thin click commands: parse, call, print. Results go to stdout, progress and logs to
stderr; --json puts one JSON document on stdout. Exit codes: 0 ok, 1 stage failed and rolled back, 2 usage or
config error, 3 busy, 4 needs a human, 5 inconclusive."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import click

from . import __version__, secrets, streams
from .errors import (
    EXIT_NEEDS_HUMAN,
    EXIT_STAGE_FAILED,
    EXIT_USAGE,
    ConfigError,
    ReleaserError,
    UsageError,
)
from .interrupts import Interrupts
from .names import DEFAULT_CONFIG, STAGE_ORDER
from .terminal import COLOURS, Collapser, printable, shown_time, summarised

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
        self._progress: Collapser | None = None
        self._last_width = 0

    def apply(
        self,
        directory: str | None,
        config_file: str | None,
        as_json: bool | None,
        quiet: bool | None,
        verbose: bool | None,
        no_color: bool | None,
    ) -> None:
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
            self._store = open_store(config, create=not read_only)
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

        return Pipeline(
            self.config(), self.store(), self.journal(), tick=self.tick if self.live else None, interrupts=INTERRUPTS
        )

    @property
    def tty(self) -> bool:
        """Results go to a person at a terminal (relative times, summarised verdicts)."""
        return sys.stdout.isatty() and not self.json

    def told(self, verdict: str) -> str:
        """A verdict as results show it: summarised at a terminal, whole with --verbose or in a pipe."""
        return verdict if self.verbose or not self.tty else summarised(verdict)

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

    def journal_hangup(self) -> None:
        """A hangup (see interrupts.py) into the journal, once, at the first journal step after it
        (or a look of `watch`, or the end of the command): the terminal is gone, the work is not."""
        if self._journal is None or (at := INTERRUPTS.hangup_news()) is None:
            return
        import shlex
        from datetime import UTC, datetime

        when = datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")
        command = shlex.join(["releaser", *sys.argv[1:]])
        self._journal.record(
            "terminal.hangup",
            f"the terminal went away (SIGHUP at {shown_time(when)}); `{command}` (pid "
            f"{os.getpid()}) goes on to its end; what it says from then on is in the journal (`releaser history`)",
            data={"at": when, "pid": os.getpid(), "command": command},
        )

    def show_event(self, event: Event) -> None:
        """A journal event or a progress note as it happens. On a terminal, long verdicts are
        summarised (all of them with --verbose) and identical notes in a row collapse into one."""
        self.journal_hangup()
        color = COLOURS.get(event.kind)
        if self.quiet:
            return
        tty = sys.stderr.isatty()
        message = event.message if self.verbose or not tty else summarised(event.message)
        if self._progress is None:
            self._progress = Collapser(self._progress_line, tty)
        self._progress.line(message, color, repeatable=event.kind == "note" and not self.verbose)

    def _progress_line(self, text: str, color: str | None, rewrite: bool) -> None:
        line = f"[{time.monotonic() - self._started:6.1f}s] {text}"
        if rewrite:  # the line above is the same note: count it in place (as many rows as it took)
            import shutil

            rows = -(-self._last_width // max(1, shutil.get_terminal_size().columns))
            click.echo("\x1b[1A\r\x1b[K" * max(1, rows), err=True, nl=False)
        self._last_width = len(line)
        self.say(line, color)

    def emit(self, document: dict) -> None:
        if self.json:
            click.echo(json.dumps(secrets.scrub_data(document), indent=2, default=str))

    def close(self) -> None:
        # the state failed the command: its own error is the one to tell
        with contextlib.suppress(ReleaserError):
            self.journal_hangup()
        if self._progress is not None:
            self._progress.flush()
        if self._notifier is not None:
            self._notifier.close()
        if self._store is not None:
            self._store.close()


def _completion_config(ctx: click.Context):
    """The configuration the command line being completed names (-C, -c), or None: completion
    never fails and never writes."""
    from .config import load_config

    def given(name: str):  # a global option, after the command or before it
        return ctx.params.get(name) or ctx.find_root().params.get(name)

    try:
        return load_config(Path(given("chdir") or ".") / (given("config_path") or DEFAULT_CONFIG))
    except Exception:
        return None


def complete_environments(ctx: click.Context, _param, incomplete: str) -> list[str]:
    config = _completion_config(ctx)
    return [name for name in (config.environments if config else ()) if name.startswith(incomplete)]


def complete_releases(ctx: click.Context, _param, incomplete: str) -> list[str]:
    """Registered releases, newest first, from the state database (read only)."""
    from .store import open_store

    config = _completion_config(ctx)
    if config is None:
        return []
    try:
        store = open_store(config, create=False)
        try:
            versions = [r.version for r in reversed(store.list_releases())]
        finally:
            store.close()
    except Exception:
        return []
    return [v for v in versions if v.startswith(incomplete)]


# -C, -c, --json, --quiet, --verbose, --no-color: taken before the command or after it. One set of
# option objects serves every command (click only reads them), built once: start-up is paid per run.
GLOBAL_OPTIONS = (
    click.Option(["-C", "chdir"], type=click.Path(file_okay=False), help="Run as if started in DIR."),
    click.Option(
        ["-c", "config_path"], type=click.Path(dir_okay=False), help=f"Configuration file (default {DEFAULT_CONFIG})."
    ),
    click.Option(["--json", "as_json"], is_flag=True, default=None, help="Print one JSON document on stdout."),
    click.Option(["-q", "--quiet"], is_flag=True, default=None, help="No progress; results and errors only."),
    click.Option(["-v", "--verbose"], is_flag=True, default=None, help="Full verdicts and every progress line."),
    click.Option(["--no-color"], is_flag=True, default=None, help="No colors (NO_COLOR is honoured too)."),
)


def global_options(command: click.Command) -> click.Command:
    command.params.extend(GLOBAL_OPTIONS)
    return command


EXIT_MEANINGS = {
    0: "ok",
    1: "the stage failed and was rolled back",
    2: "usage or configuration error; nothing was changed",
    3: "refused: another process holds the environment, a freeze, or a rejected approval",
    4: "a rollback could not finish, or the state needs a human (the message says what fixes it)",
    5: "held: the checks were inconclusive, or the stage awaits approval; nothing rolled back",
}


def command(group, name=None, examples: tuple[str, ...] = (), exits: tuple[int, ...] = (0, 2), **kwargs):
    """A subcommand that takes the global options and turns releaser errors into exit codes; its
    --help ends with `examples` and the meaning of each of its exit codes."""
    epilog = "\b\nExamples:\n" + "\n".join(f"  {line}" for line in examples) + "\n\n" if examples else ""
    epilog += "\b\nExit codes:\n" + "\n".join(f"  {code}  {EXIT_MEANINGS[code]}" for code in exits)

    def decorate(fn):
        @global_options
        @group.command(name, epilog=epilog, **kwargs)
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


@global_options
@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="releaser")
@click.pass_context
def cli(
    ctx: click.Context,
    chdir: str | None,
    config_path: str | None,
    as_json: bool | None,
    quiet: bool | None,
    verbose: bool | None,
    no_color: bool | None,
) -> None:
    """Promote releases through selftest -> test -> gray -> full, with automatic rollback."""
    app = ctx.obj = App()
    try:
        app.apply(chdir, config_path, as_json, quiet, verbose, no_color)
    except UsageError as exc:
        raise click.UsageError(str(exc)) from None


# -- configuration --


@command(
    cli,
    examples=(
        "releaser validate",
        "releaser validate --connect   # and every host, as a stage would",
        "releaser -c staging.yaml validate --json",
    ),
)
@click.option(
    "--connect",
    is_flag=True,
    help="Also connect to every host and check it can be worked on "
    "(keys, host keys, the root, sudo); exit 2 for a mistake, 4 for a host out of reach.",
)
def validate(app: App, connect: bool) -> None:
    """Check environments.yaml, its playbooks and check sets, and the SSH files they name; exit 2
    on any problem."""
    from .errors import ConfigError
    from .preflight import check_every_host, local_problems

    config = app.config()
    problems = local_problems(config)
    if problems:
        raise ConfigError(problems)
    if connect:
        from .transport import transport_for

        check_every_host(config, transport_for)
    hosts = sum(len(env.hosts) for env in config.environments.values())
    app.result(
        f"{config.path.name}: ok — {len(config.environments)} environment(s), {hosts} host(s)"
        + (" reached and ready" if connect else "")
        + f", pipeline {' -> '.join(config.stage_names())}",
        "green",
    )
    app.emit(
        {
            "ok": True,
            "config": str(config.path),
            "environments": {
                name: {"transport": env.transport, "hosts": [h.name for h in env.hosts], "playbook": env.playbook}
                for name, env in config.environments.items()
            },
            "pipeline": [
                {"stage": s.name, "environment": s.environment, "checks": [c.name for c in s.checks]}
                for s in config.pipeline
            ],
        }
    )


@command(
    cli,
    examples=(
        "releaser init",
        "releaser init deploy/ && cd deploy && releaser validate",
        "releaser init --router nginx   # prod behind nginx, gray to 10% of users",
    ),
)
@click.argument("directory", required=False, default=".", type=click.Path(file_okay=False))
@click.option("--router", type=click.Choice(["nginx"]), help="Put prod behind this load balancer (gray by users).")
def init(app: App, directory: str, router: str | None) -> None:
    """Scaffold a working configuration in an empty DIRECTORY."""
    from .scaffold import scaffold

    written = scaffold(Path(directory), router)
    for path in written:
        app.result(f"wrote {path}")
    app.say(
        "next: `releaser validate`, then register a release (`releaser release create 0.1.0 --artifact "
        "app.tar.gz`) and `releaser run 0.1.0`; every key is documented in environments.example.yaml"
    )
    app.emit({"ok": True, "written": [str(p) for p in written]})


# -- releases --


@cli.group()
def release() -> None:
    """Register, list and show releases."""


@command(
    release,
    "create",
    examples=(
        "releaser release create 2.4.0 --artifact app-2.4.0.tar.gz --notes NOTES.md --feature batch-order",
        "releaser release create 2.4.0 --artifact app.tar.gz --url https://artifacts.example.com/app-2.4.0.tar.gz",
    ),
)
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


@command(release, "list", examples=("releaser release list", "releaser release list --json"))
def release_list(app: App) -> None:
    """Every registered release, newest first: its status, why it failed or was rolled back,
    and where it runs."""
    document = _status(app)
    releases = list(reversed(document["releases"]))
    for rel in releases:
        where = ", ".join(rel["runs_on"]) or "-"
        app.result(
            f"{rel['version']:<16} {rel['status']:<12} runs on {where:<20} registered "
            f"{shown_time(rel['created_at'], app.tty)} by {rel['created_by']}"
        )
        if rel["reason"]:
            app.result(f"{'':<16} why: {app.told(rel['reason'])}")
    if not releases:
        app.result("no release is registered yet; `releaser release create VERSION --artifact FILE` registers one")
    app.emit({"ok": True, "releases": releases})


@command(release, "show", examples=("releaser release show 2.4.0",))
@click.argument("version", shell_complete=complete_releases)
def release_show(app: App, version: str) -> None:
    """One release: its artifact, notes and features, every stage it ran, where it runs, its report."""
    validate_release_id(version)
    document = _status(app)
    rel = next((r for r in document["releases"] if r["version"] == version), None)
    if rel is None:
        raise UsageError(_unknown_release(version))
    stored = app.store(read_only=True).get_release(version)
    report = next((r for r in document["reports"] if r["release"] == version), None)
    hosts = {
        env: [h for h, state in e["hosts"].items() if state["version"] == version]
        for env, e in document["environments"].items()
    }
    shown = {
        **rel,
        "artifact": stored.artifact,
        "size": stored.size,
        "url": stored.url,
        "notes": stored.notes,
        "hosts": {env: names for env, names in hosts.items() if names},
        "report": report,
    }
    app.result(f"{version}: {rel['status']}" + (f" — {rel['reason']}" if rel["reason"] else ""))
    app.result(f"  artifact  {stored.artifact} ({stored.size:,} bytes, sha256 {stored.sha256})")
    app.result(f"  features  {', '.join(rel['features']) or '-'}")
    app.result(f"  by        {rel['created_by']}, {shown_time(rel['created_at'], app.tty)}")
    for stage in rel["stages"]:
        app.result(
            f"  {stage['stage']:<9} {stage['status']:<12} on {stage['environment']:<8} "
            f"{shown_time(stage['started_at'], app.tty)} -> {shown_time(stage['finished_at'], app.tty)}"
            + (f"  forced: {stage['reason']}" if stage["forced"] else "")
        )
    for env, names in shown["hosts"].items():
        app.result(f"  runs on   {env}: {len(names)} host(s) ({', '.join(names)})")
    if report:
        app.result(f"  report    {report['state']}" + (f", {report['path']}" if report["path"] else ""))
    for line in stored.notes.strip().splitlines():
        app.result(f"  | {line}")
    app.emit({"ok": True, "release": shown})


def _status(app: App) -> dict:
    """The status document (an empty one when there is no state yet)."""
    from .status import status_document
    from .store import StoreMissing, memory_store

    try:
        store = app.store(read_only=True)
    except StoreMissing as missing:
        app.say(f"note: {missing}", "yellow")
        store = app._store = memory_store()
    return status_document(app.config(), store)


# -- promotion --


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
def promote(app: App, version: str, to_stage: str | None, force: bool, reason: str, wait: bool) -> None:
    """Run the next stage of VERSION (or --to STAGE)."""
    validate_release_id(version)
    app.recorded_state(_unknown_release(version))
    run = app.pipeline().promote(version, to_stage, force=force, reason=reason, wait=wait)
    app.emit({"ok": True, "release": version, "runs": [asdict(run)] if run else []})


@command(cli, examples=("releaser run 2.4.0", "releaser run 2.4.0 --to gray"), exits=(0, 1, 2, 3, 4, 5))
@click.argument("version", shell_complete=complete_releases)
@click.option("--to", "to_stage", type=click.Choice(STAGE_ORDER), help="Stop after this stage (default: the last).")
@click.option("--force", is_flag=True, help="Promote during a freeze (needs --reason; journaled).")
@click.option("--reason", default="", help="Why (required with --force; journaled).")
@click.option("--wait", is_flag=True, help="Wait for the approval a stage needs instead of exiting 5.")
def run(app: App, version: str, to_stage: str | None, force: bool, reason: str, wait: bool) -> None:
    """Run every remaining stage of VERSION, in order."""
    validate_release_id(version)
    app.recorded_state(_unknown_release(version))
    if force and not reason.strip():
        raise UsageError("--force needs --reason TEXT, which is journaled")
    runs = app.pipeline().run(version, to_stage, force=force, reason=reason, wait=wait)
    app.emit({"ok": True, "release": version, "runs": [asdict(r) for r in runs]})


def _decide(app: App, version: str, stage: str | None, reason: str, approve: bool) -> None:
    from .decisions import decide

    validate_release_id(version)
    store = app.recorded_state(_unknown_release(version))
    request = decide(store, app.journal(), version, stage, approve, reason)
    app.result(f"{request.stage} of {version}: {request.state} by {request.decided_by}")
    app.emit(
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
def approve(app: App, version: str, stage: str | None, reason: str) -> None:
    """Approve the stage of VERSION that awaits approval; a waiting or later `promote` runs it."""
    _decide(app, version, stage, reason, approve=True)


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
    app.recorded_state(_unknown_release(version))
    from .recovery import Recovery

    run = Recovery.like(app.pipeline()).abort(version, reason)
    if run is None:
        app.result(f"{version}: approval requests cancelled; nothing had started")
    else:
        app.result(f"{run.stage} of {version} on {run.environment}: {run.status}")
    app.emit({"ok": True, "release": version, "run": asdict(run) if run else None})


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
    known = app.config().environments
    if environment not in known:
        raise UsageError(f"unknown environment {environment!r} (known: {', '.join(known)})")
    if not dry_run and not reason.strip():
        raise UsageError("rollback needs --reason TEXT, which is journaled (or --dry-run to see the plan)")
    app.recorded_state(f"nothing to roll back on {environment}: releaser has recorded no deployment there")
    from .rollback import Rollbacks

    if dry_run:
        plan = Rollbacks.like(app.pipeline()).dry_run(environment, to_version)
        moving = {host: step for host, step in plan.items() if step["to"]}
        for host, step in plan.items():
            app.result(
                f"  {host:<16} {step['runs'] or '-':<14} -> {step['to']}"
                if step["to"]
                else f"  {host:<16} {step['runs'] or '-':<14}    stays"
            )
        app.result(
            f"{environment}: {len(moving)} of {len(plan)} host(s) would be switched back; nothing was changed"
            if moving
            else f"{environment}: nothing to roll back"
        )
        app.emit({"ok": True, "environment": environment, "dry_run": True, "plan": plan})
        return
    switched = Rollbacks.like(app.pipeline()).by_hand(environment, to_version, reason)
    app.emit({"ok": True, "environment": environment, "switched": switched})


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
    known = app.config().environments
    if environment not in known:
        raise UsageError(f"unknown environment {environment!r} (known: {', '.join(known)})")
    if not reason.strip():
        raise UsageError("redeploy needs --reason TEXT, which is journaled")
    app.recorded_state(f"nothing to redeploy on {environment}: releaser has recorded no deployment there")
    from .recovery import Recovery

    done = Recovery.like(app.pipeline()).redeploy(environment, list(hosts), reason)
    app.result(
        f"{environment}: redeployed {len(done)} host(s)"
        + (
            ": " + ", ".join(f"{host} on {version}" for host, version in sorted(done.items()))
            if done
            else " (none is in doubt)"
        )
    )
    app.emit({"ok": True, "environment": environment, "redeployed": done})


@command(cli, examples=("releaser resume", "releaser resume --rollback"), exits=(0, 1, 2, 3, 4))
@click.option("--rollback", "roll_back", is_flag=True, help="Roll interrupted stages back instead of finishing them.")
def resume(app: App, roll_back: bool) -> None:
    """Finish, or roll back, promotions whose process died, after reading what the hosts run."""
    from .recovery import Recovery

    runs = Recovery.like(app.pipeline()).resume(roll_back) if app.existing_store() else []
    if not runs:
        app.result("nothing to resume")
    app.emit({"ok": True, "runs": [asdict(r) for r in runs]})


@cli.group()
def state() -> None:
    """The state database."""


@command(state, "rebuild", examples=("releaser state rebuild",), exits=(0, 2, 3, 4))
def state_rebuild(app: App) -> None:
    """Rebuild what every host runs from the hosts' own records (after the state database was lost)."""
    from .recovery import Recovery

    rebuilt = Recovery.like(app.pipeline()).rebuild()
    for env, hosts in rebuilt.items():
        versions = sorted({v or "nothing" for v in hosts.values()})
        app.result(f"{env}: {len(hosts)} host(s) run {', '.join(versions)}")
    app.emit({"ok": True, "environments": rebuilt})


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
    from .journal import Journal
    from .processes import is_stale
    from .store import open_postgres
    from .store.move import move_state

    config = app.config()
    if config.state_backend != "sqlite":
        raise UsageError(f"the state of {config.path} is already on {config.state_backend}")
    source = app.store()
    target = open_postgres(url_env, config.state_wait)
    try:
        copied = move_state(source, target, is_stale)
        Journal(target).record(
            "state.moved",
            f"state moved from {config.state_path} to {target.where}: {sum(copied.values())} rows",
            data={"from": str(config.state_path), "rows": copied},
        )
    finally:
        target.close()
    app.result(
        f"moved {sum(copied.values())} rows to {target.where}, each compared with the original "
        f"({', '.join(f'{t} {n}' for t, n in copied.items() if n)})"
    )
    url_key = "" if url_env == "RELEASER_DATABASE_URL" else f", url_env: {url_env}"
    app.result(
        f"next: set `state: {{backend: postgresql{url_key}}}` "
        f"in {config.path.name}; {config.state_path.name} now refuses use"
    )
    app.emit({"ok": True, "to": target.where, "rows": copied})


@command(cli, examples=('releaser unlock prod --force --reason "holder wedged"',))
@click.argument("environment", shell_complete=complete_environments)
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
            "lock.cleared",
            f"cleared the lock of {held.owner} (pid {held.pid} on {held.hostname}) on {environment}: {reason}",
            environment=environment,
            data={"reason": reason, "held_by": held.owner, "pid": held.pid},
        )
    app.emit({"ok": True, "environment": environment, "cleared": held is not None})


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
    from .schema import parse_duration
    from .store import StoreError
    from .watch import Watcher

    try:
        pause = parse_duration(interval)
    except ValueError as exc:
        raise UsageError(f"--interval: {exc}") from None
    if not 0.1 <= pause <= 86400:
        raise UsageError(f"--interval: between 100ms and 1d, got {interval}")
    if listen and once:
        raise UsageError("--listen needs a daemon: it cannot go with --once")
    if once and app.existing_store() is None:
        app.result("no rollback window is open")
        app.emit(
            {
                "ok": True,
                "looks": 0,
                "windows": [],
                "rolled_back": [],
                "alarms": [],
                "blind": [],
                "closed": [],
                "elsewhere": [],
                "reports": [],
            }
        )
        return
    watcher = Watcher(app.pipeline(), None if once else pause)
    rolled_back, alarms, reports, closed, looks = [], [], [], [], 0
    stop, wake = threading.Event(), threading.Event()

    def end(*_) -> None:
        stop.set()
        wake.set()

    # SIGTERM and SIGINT end the watch between looks, never in the middle of a rollback; a hangup
    # ends nothing: the windows stay watched (see interrupts.py).
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, end)
    receiver = _alert_receiver(app, listen, token_env, wake) if listen else None
    try:
        while not stop.is_set():
            try:
                result = watcher.look_once()
            except StoreError as exc:
                if once:
                    raise
                # a daemon outlives a state that is briefly away (a database restarting, the network)
                app.warn(f"watch: {exc}; looking again in {interval}")
                wake.wait(pause)
                wake.clear()
                continue
            looks += 1
            app.journal_hangup()
            rolled_back += result["rolled_back"]
            alarms += result["alarms"]
            reports += result["reports"]
            closed += result["closed"]
            if once:
                if result["elsewhere"]:
                    app.result(
                        f"{len(result['elsewhere'])} window(s) watched by another watch: "
                        + ", ".join(result["elsewhere"])
                    )
                elif not result["windows"]:
                    app.result("no rollback window is open")
                break
            wake.wait(pause)  # an alert wakes the watch at once
            wake.clear()
    finally:
        if receiver is not None:
            receiver.stop()
    if stop.is_set():
        watcher.stop()
        app.say("watch stopped; windows stay armed in the store for the next `releaser watch`")
    app.emit(
        {
            "ok": not alarms,
            "looks": looks,
            "windows": result["windows"] if looks else [],
            "rolled_back": rolled_back,
            "alarms": alarms,
            "blind": result["blind"] if looks else [],
            "elsewhere": result["elsewhere"] if looks else [],
            "closed": closed,
            "reports": reports,
        }
    )
    if alarms:
        sys.exit(EXIT_NEEDS_HUMAN)
    if rolled_back and once:  # a daemon's rollbacks are its job done: a service manager sees a normal stop
        sys.exit(EXIT_STAGE_FAILED)


def _alert_receiver(app: App, listen: str, token_env: str, wake: threading.Event):
    """Alertmanager's webhook endpoint for `watch --listen`: what it receives wakes the watch."""
    from . import secrets
    from .alerts import AlertReceiver, parse_address

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
        app.warn("no environment has `alerts:`: notifications will be accepted and roll nothing back")
    try:
        receiver = AlertReceiver(address, token, app.store(), config.environments, lambda _new: wake.set())
    except OSError as exc:
        raise UsageError(f"--listen {listen}: {exc.strerror}") from None
    app.say(f"receiving Alertmanager's webhook on http://{listen}/alerts")
    return receiver.start()


# -- effect reports --


@command(
    cli,
    examples=("releaser report 2.4.0", "releaser report 2.4.0 --format md --out -", "releaser report due --send"),
    exits=(0, 2, 4),
)
@click.argument("target", metavar="VERSION|due", shell_complete=complete_releases)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["html", "md", "json"]),
    help="Write this format to --out, or to stdout (default with --out: from its name, else html).",
)
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
            app.result(
                f"{outcome.release}: {outcome.state}"
                + (f": {outcome.detail}" if outcome.detail else "")
                + (f" ({outcome.path})" if outcome.path and outcome.state == "sent" else ""),
                "red" if outcome.needs_human else None,
            )
        if not due:
            app.result("no report is due")
        app.emit(
            {
                "ok": not any(o.needs_human for o in outcomes),
                "due": [i.release for i in due],
                "sent": [asdict(o) for o in outcomes],
            }
        )
        if any(o.needs_human for o in outcomes):
            sys.exit(EXIT_NEEDS_HUMAN)
        return
    if send:
        outcome = outbox.send(target, force=force)
        app.result(
            f"{target}: {outcome.state}"
            + (f": {outcome.detail}" if outcome.detail else "")
            + (f" ({outcome.path})" if outcome.path else ""),
            "red" if outcome.needs_human else None,
        )
        app.emit({"ok": not outcome.needs_human, **asdict(outcome)})
        if outcome.needs_human:
            sys.exit(EXIT_NEEDS_HUMAN)
        return
    document, rendered = produce(config, store, target)
    if fmt and out is None:
        out = "-"
    if document["preview"]:
        app.say(
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
            with os.fdopen(
                os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NONBLOCK, 0o644), "w", encoding="utf-8"
            ) as handle:
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
    return (
        f"unknown release {version!r}: nothing is registered yet; register it with "
        f"`releaser release create {version} --artifact FILE`"
    )


# -- looking --


@command(cli, examples=("releaser status", "releaser status --json | jq '.environments.prod.current'"))
def status(app: App) -> None:
    """Which release each environment runs and on which hosts, every release's stages and why
    one failed, locks, rollback windows and whether a watch keeps them, effect reports."""
    from .status import print_status

    document = _status(app)
    if app.json:
        app.emit(document)
    else:
        print_status(document, app.result, relative=app.tty, told=app.told)


@command(cli, examples=("releaser history --release 2.4.0", "releaser history --env prod --limit 20 | less"))
@click.option("--release", "release_id", shell_complete=complete_releases, help="Only this release.")
@click.option("--env", "environment", shell_complete=complete_environments, help="Only this environment.")
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
        app.result(f"{shown_time(event.ts)}  {event.kind:<20} {scope:<28} {app.told(event.message)}")


@command(
    cli,
    "completion",
    examples=(
        'eval "$(releaser completion bash)"   # in ~/.bashrc',
        "releaser completion fish > ~/.config/fish/completions/releaser.fish",
    ),
)
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(app: App, shell: str) -> None:
    """Print the shell completion script: commands, options, environments and release versions."""
    from click.shell_completion import get_completion_class

    click.echo(get_completion_class(shell)(cli, {}, "releaser", "_RELEASER_COMPLETE").source())


# -- the sandbox --


@command(cli, examples=("releaser demo", "releaser demo --dir /tmp/sandbox"))
@click.option(
    "--dir", "directory", type=click.Path(file_okay=False), help="Where to build the sandbox (default: a temp dir)."
)
def demo(app: App, directory: str | None) -> None:
    """Build a sandbox fleet on this machine and run three releases through it."""
    from .demo.run import run_demo

    summary = run_demo(Path(directory) if directory else None, app.say, app.show_event, app.tick if app.live else None)
    app.emit({"ok": True, **summary})


def main() -> None:
    streams.guard()  # a closed pipe or a lost terminal never ends the work: see streams.py
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
    except Exception as exc:  # a bug of ours: one scrubbed line and exit 4, the traceback on request
        if os.environ.get("RELEASER_DEBUG"):
            raise
        click.echo(printable(secrets.scrub(f"releaser: internal error: {type(exc).__name__}: {exc}")), err=True)
        click.echo(
            "this is a bug in releaser; RELEASER_DEBUG=1 shows the traceback. State and hosts are as "
            "the journal says: `releaser status`, then `releaser resume` if a run is left open.",
            err=True,
        )
        sys.exit(EXIT_NEEDS_HUMAN)


if __name__ == "__main__":
    main()
