"""Thin click commands: parse, call, print. Results go to stdout, progress and logs to
stderr; --json puts one JSON document on stdout. Exit codes: 0 ok, 1 stage failed and rolled back, 2 usage or
config error, 3 busy, 4 needs a human, 5 inconclusive.

    base        the `releaser` group, global options, exit codes, shared checks of values
    app         what a command works on, opened when first asked for: config, state, journal
    output      how a command prints (--json, --quiet, --verbose, colours)
    complete    shell completion of environments and releases
    setup       init, validate, completion, demo
    releases    release create, list, show
    promotion   promote, run, approve, reject, abort, rollback, redeploy, resume
    looking     status, history, watch
    reports     report
    state       state rebuild, state migrate, unlock
    hosts       exec, logs
    database    migrate, backups, drill
    serve       serve (the dashboard)

A command's module is imported when the command is asked for (base.Commands); each imports at
the top only click and the light modules every command needs, and what a command uses it imports
when it runs, so that `--version` and `status` start fast.
"""

from __future__ import annotations

import os
import sys

import click

from .. import secrets, streams
from ..errors import EXIT_NEEDS_HUMAN, EXIT_USAGE
from ..terminal import printable
from .app import INTERRUPTS
from .base import cli

__all__ = ["cli", "main"]


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
