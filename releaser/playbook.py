"""Render a playbook phase into ONE bash script per host, and run it detached on the host.

Every value that reaches the shell goes through shlex.quote; hooks (the user's own shell)
run in their own bash, in the release directory, with the exported RELEASER_* variables
and the host's vars.

A phase that changes the host (prepare, switch) is wrapped by `detached`: the script is
written to `<root>/.releaser/phases/` and run in a session of its own with its output in
files, under the host's phase lock. It finishes (or fails) as a whole whatever becomes of
the connection or the controller, and appends each step to the host's record
(`hostrecord`). The connection only waits for it and passes its output on.
"""

from __future__ import annotations

import json
import os
import shlex
import uuid

from . import containers, services
from .appsecrets import ENV_FILE
from .hostrecord import CURRENT_MARKER, RECORD_MARKER, SERVED_MARKER
from .model import ContainerSpec, Environment, Host, MigrateSpec, Playbook, RegistrySpec
from .record import Record

EXIT_CHECKSUM = 65
EXIT_NOT_PREPARED = 66
EXIT_SWITCH_MISMATCH = 67
EXIT_SERVES_OTHER = 69
EXIT_HOST_BUSY = 75
EXIT_HELD_OUTPUT = 76  # a hook returned but left a process writing to the phase's output

RECORD = ".releaser/record.jsonl"
LOCK = ".releaser/lock"

q = shlex.quote


def artifact_path(host: Host, release: str) -> str:
    """Where the artifact is uploaded on the host before unpacking."""
    return f"{host.root.rstrip('/')}/.releaser/incoming/{release}.tar"


def new_op() -> str:
    """A phase's id on the host: its lines in the record carry it."""
    return uuid.uuid4().hex[:16]


def _head(op: str, run: str, action: str, release: str) -> str:
    """The fields every record line of a phase starts with, as a JSON fragment (safe values:
    hex op, run ids, action names and release ids that match RELEASE_ID)."""
    return json.dumps({"op": op, "run": run, "action": action, "release": release})[1:-1]


# How to start a server from a hook, in releaser's words on the host and the controller.
HELD_FIX = "start it with its input and output redirected, e.g. nohup CMD </dev/null >>LOG 2>&1 &"


# A record line: printf'd by bash with values that are JSON-safe by construction (the head
# above; steps and details are releaser's own words; versions read on the host pass _safe).
_SAFE = r"""_safe() {
  if [[ "$1" =~ ^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$ ]]; then printf '%s' "$1"; elif [ -n "$1" ]; then printf '?'; fi
}
"""
# Sets $ts to now, UTC, to the millisecond: from bash's own clock (5.0 and later), without a process.
_STAMP = r"""_stamp() {
  local t=${EPOCHREALTIME:-}
  if [ -n "$t" ]; then
    TZ=UTC0 printf -v ts '%(%Y-%m-%dT%H:%M:%S)T.%.3sZ' "${t%[.,]*}" "${t#*[.,]}"
  else
    ts=$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)
  fi
}
"""
_RECORDER = (
    _SAFE
    + _STAMP
    + r"""_rec() {
  local line ts from=""
  _stamp
  [ -z "${2:-}" ] || from=$(_safe "$2")
  printf -v line '{"ts":"%s",%s,"step":"%s","from":"%s","detail":"%s"}' \
    "$ts" "$RELEASER_RECORD_HEAD" "$1" "$from" "${3:-}"
  printf '%s\n' "$line" >> "$RELEASER_ROOT/"""
    + RECORD
    + r""""
  sync "$RELEASER_ROOT/"""
    + RECORD
    + r"""" 2>/dev/null || true
  printf '"""
    + RECORD_MARKER
    + r""" %s\n' "$line"
}
# After a hook returned: a process it left behind that still writes to the phase's output (a
# daemon started with `&` alone) writes to files removed when the phase ends. Names it, fails.
# A child of `nohup CMD </dev/null >>LOG 2>&1 &` holds that output too, from its fork until it
# applies its redirections, which on a busy machine can be after the hook returned: a process
# counts only while it still holds the output up to 3s later (no wait when none holds it).
_held() {
  local f="${RELEASER_STEP_FILE%.step}" runner=0 last=0 p pid held i
  [ -n "${RELEASER_STEP_FILE:-}" ] && [ -e "$f.out" ] || return 0
  read -r runner 2>/dev/null < "$f.pid" || true
  for ((i = 0; i < 30; i++)); do
    held=""
    read -r _ _ _ _ last < /proc/loadavg 2>/dev/null || last=0  # the pid given out last
    for p in /proc/[0-9]*; do  # bash's own tests, no process per look: cheap on a busy host
      pid=${p#/proc/}
      case "$pid" in "$$"|"$PPID"|"$runner") continue ;; esac
      # what a hook left was started after the phase's runner: a higher pid, unless pids have
      # wrapped since (the last pid given out is then below the runner's): then every process
      ((pid > runner || last < runner)) || continue
      if [ "$p/fd/1" -ef "$f.out" ] || [ "$p/fd/1" -ef "$f.err" ] || [ "$p/fd/2" -ef "$f.out" ] \
        || [ "$p/fd/2" -ef "$f.err" ]; then
        held=$pid
      fi
    done
    [ -n "$held" ] || return 0
    sleep 0.1
  done
  echo "releaser: the $1 hook returned but left pid $held ($(ps -o args= -p "$held" 2>/dev/null | cut -c1-80)) \
writing to the phase's output, which is removed when the phase ends; """
    + HELD_FIX
    + r"""" >&2
  return 1
}
"""
)


