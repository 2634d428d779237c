"""The `releaser` group and what every command shares: the global options, the decorator that
turns releaser's errors into exit codes (with the CLI contract's meaning of each in --help),
and the checks of command-line values that several commands take."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn, TypeVar

import click

from .. import __version__, secrets
from ..errors import ConfigError, ReleaserError, UsageError
from ..names import DEFAULT_CONFIG
from .app import App

if TYPE_CHECKING:
    from ..model import Host

C = TypeVar("C", bound=click.Command)

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


def global_options(command: C) -> C:
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


def command(
    group: click.Group,
    name: str | None = None,
    examples: tuple[str, ...] = (),
    exits: tuple[int, ...] = (0, 2),
    meanings: dict[int, str] | None = None,
    **kwargs: Any,
) -> Callable[[Callable[..., None]], click.Command]:
    """A subcommand that takes the global options and turns releaser errors into exit codes; its
    --help ends with `examples` and the meaning of each of its exit codes (`meanings` for those
    a command that moves no release means otherwise)."""
    meaning = {**EXIT_MEANINGS, **(meanings or {})}
    epilog = "\b\nExamples:\n" + "\n".join(f"  {line}" for line in examples) + "\n\n" if examples else ""
    epilog += "\b\nExit codes:\n" + "\n".join(f"  {code}  {meaning[code]}" for code in exits)

    def decorate(fn: Callable[..., None]) -> click.Command:
        @global_options
        @group.command(name, epilog=epilog, **kwargs)
        @click.pass_obj
        @functools.wraps(fn)
        def wrapper(app: App, chdir, config_path, as_json, quiet, verbose, no_color, **params) -> None:
            try:
                app.apply(chdir, config_path, as_json, quiet, verbose, no_color)
                return fn(app, **params)
            except ReleaserError as exc:
                _fail(app, exc)
            finally:
                app.close()

        return wrapper

    return decorate


def _fail(app: App, exc: ReleaserError) -> NoReturn:
    out = app.out
    kind = type(exc).__name__
    if isinstance(exc, ConfigError):
        out.warn(f"configuration error{'s' if len(exc.problems) > 1 else ''}:")
        for problem in exc.problems:
            out.warn(f"  {problem}", None)
    else:
        out.warn(f"error: {exc}")
    if out.json:
        error: dict[str, Any] = {"kind": kind, "message": str(exc)}
        if isinstance(exc, ConfigError):
            error["problems"] = [asdict(p) for p in exc.problems]
        document = {"ok": False, "exit_code": exc.exit_code, "error": error}
        click.echo(json.dumps(secrets.scrub_data(document), indent=2))
    sys.exit(exc.exit_code)


class Commands(click.Group):
    """The `releaser` group: a command's module is imported when the command is asked for, so that
    `releaser status` loads the status command's module and not the ten others."""

    # command -> the module of releaser.cli that defines it (tests/test_cli.py checks the map)
    MODULES: ClassVar[dict[str, str]] = {
        **dict.fromkeys(("init", "validate", "completion", "demo"), "setup"),
        "release": "releases",
        **dict.fromkeys(
            ("promote", "run", "approve", "reject", "abort", "rollback", "redeploy", "resume"), "promotion"
        ),
        **dict.fromkeys(("status", "history", "watch"), "looking"),
        "report": "reports",
        **dict.fromkeys(("state", "unlock"), "state"),
        **dict.fromkeys(("exec", "logs"), "hosts"),
        **dict.fromkeys(("migrate", "backups", "drill"), "database"),
        "serve": "serve",
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self.MODULES)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.MODULES:
            from importlib import import_module

            import_module(f"{__package__}.{self.MODULES[cmd_name]}")  # registers its commands
        return self.commands.get(cmd_name)


@global_options
@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
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


def validate_release_id(version: str) -> str:
    """A release id as typed on the command line (see releases.validate_release_id)."""
    from ..releases import validate_release_id as validate

    return validate(version)


def duration_option(option: str, value: str, low: float, high: float, shown: str) -> float:
    """A duration option ('90s', '5m') in seconds, from `low` to `high` (`shown`: that range in words)."""
    from ..schema import parse_duration

    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None
    if not low <= seconds <= high:
        raise UsageError(f"{option}: between {shown}, got {value}")
    return seconds


def plain_option(option: str, value: str) -> None:
    """An option value that is shown on terminals and in reports: one line, no control characters."""
    try:
        from ..schema import check_text

        check_text(value)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None
    if not value.strip() or len(value) > 2000:
        raise UsageError(f"{option}: expected 1 to 2000 characters")


def unknown_release(version: str) -> str:
    return (
        f"unknown release {version!r}: nothing is registered yet; register it with "
        f"`releaser release create {version} --artifact FILE`"
    )


def known_environment(app: App, environment: str) -> None:
    """UsageError for an environment the configuration does not name."""
    known = app.config().environments
    if environment not in known:
        from ..schema import did_you_mean

        raise UsageError(
            f"unknown environment {environment!r}{did_you_mean(environment, known)} (known: {', '.join(known)})"
        )


def known_hosts(app: App, environment: str, names: list[str]) -> list[Host]:
    """The hosts of `environment` that `names` name (every host when none is named), in the
    environment's order; UsageError naming each one it does not have."""
    known_environment(app, environment)
    env = app.config().environments[environment]
    have = [h.name for h in env.hosts]
    unknown = [name for name in names if name not in have]
    if unknown:
        from ..schema import did_you_mean

        raise UsageError(
            "; ".join(f"no host {name!r} in {environment}{did_you_mean(name, have)}" for name in unknown)
            + f" (hosts: {', '.join(have)})"
        )
    return [h for h in env.hosts if not names or h.name in names]
