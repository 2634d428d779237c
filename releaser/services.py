"""Supervised services of tarball releases: the bash that stops the running process, starts the
release's, waits until it is ready, and says which release runs. playbook.py places these
steps in its phases.

The process starts detached (a session and process group of its own, input from /dev/null,
output appended to `logs/<name>.log` under the host's root, rotated at each start once it is
large), in the release's own directory, so that its working directory tells which release it
is. Its pid and start time go to `.releaser/service.pid`: a pid the kernel gave to another
process since is not the service (a stale pidfile stops nothing). Stopping sends TERM to the
process group, then KILL after `stop_timeout`.
"""

from __future__ import annotations

import shlex

from .model import Host, ServiceSpec
from .readiness import wait_ready
from .schema import render_template

q = shlex.quote

PID_FILE = ".releaser/service.pid"
ROTATE_BYTES = 10 * 1024 * 1024
KEEP_LOGS = 5

# $1's start time (clock ticks after boot), "" when it is gone or a zombie: with the pid, the
# process's identity.
_FUNCTIONS = (
    r"""_started() {
  local stat
  read -r stat 2>/dev/null < "/proc/$1/stat" || return 0
  set -- ${stat##*) }
  [ "$1" != Z ] && printf '%s' "${20}"
}
_service_pid() {
  local recorded started
  pid=""
  read -r recorded started 2>/dev/null < """
    + PID_FILE
    + r""" || return 0
  [ -n "$recorded" ] && [ -n "$started" ] && [ "$(_started "$recorded")" = "$started" ] && pid=$recorded
  return 0
}
"""
)


def templates(spec: ServiceSpec) -> list[tuple[str, str]]:
    """The values that may name host vars (the command reads them from its environment)."""
    return [("ready", spec.ready)] if spec.ready else []


def prelude() -> str:
    return _FUNCTIONS


def _stopper(spec: ServiceSpec) -> str:
    """`_stop_service`: the recorded service, if it runs, gone (TERM to its group, KILL after
    stop_timeout); returns 1 when even KILL did not end it."""
    wait = max(1, round(spec.stop_timeout * 10))
    return f"""_stop_service() {{
  local started i
  _service_pid
  [ -n "$pid" ] || return 0
  started=$(_started "$pid")
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < {wait}; i++)); do [ "$(_started "$pid")" = "$started" ] || break; sleep 0.1; done
  if [ "$(_started "$pid")" = "$started" ]; then
    echo "releaser: the {spec.name} service (pid $pid) did not stop within {round(spec.stop_timeout)}s of TERM; \\
killed it" >&2
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do [ "$(_started "$pid")" = "$started" ] || break; sleep 0.1; done
  fi
  if [ "$(_started "$pid")" = "$started" ]; then
    echo "releaser: the {spec.name} service (pid $pid) outlived KILL" >&2
    return 1
  fi
  rm -f {PID_FILE}
}}
"""


def handover(spec: ServiceSpec, host: Host, release: str, secrets: str | None = None, keep: bool = False) -> str:
    """The switch's restart: stop the running service, start the release's (with the app's
    secrets from the file `secrets`, a path the shell expands, in its environment alone), wait
    until it is ready (`keep`: a rollback's service stays up even if it is not). The old one
    stops first (the same ports); with a router the host is drained."""
    load = f'while IFS= read -r line; do export "${{line%%=*}}=${{line#*=}}"; done < "{secrets}" && ' if secrets else ""
    log = spec.log
    rotate = "".join(f'  [ ! -f "$log.{i}" ] || mv -f "$log.{i}" "$log.{i + 1}"\n' for i in range(KEEP_LOGS - 1, 0, -1))
    ready = wait_ready(
        f"the {spec.name} service of {release}",
        render_template(spec.ready, host) if spec.ready else None,
        spec.ready_timeout,
        '[ -n "$began" ] && [ "$(_started "$new")" = "$began" ]',
        'wait "$new" 2>/dev/null; echo $?',
        'tail -c +"$said" "$log" | tail -n 20',
        None if keep else "_stop_service",
    )
    return (
        _stopper(spec)
        + f"""_stop_service || {{ _rec failed "" "service stop"; exit 1; }}
log={q(log)}
mkdir -p logs
if [ -f "$log" ] && [ "$(stat -c %s "$log")" -gt {ROTATE_BYTES} ]; then
{rotate}  mv -f "$log" "$log.1"
fi
_stamp
printf '%s releaser: starting {release}\\n' "$ts" >> "$log"
said=$(($(stat -c %s "$log") + 1))  # where this start's own words begin
(cd {q(f"releases/{release}")} && {load}exec setsid bash -c {q(spec.command)} </dev/null >>"$RELEASER_ROOT/$log" 2>&1) &
new=$!
began=$(_started "$new")
printf '%s %s\\n' "$new" "$began" > {PID_FILE}.tmp && mv -f {PID_FILE}.tmp {PID_FILE}
"""
        + ready
    )


def served() -> str:
    """Sets $served to the release the service runs (its working directory), "" when none runs."""
    return """served=""
_service_pid
if [ -n "$pid" ]; then
  served=$(readlink "/proc/$pid/cwd" 2>/dev/null || true)
  case "$served" in */releases/*) served=${served##*/releases/} ;; *) served="" ;; esac
fi
"""