def exports(host: Host, phase: str, release: str | None) -> str:
    """The variables hooks get: the host's vars and RELEASER_* (RELEASER_RELEASE unless None)."""
    env = {
        **host.vars,
        "RELEASER_ROOT": host.root,
        "RELEASER_HOST": host.name,
        "RELEASER_ADDRESS": host.address,
        **({"RELEASER_RELEASE": release} if release is not None else {}),
        "RELEASER_PHASE": phase,
    }
    return "\n".join(f"export {name}={q(value)}" for name, value in env.items())


def _preamble(host: Host, phase: str, release: str, head: str = "") -> str:
    return f"""set -euo pipefail
umask 022
{exports(host, phase, release)}
RELEASER_RECORD_HEAD={q(head)}
cd "$RELEASER_ROOT" 2>/dev/null && [ -d releases ] && [ -d shared ] && [ -d .releaser ] \
  || {{ mkdir -p "$RELEASER_ROOT/releases" "$RELEASER_ROOT/shared" "$RELEASER_ROOT/.releaser"; cd "$RELEASER_ROOT"; }}
{_RECORDER}"""


def _hook(playbook: Playbook, name: str, directory: str) -> str:
    """The hook as one command (a subshell), or "" when the playbook has none."""
    script = playbook.hooks.get(name)
    if not script:
        return ""
    runner = "sudo -n -E bash" if name in playbook.sudo else "bash"
    return f"(cd {directory} && exec {runner} -euo pipefail -c {q(script)})"


def _marked(name: str) -> str:
    """Tell the runner which hook runs now (for a slow or hung phase's message)."""
    return f'printf %s {q(name)} > "${{RELEASER_STEP_FILE:-/dev/null}}" 2>/dev/null || true\n'


def _step(playbook: Playbook, name: str, directory: str, done: str) -> str:
    """Run a hook; record `done` after it, or `failed` (which hook, its status) and exit with
    the hook's own status, its stderr being the last thing the phase said."""
    hook = _hook(playbook, name, directory)
    if not hook:
        return ""
    return (
        _marked(name)
        + f"""if {hook}; then
  _held {q(name)} || {{ _rec failed "" "{name} held output"; exit {EXIT_HELD_OUTPUT}; }}
  _rec {done}
else
  rc=$?; _rec failed "" "{name} exit $rc"; exit $rc
fi
"""
    )


def _fetch(url: str, path: str) -> str:
    """Pull mode: the host downloads the artifact itself (curl, else wget)."""
    incoming, part = q(path), q(path + ".part")
    return f"""if [ ! -f {incoming} ]; then
  mkdir -p {q(os.path.dirname(path))}
  if command -v curl >/dev/null 2>&1; then
    curl -fsSL --retry 3 --connect-timeout 10 -o {part} {q(url)}
  else
    wget -q -t 3 -T 10 -O {part} {q(url)}
  fi
  mv -f {part} {incoming}
fi
"""


