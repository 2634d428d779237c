"""Render a playbook phase into ONE bash script per host.

Every value that reaches the shell goes through shlex.quote; hooks (the user's own shell)
run in their own bash, in the release directory, with the exported RELEASER_* variables
and the host's vars. The scripts print marker lines that the executor parses:

    RELEASER_SWITCHED from=<id or empty> to=<id>
    RELEASER_CURRENT <id or empty>
"""

from __future__ import annotations

import json
import os
import shlex

from .locks import whoami
from .model import Host, Playbook

EXIT_CHECKSUM = 65
EXIT_NOT_PREPARED = 66
EXIT_SWITCH_MISMATCH = 67
EXIT_VERIFY_FAILED = 68

SWITCHED_MARKER = "RELEASER_SWITCHED"
CURRENT_MARKER = "RELEASER_CURRENT"

q = shlex.quote


def artifact_path(host: Host, release: str) -> str:
    """Where the artifact is uploaded on the host before unpacking."""
    return f"{host.root.rstrip('/')}/.releaser/incoming/{release}.tar"


def _preamble(host: Host, phase: str, release: str, extra: dict[str, str] | None = None) -> str:
    env = {
        **host.vars,
        "RELEASER_ROOT": host.root,
        "RELEASER_HOST": host.name,
        "RELEASER_RELEASE": release,
        "RELEASER_PHASE": phase,
        **(extra or {}),
    }
    exports = "\n".join(f"export {name}={q(value)}" for name, value in env.items())
    return f"""set -euo pipefail
umask 022
{exports}
mkdir -p "$RELEASER_ROOT/releases" "$RELEASER_ROOT/shared" "$RELEASER_ROOT/.releaser"
cd "$RELEASER_ROOT"
"""


def _hook(playbook: Playbook, name: str, directory: str) -> str:
    script = playbook.hooks.get(name)
    if not script:
        return ""
    runner = "sudo -n -E bash" if name in playbook.sudo else "bash"
    return f'(cd {directory} && {runner} -euo pipefail -c {q(script)})\n'


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


def prepare_script(playbook: Playbook, host: Host, release: str, sha256: str, url: str | None = None) -> str:
    """Unpack the artifact (uploaded, or fetched from `url`) into releases/<id>, link shared
    paths, run the prepare hook. Idempotent: a release with its .complete marker is left as is."""
    dest = f"releases/{release}"
    links = "".join(
        f'mkdir -p {q("shared/" + path)}\nrm -rf {q(dest + "/" + path)}\n'
        f'ln -s {q("../../shared/" + path)} {q(dest + "/" + path)}\n'
        for path in playbook.shared
    )
    incoming = q(artifact_path(host, release))
    return _preamble(host, "prepare", release) + f"""
if [ -f {q(dest + "/.complete")} ]; then
  echo "releaser: {release} already prepared"
  rm -f {incoming}
  exit 0
fi
{_fetch(url, artifact_path(host, release)) if url else ""}actual=$(sha256sum < {incoming} | cut -d' ' -f1)
if [ "$actual" != {q(sha256)} ]; then
  echo "releaser: artifact checksum mismatch: expected {sha256}, got $actual" >&2
  exit {EXIT_CHECKSUM}
fi
rm -rf {q(dest)}
mkdir -p {q(dest)}
tar -xf {incoming} -C {q(dest)}
printf '%s\\n' "$RELEASER_RELEASE" > {q(dest + "/REVISION")}
{links}{_hook(playbook, "prepare", q(dest))}touch {q(dest + "/.complete")}
rm -f {incoming}
echo "releaser: prepared {release}"
"""


def switch_script(
    playbook: Playbook, host: Host, release: str, action: str, protect: tuple[str, ...] = ()
) -> str:
    """Point `current` at releases/<id> atomically, log it, run the restart and verify hooks,
    clean up: one exec per host, so a host costs one round trip once prepared.

    Deploy and rollback share this one code path. Cleanup keeps `keep_releases` newest
    releases and never removes the target, the release switched from, or `protect`."""
    target = f"releases/{release}"
    record = json.dumps({"action": action, "to": release, "by": whoami()})[1:-1]
    protected = " ".join(q(name) for name in (release, *protect))
    return _preamble(host, action, release) + f"""
if [ ! -f {q(target + "/.complete")} ]; then
  echo "releaser: release {release} is not prepared on this host" >&2
  exit {EXIT_NOT_PREPARED}
fi
before=$(readlink current 2>/dev/null || true)
before=${{before#releases/}}
ln -s {q(target)} ".current.tmp.$$"
mv -T ".current.tmp.$$" current
now=$(readlink current)
if [ "$now" != {q(target)} ]; then
  echo "releaser: current points to $now, expected {target}" >&2
  exit {EXIT_SWITCH_MISMATCH}
fi
printf '{{"ts":"%s","from":"%s",%s}}\\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$before" {q(record)} >> .releaser/history.jsonl
echo "{SWITCHED_MARKER} from=$before to={release}"
{_hook(playbook, "restart", "current")}{_verify(playbook)}keep={int(playbook.keep_releases)}
n=0
ls -1t releases | while IFS= read -r name; do
  case "$name" in .*|*.tmp*) continue ;; esac
  n=$((n + 1))
  [ "$n" -le "$keep" ] && continue
  for kept in "$before" {protected}; do [ "$name" = "$kept" ] && continue 2; done
  rm -rf "releases/$name"
done
"""


def _verify(playbook: Playbook) -> str:
    hook = _hook(playbook, "verify", "current").strip()
    if not hook:
        return ""
    return f"""if ! {hook}; then
  echo "releaser: the verify hook failed" >&2
  exit {EXIT_VERIFY_FAILED}
fi
"""


def check_script(host: Host, release: str, command: str) -> str:
    """A command check: the user's command in `current`, with the hook environment."""
    return _preamble(host, "check", release) + f"cd current\nbash -euo pipefail -c {q(command)}\n"


def probe_script(host: Host) -> str:
    """Print what the host runs: the target of `current`, without the releases/ prefix."""
    return f"""set -u
cur=$(readlink {q(host.root.rstrip("/") + "/current")} 2>/dev/null || true)
echo "{CURRENT_MARKER} ${{cur#releases/}}"
"""


def parse_switched(stdout: str) -> tuple[bool, str | None]:
    """(switched?, version switched from) from a switch script's output."""
    for line in stdout.splitlines():
        if line.startswith(SWITCHED_MARKER + " "):
            before = line.split(" from=", 1)[1].split(" to=", 1)[0]
            return True, before or None
    return False, None


def parse_current(stdout: str) -> str | None:
    for line in stdout.splitlines():
        if line.startswith(CURRENT_MARKER):
            return line[len(CURRENT_MARKER):].strip() or None
    return None

