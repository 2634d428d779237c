"""Before a stage starts: can releaser reach, and work on, every host it will touch?

A mistake is not a release failure. A key file that is not there, a known_hosts without the
host, a key the host refuses, a root the user cannot write, or sudo that asks for a password
ends the command before `stage.started`, with exit 2 and each host's real cause; hosts that
cannot be reached (refused, timed out) or whose host key changed end it with exit 4. Either
way nothing is recorded: no stage run, no rollback, no incident, the release as it was.

The sessions opened here are the stage's own (the fleet keeps them), so checking costs one
small script per host.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from shlex import quote as q
from typing import TYPE_CHECKING

from .errors import ConfigError, ConfigProblem, NeedsHuman, ReleaserError, UsageError
from .model import Config, Environment, Host, Playbook

if TYPE_CHECKING:  # `validate` checks files with none of these loaded
    from .fleet import Fleet
    from .transport.base import Transport

MARKER = "RELEASER_PREFLIGHT"


def local_problems(config: Config, environments: list[Environment] | None = None) -> list[ConfigProblem]:
    """The SSH files the configuration names for these environments (default: all) that this
    machine cannot read, each at the line that names it."""
    envs = environments if environments is not None else list(config.environments.values())
    wanted = {path for env in envs for host in env.hosts for path in _files(host)}
    problems = []
    for named in config.local_files:
        if named.path not in wanted:
            continue
        why = _unreadable(named.path)
        if why:
            problems.append(ConfigProblem(named.file, named.line, named.key, f"{named.path}: {why}"))
    return problems


def _files(host: Host) -> list[str]:
    options = host.ssh
    return [path for path in (options.identity_file, options.known_hosts, options.config_file) if path]


def _unreadable(path: str) -> str:
    if not os.path.exists(path):
        return "no such file on this machine"
    if os.path.isdir(path):
        return "is a directory, not a file"
    if not os.access(path, os.R_OK):
        return "cannot be read by this user"
    return ""


def check_hosts(
    config: Config, env: Environment, playbook: Playbook, fleet: Fleet, hosts: list[Host], what: str | None = None
) -> None:
    """Connect to `hosts` and check each can be worked on; raises (exit 2 or 4) naming every
    host's cause, before anything is recorded or touched. `what`: the work that did not start."""
    if env.transport == "ssh":
        problems = local_problems(config, [env])
        if problems:
            raise ConfigError(problems)
    if env.secrets:
        from .appsecrets import env_file

        env_file(env)  # every variable set: a missing one is named now, not as a host's failure
    causes: dict[str, tuple[str, bool]] = {}  # host -> (why, a mistake rather than a host out of reach)
    for name, exc in fleet.open(hosts).items():
        causes[name] = (str(exc), _is_mistake(exc))
    reached = [h for h in hosts if h.name not in causes]
    if reached:
        results = fleet.run("preflight", reached, lambda h: _script(h, playbook, env), timeout=60, quiet=True, own=True)
        for name, result in results.items():
            said = [line[len(MARKER) + 1 :] for line in result.stdout.splitlines() if line.startswith(MARKER + " ")]
            if said:
                causes[name] = ("; ".join(said), True)
            elif not result.ok:
                causes[name] = (result.why(), False)
    if not causes:
        return
    lines = "\n".join(f"  {name}: {why}" for name, (why, _mistake) in sorted(causes.items()))
    head = f"{len(causes)} of {len(hosts)} host(s) of {env.name} cannot be worked on"
    head = (f"{what} did not start: {head}; nothing was changed or recorded" if what else head) + ":\n" + lines
    if any(mistake for _why, mistake in causes.values()):
        raise UsageError(
            head + "\nfix the configuration or the hosts (`releaser validate --connect` checks them), "
            "then run the command again"
        )
    raise NeedsHuman(head + "\nrun the command again once they can be reached")


def _is_mistake(exc: BaseException) -> bool:
    """A cause the configuration or the controller can fix: a refused key, an unknown host key.
    A changed host key needs a person to look (exit 4), and so does a host out of reach."""
    from .transport.base import AccessRefused, HostKeyChanged

    if isinstance(exc, HostKeyChanged):
        return False
    return isinstance(exc, (AccessRefused, FileNotFoundError, PermissionError))


def _script(host: Host, playbook: Playbook, env: Environment) -> str:
    """Can this user write the root (or create it), run sudo without a password where the
    playbook asks for it, and run the container runtime of image releases? Each problem is
    one marked line."""
    script = f"""root={q(host.root)}
dir="$root"
while [ ! -e "$dir" ]; do dir=$(dirname "$dir"); done
if [ ! -d "$dir" ] || [ ! -w "$dir" ] || [ ! -x "$dir" ]; then
  echo "{MARKER} the root $root cannot be written by $(id -un) ($dir is not a directory it may write)"
fi
"""
    if playbook.sudo:
        hooks = ", ".join(playbook.sudo)
        script += f"""sudo -n true 2>/dev/null || echo "{MARKER} sudo asks $(id -un) for a password, and the hooks \
{hooks} run under sudo -n (allow them NOPASSWD in sudoers)"
"""
    if playbook.container is not None:
        # in a subshell with the hooks' variables (CONTAINERS_CONF, DOCKER_HOST...): as a phase runs it;
        # docker's daemon is asked (podman has none: asking it costs every host a podman start)
        from .playbook import exports

        runtime = q(env.runtime)
        script += f"""(
{exports(host, "preflight", None)}
if ! command -v {runtime} >/dev/null 2>&1; then
  echo "{MARKER} the container runtime {env.runtime} is not installed for $(id -un) (the playbook runs \
containers): install {env.runtime}, or set the runtime of the environment {env.name} (runtime: podman or docker)"
elif [ {runtime} = docker ] && ! said=$({runtime} version --format '{{{{.Server.Version}}}}' 2>&1 >/dev/null); then
  echo "{MARKER} the container runtime {env.runtime} does not work for $(id -un): $(printf '%s' "$said" \
| tail -n 1 | cut -c1-200)"
fi
)
"""
    return script


def check_every_host(config: Config, transports: Callable[[Environment], Transport]) -> int:
    """`validate --connect`: every host of every environment, as a stage would check it. Raises
    with every environment's causes (exit 2 when any is a mistake, else 4); returns the count."""
    from .fleet import Fleet

    failures: list[ReleaserError] = []
    for env in config.environments.values():
        with Fleet(env, transports(env)) as fleet:
            try:
                check_hosts(config, env, config.playbooks[env.playbook], fleet, list(env.hosts))
            except (UsageError, NeedsHuman) as exc:
                failures.append(exc)
    if any(isinstance(f, ConfigError) for f in failures):
        raise ConfigError([p for f in failures if isinstance(f, ConfigError) for p in f.problems])
    if failures:
        text = "\n".join(str(f) for f in failures)
        raise UsageError(text) if any(isinstance(f, UsageError) for f in failures) else NeedsHuman(text)
    return sum(len(env.hosts) for env in config.environments.values())