def prepare_script(
    playbook: Playbook,
    host: Host,
    release: str,
    sha256: str,
    op: str,
    run: str,
    url: str | None = None,
    env: Environment | None = None,
) -> str:
    """Unpack the artifact (uploaded, or fetched from `url`) into releases/<id>, link shared
    paths, run the prepare hook. Idempotent: a release with its .complete marker is left as is."""
    dest = f"releases/{release}"
    links = "".join(
        f"mkdir -p {q('shared/' + path)}\nrm -rf {q(dest + '/' + path)}\n"
        f"ln -s {q('../../shared/' + path)} {q(dest + '/' + path)}\n"
        for path in playbook.shared
    )
    incoming = q(artifact_path(host, release))
    head = _head(op, run, "prepare", release)
    return (
        _preamble(host, "prepare", release, head)
        + f"""
if [ -f {q(dest + "/.complete")} ] && [ ! -L {q(dest + "/.complete")} ]; then
  echo "releaser: {release} already prepared"
  rm -f {incoming}
  _rec unpacked "" already
  exit 0
fi
{_fetch(url, artifact_path(host, release)) if url else ""}actual=$(sha256sum < {incoming})
actual=${{actual%% *}}
if [ "$actual" != {q(sha256)} ]; then
  echo "releaser: artifact checksum mismatch: expected {sha256}, got $actual" >&2
  _rec failed "" checksum
  exit {EXIT_CHECKSUM}
fi
if [ -e {q(dest)} ] || [ -L {q(dest)} ]; then rm -rf {q(dest)}; fi
mkdir {q(dest)}
tar -xf {incoming} -C {q(dest)}
# releaser's own files never follow a link the artifact may have shipped in their place
for own in {q(dest + "/REVISION")} {q(dest + "/.complete")}; do
  if [ -e "$own" ] || [ -L "$own" ]; then rm -rf "$own"; fi
done
printf '%s\\n' "$RELEASER_RELEASE" > {q(dest + "/REVISION")}
_rec unpacked
{links}{_rendered(playbook, host, release, env, dest)}{_step(playbook, "prepare", q(dest), "prepared")}\
if [ -e {q(dest + "/.complete")} ] || [ -L {q(dest + "/.complete")} ]; then rm -rf {q(dest + "/.complete")}; fi
: > {q(dest + "/.complete")}
rm -f {incoming}
echo "releaser: prepared {release}"
"""
    )


def _rendered(playbook: Playbook, host: Host, release: str, env: Environment | None, dest: str) -> str:
    """Write the playbook's templates, rendered for this host, into the release (replacing
    whatever the artifact holds at those paths, a link included)."""
    if not playbook.templates:
        return ""
    from .templates import render

    lines = []
    for spec in playbook.templates:
        path = q(f"{dest}/{spec.path}")
        text = render(spec, host, release, env.name if env else "")
        lines.append(
            f"mkdir -p {q(os.path.dirname(f'{dest}/{spec.path}'))}\n"
            f"if [ -e {path} ] || [ -L {path} ]; then rm -rf {path}; fi\n"
            f"printf '%s' {q(text)} > {path}\n"
        )
    return "".join(lines) + "_rec rendered\n"


def image_prepare_script(
    playbook: Playbook,
    host: Host,
    release: str,
    image: str,
    op: str,
    run: str,
    env: Environment,
    registry: RegistrySpec,
) -> str:
    """An image release: pull its image by digest (unless the host has it), write the release's
    directory (REVISION, IMAGE), run the prepare hook, create its container. Idempotent."""
    spec = playbook.container
    if spec is None:  # refused before any stage starts (pipeline.py)
        raise ValueError(f"the playbook {playbook.file} has no `container:` to run image releases")
    dest = f"releases/{release}"
    head = _head(op, run, "prepare", release)
    return (
        _preamble(host, "prepare", release, head)
        + containers.prelude(env.runtime)
        + f"""img={q(image)}
if [ -f {q(dest + "/.complete")} ] && [ ! -L {q(dest + "/.complete")} ] && {containers.present()}; then
  echo "releaser: {release} already prepared"
  _rec pulled "" already
  exit 0
fi
{_marked("pull")}{containers.pull(env.runtime, registry)}\
if [ -e {q(dest)} ] || [ -L {q(dest)} ]; then rm -rf {q(dest)}; fi
mkdir {q(dest)}
printf '%s\n' "$RELEASER_RELEASE" > {q(dest + "/REVISION")}
printf '%s\n' "$img" > {q(dest + "/" + containers.IMAGE_FILE)}
_rec pulled
{_rendered(playbook, host, release, env, dest)}{_step(playbook, "prepare", q(dest), "prepared")}\
create=""
{containers.exists(spec, release)} || create=1
{containers.create(spec, host, release, private_file(env))}_rec created
: > {q(dest + "/.complete")}
echo "releaser: prepared {release}"
"""
    )


