"""Working on the hosts themselves, outside any deploy: `exec` runs a command on them, `logs`
shows the app's log. Neither takes the environment's lock: a deploy may be under way."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from ..errors import UsageError
from ..terminal import plain
from .app import App
from .base import cli, command, duration_option, known_hosts
from .complete import complete_environments

if TYPE_CHECKING:
    from ..adhoc import Outputs

MEANINGS = {
    0: "the command exited 0 on every host",
    1: "it failed on a host (a non-zero exit, a timeout): each is named",
    4: "a host could not be reached: each is named",
}
LOG_MEANINGS = {
    0: "every host's log was shown",
    1: "a host has no log to show (no running container, a service never started there): each is named",
    4: "a host could not be reached",
}


@command(
    cli,
    name="exec",
    examples=(
        "releaser exec prod -- uptime",
        "releaser exec prod --hosts web-1,web-2 -- cat REVISION",
        "releaser exec prod --host web-3 --timeout 5m -- bash -c 'tail -n 50 shared/logs/*.log'",
        "releaser exec prod --json -- df -h . | jq '.hosts[] | {host, exit_code}'",
    ),
    exits=(0, 1, 2, 4),
    meanings=MEANINGS,
)
@click.argument("environment", shell_complete=complete_environments)
@click.argument("argv", metavar="-- COMMAND [ARGS]...", nargs=-1, required=True)
@click.option("--hosts", "host_list", metavar="H1,H2", help="Only these hosts (comma-separated).")
@click.option("--host", "hosts", multiple=True, help="Only this host (repeatable).")
@click.option("--timeout", default="60s", show_default=True, help="Ended on a host that runs longer.")
def exec_(
    app: App, environment: str, argv: tuple[str, ...], host_list: str | None, hosts: tuple[str, ...], timeout: str
) -> None:
    """Run COMMAND on every host of ENVIRONMENT (or the ones named) at once, in its `current`
    release (the root when none), with the variables hooks get. Each argument reaches the host
    as one word (quoted): for pipes, globs or `&&`, run `bash -c '...'`. It takes no lock, so
    it may meet hosts in the middle of a deploy. Journaled: who, the command, each host's exit
    code (the journal scrubs registered secrets)."""

    names = [*(n.strip() for n in (host_list or "").split(",") if n.strip()), *hosts]
    chosen = known_hosts(app, environment, names)
    seconds = duration_option("--timeout", timeout, 1, 86400, "1s and 1d")
    from ..adhoc import AdHoc

    env = app.config().environments[environment]
    outputs = app.operation(AdHoc).exec(env, chosen, list(argv), seconds)
    _finish(app, outputs, "exec", environment, {"command": list(argv)})


@command(
    cli,
    examples=("releaser logs prod", "releaser logs prod --host web-3 -n 500", "releaser logs prod --host web-3 -f"),
    exits=(0, 1, 2, 4),
    meanings=LOG_MEANINGS,
)
@click.argument("environment", shell_complete=complete_environments)
@click.option("--host", help="Only this host.")
@click.option(
    "-n", "--lines", type=click.IntRange(min=1, max=1_000_000), default=100, show_default=True, help="The last N lines."
)
@click.option("-f", "--follow", is_flag=True, help="Keep showing what is written, until Ctrl-C (one host).")
def logs(app: App, environment: str, host: str | None, lines: int, follow: bool) -> None:
    """The last lines of the app's log on each host of ENVIRONMENT (or --host), each line after its
    host's name when there are several: the service's log file (`service:` in the playbook) or the
    running container's (`container:`). An app its hooks start is not releaser's to know the log of."""
    chosen = known_hosts(app, environment, [host] if host else [])
    if follow and len(chosen) > 1:
        raise UsageError(f"-f follows one host's log: name it with --host ({environment} has {len(chosen)} hosts)")
    if follow and app.out.json:
        raise UsageError("-f shows lines as they come: it cannot go with --json")
    from ..adhoc import AdHoc

    env = app.config().environments[environment]
    adhoc = app.operation(AdHoc)
    if not follow:
        _finish(app, adhoc.logs(env, chosen, lines), "logs", environment)
        return
    lines_of = _Lines(app.out.result)
    status = adhoc.follow(env, chosen[0], lines, lines_of)
    lines_of.flush()
    if status:
        app.out.warn(f"{chosen[0].name}: the log could not be followed (exit {status})")
        sys.exit(1)
    app.out.say(f"{chosen[0].name}: the log ended")


class _Lines:
    """Streamed output, printed a whole line at a time (a sequence cut in two is still removed)."""

    def __init__(self, emit):
        self.emit, self.rest = emit, ""

    def __call__(self, text: str) -> None:
        *done, self.rest = (self.rest + text).split("\n")
        for line in done:
            self.emit(plain(line))

    def flush(self) -> None:
        if self.rest:
            self.emit(plain(self.rest))
        self.rest = ""


def _lines(text: str) -> list[str]:
    return [plain(line) for line in text.removesuffix("\n").split("\n")] if text else []


def _finish(app: App, outputs: Outputs, what: str, environment: str, extra: dict | None = None) -> None:
    """Each host's output (stdout to stdout, stderr to stderr, after the host's name when there
    are several) and how it ended; then the exit code: 0, 1 (failed) or 4 (not reached)."""
    several = len(outputs.hosts) > 1
    if not app.out.json:
        for host in outputs.hosts:
            prefix = f"{host.host}: " if several else ""
            for line in _lines(host.stdout):
                app.out.result(prefix + line)
            for line in _lines(host.stderr):
                app.out.warn(f"{host.host}: {line}", None)
            if what == "exec" and host.ok:
                app.out.say(f"{host.host}: exit 0 in {host.duration:.2f}s")
            elif what == "exec" or not host.reached:
                app.out.warn(f"{host.host}: {host.outcome()}")
    failed, unreached = outputs.failed, outputs.unreached
    if failed or unreached:
        told = [f"failed on {', '.join(failed)}"] if failed else []
        told += [f"not reached: {', '.join(unreached)}"] if unreached else []
        app.out.warn(f"{what} on {environment}: {'; '.join(told)}")
    app.out.emit(
        {
            "ok": not outputs.exit_code,
            "exit_code": outputs.exit_code,
            "environment": environment,
            **(extra or {}),
            "hosts": [host.to_dict() for host in outputs.hosts],
        }
    )
    if outputs.exit_code:
        sys.exit(outputs.exit_code)
