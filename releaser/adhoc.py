"""Work on an environment's hosts outside any deploy: `releaser exec` runs a command on every
host (or some) at once, `releaser logs` shows the app's log where releaser runs the app.

Neither takes the environment's lock nor changes releaser's state, so either may meet a host in
the middle of a deploy. An exec is journaled (who, what, where, then how it ended on each host);
reading a log is not.
"""

from __future__ import annotations

import shlex

from . import containers
from .errors import EXIT_NEEDS_HUMAN, EXIT_STAGE_FAILED, ReleaserError, UsageError
from .events import Event
from .fleet import HostResult
from .model import Environment, Host, Playbook
from .operation import Operation
from .playbook import exec_script, exports
from .processes import whoami
from .record import Record
from .transport.base import OutputFn

q = shlex.quote

EXIT_FAILED = EXIT_STAGE_FAILED  # the command failed on a host
EXIT_UNREACHED = EXIT_NEEDS_HUMAN  # a host could not be reached


class Unreached(ReleaserError):
    """The host could not be reached."""

    exit_code = EXIT_UNREACHED


class HostOutput(Record):
    """How a command ended on one host, and what it printed."""

    host: str
    ok: bool  # exited 0, in time, and let go of its output
    exit_code: int | None  # None: the host could not be reached, or the connection was lost
    stdout: str
    stderr: str
    duration: float
    error: str = ""  # why there is no exit status, or why the command was cut short

    @classmethod
    def of(cls, result: HostResult) -> HostOutput:
        return cls(
            result.host, result.ok, result.exit_code, result.stdout, result.stderr, result.duration, result.error
        )

    @property
    def reached(self) -> bool:
        return self.exit_code is not None

    def outcome(self) -> str:
        """'exit 0', 'exit 3', 'exit 124: timed out after 60s', 'not reached: ...'."""
        if not self.reached:
            return f"not reached: {self.error}"
        if self.error.startswith("timed out"):  # ended by releaser: its status is no exit of the command's
            return self.error
        return f"exit {self.exit_code}" + (f": {self.error}" if self.error else "")

    def to_dict(self) -> dict:
        return {
            "host": self.host,
            "ok": self.ok,
            "exit_code": self.exit_code,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "duration": round(self.duration, 3),
            "error": self.error,
        }


class Outputs(Record):
    """Every chosen host's output, in the environment's order of hosts."""

    hosts: list[HostOutput]

    @property
    def failed(self) -> list[str]:
        return [h.host for h in self.hosts if h.reached and not h.ok]

    @property
    def unreached(self) -> list[str]:
        return [h.host for h in self.hosts if not h.reached]

    @property
    def exit_code(self) -> int:
        """0 when every host's command exited 0; 1 when one failed; 4 when a host was not reached."""
        return EXIT_UNREACHED if self.unreached else EXIT_FAILED if self.failed else 0


def logs_script(env: Environment, playbook: Playbook, host: Host, lines: int, follow: bool) -> str:
    """The last `lines` lines of the app's log on `host` (and, with `follow`, what comes after):
    the service's log file, or the running container's log. Fails with a sentence when there is
    none; UsageError when releaser does not run the app (hooks start it). The host's vars are
    exported, as in every phase (a runtime's CONTAINERS_CONF or DOCKER_HOST among them)."""
    head = exports(host, "logs", "") + "\n"
    if playbook.service is not None:
        name, log = playbook.service.name, playbook.service.log
        root = host.root.rstrip("/") or "/"
        return (
            head
            + f"""if ! cd {q(root)} 2>/dev/null; then
  printf 'releaser: no %s on this host: nothing deployed here\\n' {q(root)} >&2; exit 1
fi
if [ ! -f {q(log)} ]; then
  printf 'releaser: no log at %s: the %s service has never started on this host\\n' {q(root + "/" + log)} {q(name)} >&2
  exit 1
fi
exec tail -n {lines}{" -F" if follow else ""} {q(log)} </dev/null
"""
        )
    if playbook.container is not None:
        name = playbook.container.name
        return (
            head
            + containers.prelude(env.runtime)
            + f"""ids=$(_running {q(name)})
if [ -z "$ids" ]; then
  printf 'releaser: no running container of %s on this host (%s ps lists none labelled releaser.app=%s)\\n' \\
    {q(name)} "$rt" {q(name)} >&2
  exit 1
fi
set -- $ids
exec "$rt" logs --tail {lines}{" -f" if follow else ""} "$1" </dev/null 2>&1
"""
        )
    raise UsageError(
        f"releaser does not run this app's process (the playbook {playbook.file} starts it from its hooks), so "
        f"it does not know its log; read it with `releaser exec {env.name} -- tail -n {lines} PATH`"
    )