def switch_script(
    playbook: Playbook,
    host: Host,
    release: str,
    action: str,
    op: str,
    run: str,
    protect: tuple[str, ...] = (),
    env: Environment | None = None,
) -> str:
    """Point `current` at releases/<id> atomically, run the restart and verify hooks, ask the
    app what it serves, clean up: one exec per host once prepared. Each step is recorded.

    Deploy and rollback share this one code path. Cleanup keeps `keep_releases` newest
    releases and never removes the target, the release switched from, or `protect`."""
    target = f"releases/{release}"
    protected = " ".join(q(name) for name in (release, *protect))
    head = _head(op, run, action, release)
    spec = playbook.container
    return (
        _preamble(host, action, release, head)
        + (containers.prelude(env.runtime if env else "podman") if spec else "")
        + (services.prelude() if playbook.service else "")
        + f"""
if [ ! -f {q(target + "/.complete")} ] || [ -L {q(target + "/.complete")} ]; then
  echo "releaser: release {release} is not prepared on this host" >&2
  _rec failed "" not-prepared
  exit {EXIT_NOT_PREPARED}
fi
{_image_here(spec, release) if spec else ""}before=$(readlink current 2>/dev/null || true)
before=${{before#releases/}}
ln -s {q(target)} ".current.tmp.$$"
mv -T ".current.tmp.$$" current
sync . 2>/dev/null || true
now=$(readlink current)
if [ "$now" != {q(target)} ]; then
  echo "releaser: current points to $now, expected {target}" >&2
  _rec failed "" switch
  exit {EXIT_SWITCH_MISMATCH}
fi
_rec switched "$before"
{_restart(playbook, host, release, private_file(env), keep=action != "deploy")}\
{_step(playbook, "verify", "current", "verified")}\
{_served_check(playbook, release, env.runtime if env else "podman")}\
keep={int(playbook.keep_releases)}
n=0
listed=(releases/*)
[ "${{#listed[@]}}" -le "$keep" ] || ls -1t releases | while IFS= read -r name; do
  case "$name" in .*|*.tmp*) continue ;; esac
  n=$((n + 1))
  [ "$n" -le "$keep" ] && continue
  for kept in "$before" {protected}; do [ "$name" = "$kept" ] && continue 2; done
{containers.prune(spec) if spec else '  rm -rf "releases/$name"' + chr(10)}\
done
"""
    )


def _image_here(spec: ContainerSpec, release: str) -> str:
    """Before an image release's switch: its container, or else its image to create it from
    again ($create), must be on the host; else the release is prepared again (switch_back
    does so for `not-prepared`)."""
    return f"""create=""
if ! {containers.exists(spec, release)}; then
  img=""
  read -r img 2>/dev/null < {q(f"releases/{release}/{containers.IMAGE_FILE}")} || true
  if [ -z "$img" ] || ! {containers.present()}; then
    echo "releaser: the image of {release} is not on this host" >&2
    _rec failed "" not-prepared
    exit {EXIT_NOT_PREPARED}
  fi
  create=1
fi
"""


def private_file(env: Environment | None) -> str | None:
    """The host's file of the app's secrets, when the environment has any."""
    return f"$RELEASER_ROOT/{ENV_FILE}" if env is not None and env.secrets else None


def secrets_loader(env: Environment) -> str:
    """A line exporting the app's secrets into this shell (the migration tool's), or ""."""
    secrets = private_file(env)
    return f'while IFS= read -r line; do export "${{line%%=*}}=${{line#*=}}"; done < "{secrets}"\n' if secrets else ""


def _restart(playbook: Playbook, host: Host, release: str, secrets: str | None, keep: bool) -> str:
    """After `current` moved: the container or service handover (`keep`: a rollback's, whose
    process stays up even if it is not ready), or the restart hook."""
    if playbook.container is not None:
        handover = containers.handover(playbook.container, host, release, secrets, keep)
        return _marked("container") + handover + "_rec restarted\n"
    if playbook.service is not None:
        handover = services.handover(playbook.service, host, release, secrets, keep)
        return _marked("service") + handover + '_rec restarted "" "pid $new"\n'
    return _step(playbook, "restart", "current", "restarted")


def _served(playbook: Playbook, runtime: str) -> str:
    """Sets $served to what the running app reports (`version` hook, or the release of the
    running container), "?" if it cannot tell."""
    if playbook.container is not None or playbook.service is not None:
        told = containers.served(playbook.container, runtime) if playbook.container else services.served()
        return told + 'served=$(_safe "$served"); served=${served:-?}\n'
    hook = _hook(playbook, "version", "current")
    return f"""served=$({hook} 2>/dev/null | head -n 1 | tr -d '[:space:]' || true)
served=$(_safe "$served"); served=${{served:-?}}
"""


def tells_served(playbook: Playbook) -> bool:
    """Whether releaser can ask a host's running app which release it serves."""
    return playbook.container is not None or playbook.service is not None or bool(playbook.hooks.get("version"))


def _served_check(playbook: Playbook, release: str, runtime: str) -> str:
    if not tells_served(playbook):
        return ""
    return (
        _marked("version")
        + _served(playbook, runtime)
        + f"""_rec served "$served"
if [ "$served" != {q(release)} ]; then
  echo "releaser: after the restart the app serves $served, not {release}" >&2
  _rec failed "" version
  exit {EXIT_SERVES_OTHER}
fi
"""
    )


def check_script(host: Host, release: str, command: str) -> str:
    """A command check: the user's command in `current`, with the hook environment."""
    return _preamble(host, "check", release) + f"cd current\nbash -euo pipefail -c {q(command)}\n"


def exec_script(host: Host, argv: list[str]) -> str:
    """An ad-hoc command (`releaser exec`), each argument quoted, with the hooks' variables, in
    `current` (RELEASER_RELEASE is its release), else in the root, else where the login starts.
    Its input is /dev/null: the script itself comes on stdin. Changes nothing of releaser's."""
    root = host.root.rstrip("/") or "/"
    return f"""{exports(host, "exec", "")}
if cd {q(root)} 2>/dev/null; then
  if cur=$(readlink current 2>/dev/null) && cd current 2>/dev/null; then
    export RELEASER_RELEASE="${{cur#releases/}}"
  fi
else
  echo "releaser: $RELEASER_ROOT does not exist on this host; the command runs in $PWD" >&2
fi
{" ".join(q(arg) for arg in argv)} </dev/null
"""


def probe_script(playbook: Playbook, host: Host, wait: float, tail: int = 40, runtime: str = "podman") -> str:
    """Ask the host what it runs: `current`, what the app serves, the record's tail (and the
    last switches). Waits up to `wait` seconds for a phase still running there."""
    root = q(host.root.rstrip("/") or "/")
    served = ""
    if tells_served(playbook):
        served = (containers.prelude(runtime) if playbook.container else "") + _served(playbook, runtime)
        served = (services.prelude() if playbook.service else "") + served
        served += f'echo "{SERVED_MARKER} $served"\n'
    return f"""set -u
{exports(host, "probe", None)}
{_SAFE}cd {root} 2>/dev/null || {{ echo "{CURRENT_MARKER} "; exit 0; }}
if [ -d .releaser ]; then
  exec 9>>{q(LOCK)}
  if ! flock -w {int(wait)} 9; then
    echo "releaser: a phase has been running on this host for over {int(wait)}s" >&2; exit {EXIT_HOST_BUSY}
  fi
fi
cur=$(readlink current 2>/dev/null || true)
echo "{CURRENT_MARKER} ${{cur#releases/}}"
{served}if [ -f {q(RECORD)} ]; then
  {{ grep -F '"step":"switched"' {q(RECORD)} | tail -n {tail}; tail -n {tail} {q(RECORD)}; }} \
    | sed 's/^/{RECORD_MARKER} /'
fi
"""


# What to do about a hook that does not return, in releaser's words on the host and the controller.
HUNG_FIX = "a hook must return: run a server it starts in the background; " + HELD_FIX
STALL_MARKER = "RELEASER_STALL"
# Steps of a phase that are releaser's own, not a hook's, as a slow phase's look names them.
OWN_STEPS = {
    "pull": "pulling the release's image",
    "container": "starting the release's container and waiting until it is ready",
    "service": "starting the release's service and waiting until it is ready",
}
PROC_MARKER = "RELEASER_PROC"


def stall_script(host: Host) -> str:
    """For each phase still running on the host: its hook, how long it ran, how much it wrote,
    and the processes of its session (what it waits for). Changes nothing."""
    phases = q((host.root.rstrip("/") or "") + "/.releaser/phases")
    return f"""for p in {phases}/*.pid; do
  [ -f "$p" ] || continue
  f=${{p%.pid}}; sid=$(cat "$p" 2>/dev/null); [ -n "$sid" ] && kill -0 "$sid" 2>/dev/null || continue
  step=$(cat "$f.step" 2>/dev/null || true)
  now=$(date +%s); began=$(stat -c %Y "$p")
  said=$(cat "$f.out" "$f.err" 2>/dev/null | grep -v '^RELEASER_' | wc -c)  # the hooks' words, not the record's
  echo "{STALL_MARKER} $(( now - began )) $said 0 ${{step:-?}}"
  ps -o pid=,etimes=,args= --sid "$sid" 2>/dev/null | sed 's/^/{PROC_MARKER} /'
done
"""


class Stall(Record):
    """A phase still running on a host, as `stall_script` saw it."""

    seconds: int
    output_bytes: int
    hook: str
    processes: list[str]  # 'sleep 300 (pid 4242, 31s)': what the hook waits for
    oldest: int = 0  # seconds the longest-lived of those processes has run

    @property
    def polling(self) -> bool:
        """Its processes come and go (a loop that waits for something to answer), rather than
        one that has run about as long as the hook (a server in the foreground, a hung command)."""
        return bool(self.processes) and self.seconds >= 4 and self.oldest * 4 <= self.seconds

    def describe(self, host: str) -> str:
        said = "no output yet" if not self.output_bytes else f"{self.output_bytes} bytes of output"
        if self.polling:
            return (
                f"{host}: the {self.hook} hook has been running for {self.seconds}s with {said}; it is busy "
                f"with short-lived commands ({', '.join(self.processes[:2])}): a loop still waiting for "
                "something to answer"
            )
        waiting = f"; it waits for: {', '.join(self.processes[:3])}" if self.processes else ""
        return f"{host}: the {self.hook} hook has been running for {self.seconds}s with {said}{waiting}"


# The runner's own processes in a phase's session, left out of what a hook waits for.
_OWN_PROCESSES = ("bash -c exec 9>>", "timeout -k ", "bash -euo pipefail -c ", "sudo -n -E bash")