class AdHoc(Operation):
    def exec(self, env: Environment, hosts: list[Host], argv: list[str], timeout: float) -> Outputs:
        """`argv` on each of `hosts` at once (`playbook.exec_script`), journaled before and after."""
        command, by = shlex.join(argv), whoami()
        names = [h.name for h in hosts]
        data = {"by": by, "command": argv, "hosts": names}
        self.journal.record(
            Event.EXEC_STARTED,
            f"{by} runs `{command}` on {_hosts(names, env)}",
            environment=env.name,
            data=data,
        )
        with self._fleet(env) as fleet:
            results = fleet.run("exec", hosts, lambda host: exec_script(host, argv), timeout=timeout)
        outputs = _in_order(hosts, results)
        codes = {h.host: h.exit_code for h in outputs.hosts}
        said = f"`{command}` on {_hosts(names, env)}: " + _summary(outputs)
        self.journal.record(
            Event.EXEC_RAN, said, environment=env.name, data={**data, "exit_codes": codes, "ok": not outputs.exit_code}
        )
        return outputs

    def logs(self, env: Environment, hosts: list[Host], lines: int) -> Outputs:
        """The last `lines` lines of the app's log on each of `hosts`, one exec per host."""
        playbook = self.config.playbooks[env.playbook]
        logs_script(env, playbook, hosts[0], lines, False)  # UsageError before any host is asked
        with self._fleet(env) as fleet:
            results = fleet.run("logs", hosts, lambda host: logs_script(env, playbook, host, lines, False))
        return _in_order(hosts, results)

    def follow(self, env: Environment, host: Host, lines: int, on_output: OutputFn) -> int:
        """The app's log on `host` as it grows, passed to `on_output` until the caller stops (Ctrl-C)
        or the log ends (its container stopped); the exit status of what followed it."""
        script = logs_script(env, self.config.playbooks[env.playbook], host, lines, True)
        with self._fleet(env) as fleet:
            try:
                return fleet.stream(host, script, on_output)
            except (ConnectionError, OSError) as exc:
                raise Unreached(f"{host.name}: not reached: {exc}") from None


def _in_order(hosts: list[Host], results: dict[str, HostResult]) -> Outputs:
    return Outputs([HostOutput.of(results[h.name]) for h in hosts if h.name in results])


def _hosts(names: list[str], env: Environment) -> str:
    if len(names) == len(env.hosts):
        return f"every host of {env.name} ({len(names)})"
    return f"{', '.join(names)} of {env.name}"


def _summary(outputs: Outputs) -> str:
    """'3 host(s) exited 0', or which failed and which were not reached."""
    parts = []
    if ok := sum(h.ok for h in outputs.hosts):
        parts.append(f"{ok} host(s) exited 0")
    if outputs.failed:
        failed = [h for h in outputs.hosts if h.host in outputs.failed]
        parts.append("failed on " + ", ".join(f"{h.host} ({h.outcome()})" for h in failed))
    if outputs.unreached:
        parts.append("not reached: " + ", ".join(outputs.unreached))
    return "; ".join(parts)