def parse_stalls(stdout: str) -> list[Stall]:
    stalls: list[Stall] = []
    for line in stdout.splitlines():
        if line.startswith(STALL_MARKER + " "):
            seconds, out, err, hook = ([*line.split(" ", 4), "?"])[1:5]
            stalls.append(Stall(int(seconds), int(out) + int(err), hook, []))
        elif line.startswith(PROC_MARKER + " ") and stalls:
            pid, elapsed, args = ([*line[len(PROC_MARKER) + 1 :].split(None, 2), "", ""])[:3]
            if args and not args.startswith(_OWN_PROCESSES) and not args.endswith(".sh"):
                stalls[-1].processes.append(f"{args[:80]} (pid {pid}, {elapsed}s)")
                stalls[-1].oldest = max(stalls[-1].oldest, int(elapsed) if elapsed.isdigit() else 0)
    return stalls


# The runner: under the host's phase lock, in its own session, the script with a time limit;
# `begin` and `end` (with the exit status) go to the record whatever the script did.
_RUNNER = (
    r"""exec 9>>"$1/"""
    + LOCK
    + r""""
if ! flock -w "$3" 9; then
  echo "releaser: another phase still holds $1/"""
    + LOCK
    + r""" after $3s" >&2; exit """
    + str(EXIT_HOST_BUSY)
    + r"""
fi
"""
    + _STAMP
    + r"""_end() {
  local line ts
  _stamp
  printf -v line '{"ts":"%s",%s,"step":"%s","rc":"%s"}' "$ts" "$4" "$5" "${6:-}"
  printf '%s\n' "$line" >> "$1/"""
    + RECORD
    + r""""
  sync "$1/"""
    + RECORD
    + r"""" 2>/dev/null || true
  printf '"""
    + RECORD_MARKER
    + r""" %s\n' "$line"
}
_end "$@" begin
echo $$ > "$2.pid"
RELEASER_STEP_FILE="$2.step" timeout -k 5 "$3" bash "$2.sh" 9>&-
rc=$?
case "$rc" in
  124|137)
    step=$(cat "$2.step" 2>/dev/null || true)
    if [ "${step#migrate:}" != "$step" ]; then
      echo "releaser: the migration tool's ${step#migrate:} command did not return within $3s (migrate.timeout): \
is it waiting for a lock on the database, or for input?" >&2
    elif [ -n "$step" ]; then
      echo "releaser: the $step hook did not return within $3s (command_timeout); """
    + HUNG_FIX
    + r"""" >&2
    else
      echo "releaser: timed out after $3s" >&2
    fi ;;
esac
_end "$@" end "$rc"
exit "$rc"
"""
)


def detached(script: str, host: Host, op: str, run: str, action: str, release: str, timeout: float) -> str:
    """Wrap a phase script so that it runs on the host whatever becomes of the connection."""
    root = host.root.rstrip("/") or "/"
    head = _head(op, run, action, release)
    return f"""set -u
d={q(root + "/.releaser/phases")}
[ -d "$d" ] || mkdir -p "$d" || exit {EXIT_HOST_BUSY}
left=("$d"/*)  # a phase's files are removed when it ends: any here were left by one cut short
[ ! -e "${{left[0]}}" ] || find "$d" -type f -mmin +1440 -delete 2>/dev/null || true
f="$d/{op}"
printf '%s\n' {q(script)} > "$f.sh"
setsid -w bash -c {q(_RUNNER)} releaser {q(root)} "$f" {max(1, int(timeout))} {q(head)} \\
  > "$f.out" 2> "$f.err" < /dev/null &
wait $!
rc=$?
cat "$f.out"
cat "$f.err" >&2
rm -f "$f.sh" "$f.out" "$f.err" "$f.step" "$f.pid"
exit "$rc"
"""


SCHEMA_MARKER = "RELEASER_SCHEMA"  # "RELEASER_SCHEMA before|after VERSION": what `current` said
BACKUP_MARKER = "RELEASER_BACKUP"  # "RELEASER_BACKUP SIZE SHA256 PATH": the backup written
EXIT_SCHEMA_ELSEWHERE = 71  # the database is neither where the step starts nor where it goes
EXIT_NO_BACKUP = 72  # the backup failed or wrote nothing: the migration did not run
EXIT_CURRENT_FAILED = 73  # the `current` command failed: where the database stands is unknown
SETUP_EXITS = (EXIT_SCHEMA_ELSEWHERE, EXIT_NO_BACKUP, EXIT_CURRENT_FAILED, EXIT_NOT_PREPARED, EXIT_HOST_BUSY)


class SchemaStep(Record, frozen=True):
    """One run of the migration tool on the migration host (`schema_step_script`)."""

    release: str
    phase: str  # expand | contract | down
    target: str  # "" for an empty database
    satisfied: tuple[str, ...]  # the versions at which nothing is left to do
    expected: tuple[str, ...] = ()  # the versions the step may start from; () for any
    backup_path: str | None = None  # where the backup goes; None: no backup
    backup_required: bool = True  # a failed backup stops the step (else it is said, and the step runs)
    image: str | None = None
    earlier_backups: tuple[str, ...] = ()  # backups of steps cut short: said again when they are there


def _backups_said(paths: tuple[str, ...]) -> str:
    """Say the backups that steps cut short wrote before their process could (those there)."""
    return "".join(
        f"if [ -s {q(path)} ]; then sum=$(sha256sum < {q(path)}); "
        f'echo "{BACKUP_MARKER} $(stat -c %s {q(path)}) ${{sum%% *}} {path}"; fi\n'
        for path in paths
    )


def _current_fn(spec: MigrateSpec) -> str:
    """`_current`: runs the tool's `current`, prints the version it said (the first word of its
    last line), keeps that line in .releaser/current.said; on failure, the tool's words and 73."""
    return f"""_current() {{
  local out rc
  out=$(bash -euo pipefail -c {q(spec.current)} </dev/null)
  rc=$?
  if [ "$rc" -ne 0 ]; then
    printf '%s\\n' "$out" | tail -n 5 >&2  # the tool's own words, some tools print them on stdout
    echo "releaser: the current command failed (exit $rc): where the database stands is unknown" >&2
    return {EXIT_CURRENT_FAILED}
  fi
  printf '%s\\n' "$out" | awk 'NF {{ l = $0 }} END {{ print l }}' > "$RELEASER_ROOT/.releaser/current.said" \\
    2>/dev/null || true
  printf '%s\\n' "$out" | awk 'NF {{ v = $1 }} END {{ print v }}'
}}
"""


def current_script(spec: MigrateSpec, host: Host, env: Environment) -> str:
    """Where the database stands, asked in the release the host runs, else the newest one
    prepared there (a tool older than the database may not know its version)."""
    return f"""{exports(host, "migrate", None)}
cd {q(host.root)} 2>/dev/null || {{ echo "releaser: no release is prepared on this host yet" >&2; exit 1; }}
{secrets_loader(env)}{_current_fn(spec)}for dir in current $(ls -td releases/*/ 2>/dev/null); do
  [ -f "$dir/.complete" ] || continue
  if now=$(cd "$dir" && _current); then
    echo "{SCHEMA_MARKER} now $now"
    echo "{SCHEMA_MARKER} said $(cut -c 1-200 "$RELEASER_ROOT/.releaser/current.said" 2>/dev/null)"
    exit 0
  fi
done
echo "releaser: no release on this host could say where the database stands (see above)" >&2
exit 1
"""


def schema_step_script(spec: MigrateSpec, host: Host, env: Environment, step: SchemaStep, op: str, run: str) -> str:
    """Ask the database where it stands; if not where the step goes, back it up (when asked),
    run `up` (or `down`) to the target and ask again. Idempotent: a database already there is
    left alone, so a resumed step finishes or says where things stand."""
    head = _head(op, run, "migrate", step.release)
    where = (
        'cd "$RELEASER_ROOT"'
        if step.image
        else f'cd {q("releases/" + step.release)} 2>/dev/null || {{ echo "releaser: {step.release} is not prepared on '
        f'this host" >&2; _rec failed "" not-prepared; exit {EXIT_NOT_PREPARED}; }}'
    )
    load = secrets_loader(env)
    satisfied = "|".join(q(v) for v in step.satisfied) if step.satisfied else "''"
    expected = ""
    if step.expected:
        allowed = "|".join(q(v) for v in step.expected)
        expected = f"""case "$before" in {allowed}) ;; *)
  echo "releaser: the database is at ${{before:-an empty schema}}, where {step.release}'s {step.phase} step neither \
starts ({", ".join(v or "empty" for v in step.expected)}) nor ends ({step.target or "empty"}) \
(the current command's last line: $said)" >&2
  _rec failed "$before" elsewhere; exit {EXIT_SCHEMA_ELSEWHERE} ;;
esac
"""
    backup = ""
    if step.backup_path:
        path = q(step.backup_path)
        missing = (
            f'[ -z "$why" ] || {{ echo "releaser: $why; the migration did not run" >&2; _rec failed "$before" backup; '
            f"exit {EXIT_NO_BACKUP}; }}"
            if step.backup_required
            else '[ -z "$why" ] || echo "releaser: $why; the migration runs without it (backups: optional)" >&2'
        )
        backup = f"""{_marked("migrate:backup")}mkdir -p -m 700 "$(dirname {path})"
export RELEASER_BACKUP={path}
rm -f {path}
( umask 077; bash -euo pipefail -c {q(spec.backup or "")} ) </dev/null 1>&2
rc=$?
if [ "$rc" -ne 0 ]; then
  why="the backup command failed (exit $rc)"
elif [ ! -s {path} ]; then
  why="the backup command wrote nothing to {step.backup_path}"
else
  why=""
  sum=$(sha256sum < {path}); echo "{BACKUP_MARKER} $(stat -c %s {path}) ${{sum%% *}} {step.backup_path}"
  _rec backed-up "$before"
fi
{missing}
"""
    tool = "down" if step.phase == "down" else "up"
    command = spec.down if tool == "down" else spec.up
    return (
        _preamble(host, "migrate", step.release, head)
        + f"""{where}
{load}{_backups_said(step.earlier_backups)}export RELEASER_SCHEMA_TARGET={q(step.target)}
{f"export RELEASER_IMAGE={q(step.image)}" if step.image else ""}
{_current_fn(spec)}set +e
{_marked("migrate:current")}before=$(_current) || {{ _rec failed "" current; exit {EXIT_CURRENT_FAILED}; }}
said=$(cut -c 1-200 "$RELEASER_ROOT/.releaser/current.said" 2>/dev/null || true)
echo "{SCHEMA_MARKER} before $before"
case "$before" in {satisfied})
  echo "releaser: the database is already at ${{before:-an empty schema}}"
  echo "{SCHEMA_MARKER} after $before"
  _rec migrated "$before" already; exit 0 ;;
esac
{expected}{backup}_rec migrating "$before"
{_marked("migrate:" + tool)}( bash -euo pipefail -c {q(command or "")} ) </dev/null 1>&2
rc=$?
{_marked("migrate:current")}after=$(_current) || after="?"
echo "{SCHEMA_MARKER} after $after"
if [ "$rc" -ne 0 ]; then
  echo "releaser: the {tool} command failed (exit $rc); the database is at \
${{after:-an empty schema}}" >&2
  _rec failed "$after" {step.phase}; exit "$rc"
fi
if [ "$after" != {q(step.target)} ]; then
  echo "releaser: the {tool} command ended, but the database is at \
${{after:-an empty schema}}, not {step.target or "an empty schema"}" >&2
  _rec failed "$after" {step.phase}; exit {EXIT_SCHEMA_ELSEWHERE}
fi
_rec migrated "$before"
"""
    )


RESTORE_MARKER = "RELEASER_RESTORE"  # "RELEASER_RESTORE SECONDS": how long `restore` took
EXIT_BACKUP_CHANGED = 74  # the backup is gone, or its sha256 is not the one recorded when it was written


def restore_drill_script(
    spec: MigrateSpec, host: Host, env: Environment, release: str, image: str | None, backup_path: str, sha256: str
) -> str:
    """A restore drill on the migration host, in `release`'s directory with the migration tool's
    variables: check that the backup is the file written (its recorded sha256), restore it with
    `restore` ("$RELEASER_BACKUP", into a scratch database), timed, then check it with `verify`.
    The app's database is not touched."""
    path = q(backup_path)
    where = (
        'cd "$RELEASER_ROOT"'
        if image
        else f'cd {q("releases/" + release)} 2>/dev/null || {{ echo "releaser: {release} is not prepared on '
        f'this host" >&2; exit {EXIT_NOT_PREPARED}; }}'
    )
    return (
        _preamble(host, "restore", release)
        + f"""{where}
{secrets_loader(env)}export RELEASER_BACKUP={path}
{f"export RELEASER_IMAGE={q(image)}" if image else ""}
if [ ! -f {path} ]; then
  echo "releaser: the backup {backup_path} is gone from this host" >&2; exit {EXIT_BACKUP_CHANGED}
fi
sum=$(sha256sum < {path}); sum=${{sum%% *}}
if [ "$sum" != {q(sha256)} ]; then
  echo "releaser: the backup {backup_path} changed after it was written: its sha256 is ${{sum:0:12}}, \\
the recorded one {sha256[:12]}" >&2
  exit {EXIT_BACKUP_CHANGED}
fi
set +e
{_marked("migrate:restore")}t0=${{EPOCHREALTIME:-$(date +%s.%N)}}
( bash -euo pipefail -c {q(spec.restore or "")} ) </dev/null
rc=$?
t1=${{EPOCHREALTIME:-$(date +%s.%N)}}
awk -v a="${{t0/,/.}}" -v b="${{t1/,/.}}" 'BEGIN {{ printf "{RESTORE_MARKER} %.3f\\n", b - a }}'
if [ "$rc" -ne 0 ]; then
  echo "releaser: the restore command failed (exit $rc)" >&2; exit "$rc"
fi
{_marked("migrate:verify")}( bash -euo pipefail -c {q(spec.verify or "")} ) </dev/null
rc=$?
if [ "$rc" -ne 0 ]; then
  echo "releaser: the verify command failed (exit $rc): the restored database is not sound" >&2; exit "$rc"
fi
"""
    )
