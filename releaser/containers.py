"""Image releases on a host: the bash that pulls a release's image, creates its container, hands
over from the running one, says which release runs, and prunes what `keep_releases` lets go.
playbook.py places these steps in its phases.

Each release runs as the container `<name>-<release>` (labels `releaser.app` and
`releaser.release`), created when the release is prepared, so that a run spec the runtime
refuses fails before any host switches. A switch stops the app's running container and
starts the target's: a deploy and a rollback alike, the rollback from the image still on the
host (never a pull). podman and docker share the CLI used here.

Every value is quoted; the phase reads the image reference into $img from the release's
IMAGE file, written by prepare from the registered (pinned) reference.
"""

from __future__ import annotations

import posixpath
import shlex

from .appsecrets import REGISTRY_AUTH
from .model import ContainerSpec, Host, RegistrySpec
from .readiness import wait_ready
from .schema import render_template

q = shlex.quote

IMAGE_FILE = "IMAGE"
_STATE = "{{.State.Running}} {{.RestartCount}}"  # a container's state, as `inspect --format` gives it
CERTS_DIR = ".releaser/registries"


def container_name(spec: ContainerSpec, release: str) -> str:
    """A release's container ('+' is not allowed in container names)."""
    return f"{spec.name}-{release.replace('+', '_')}"


def templates(spec: ContainerSpec) -> list[tuple[str, str]]:
    """The run spec's values that may name host vars, as (key, template)."""
    found = [(f"env.{name}", value) for name, value in spec.env.items()]
    found += [(f"volumes[{i}]", value) for i, value in enumerate(spec.volumes)]
    found += [(f"command[{i}]", value) for i, value in enumerate(spec.command)]
    found += [(f"ports[{i}]", value) for i, value in enumerate(spec.ports)]
    return found + ([("ready", spec.ready)] if spec.ready else [])


def prelude(runtime: str) -> str:
    """Which runtime the phase drives, and the app's running containers."""
    return f'rt={q(runtime)}\n_running() {{ "$rt" ps -q --filter "label=releaser.app=$1" 2>/dev/null; }}\n'


def present() -> str:
    """A test: the image $img is on the host."""
    return '"$rt" image inspect "$img" >/dev/null 2>&1'


def registry_certs(registry: RegistrySpec) -> str:
    """Where a host keeps the CA of a registry releaser trusts by `ca_file` (podman's --cert-dir)."""
    return f"{CERTS_DIR}/{registry.address.replace(':', '_')}/ca.crt"


def pull(runtime: str, registry: RegistrySpec) -> str:
    """The image $img onto the host, by its digest; fails the phase with the runtime's words.
    podman is told per pull what the registry's settings say (no TLS, its CA, credentials);
    docker's daemon keeps its own insecure registries and CAs (daemon.json, certs.d), and
    reads the credentials from the --config directory."""
    options, before = "", ""
    if runtime == "podman":
        if registry.insecure:
            options += " --tls-verify=false"
        if registry.ca_file:
            options += f' --cert-dir "$RELEASER_ROOT/{posixpath.dirname(registry_certs(registry))}"'
        if registry.username_env:
            options += f' --authfile "$RELEASER_ROOT/{REGISTRY_AUTH}"'
    elif registry.username_env:
        before = f' --config "$RELEASER_ROOT/{posixpath.dirname(REGISTRY_AUTH)}"'
    return f"""if ! {present()}; then
  if ! "$rt"{before} pull -q{options} "$img" >/dev/null </dev/null; then
    echo "releaser: $rt could not pull $img (what it said is just before this): check that this host \\
reaches the registry and may read the image" >&2
    _rec failed "" pull
    exit 1
  fi
fi
"""


def exists(spec: ContainerSpec, release: str) -> str:
    """A test: the release's container is on the host."""
    return f'"$rt" inspect --type container {q(container_name(spec, release))} >/dev/null 2>&1'


def create(spec: ContainerSpec, host: Host, release: str, secrets: str | None = None) -> str:
    """The release's container, created (not started) from $img, when the shell's $create is
    set; with the app's secrets from the file `secrets` (a path the shell expands) in its
    environment."""
    args = ["create", "--name", container_name(spec, release), "--label", f"releaser.app={spec.name}"]
    args += ["--label", f"releaser.release={release}", "--pull", "never", "--network", spec.network]
    args += ["--restart", spec.restart]
    for port in spec.ports:
        args += ["--publish", render_template(port, host)]
    for name, value in spec.env.items():
        args += ["--env", f"{name}={render_template(value, host)}"]
    for volume in spec.volumes:
        args += ["--volume", render_template(volume, host)]
    command = "".join(" " + q(render_template(arg, host)) for arg in spec.command)
    env_file = f' --env-file "{secrets}"' if secrets else ""
    return f"""if [ -n "${{create:-}}" ] && ! "$rt" {" ".join(q(arg) for arg in args)}{env_file} "$img"{command} \\
  >/dev/null </dev/null; then
  echo "releaser: $rt refused to create the container of {release} (what it said is just before this): \\
check \\`container:\\` in the playbook" >&2
  _rec failed "" container
  exit 1
fi
"""


def handover(spec: ContainerSpec, host: Host, release: str, secrets: str | None = None, keep: bool = False) -> str:
    """The switch's restart: stop the app's running container (TERM, KILL after stop_timeout),
    start the release's (created again from its image if it went), wait until it is ready
    (`keep`: a rollback's container stays up even if it is not).
    Both bind the same ports, so the old one stops first; with a router the host is drained."""
    name = q(container_name(spec, release))
    ready = wait_ready(
        f"the container of {release}",
        render_template(spec.ready, host) if spec.ready else None,
        spec.ready_timeout,
        # running, and not brought back by its restart policy since: a crash is not waited out
        f"""[ "$("$rt" inspect --format '{_STATE}' {name} 2>/dev/null)" = "true $restarts" ]""",
        f""""$rt" inspect --format '{{{{.State.ExitCode}}}}' {name} 2>/dev/null""",
        f'"$rt" logs --tail 20 {name}',
        None if keep else f'"$rt" stop -t {round(spec.stop_timeout)} {name} >/dev/null 2>&1 </dev/null || true',
    )
    return (
        create(spec, host, release, secrets)
        + f"""for old in $(_running {q(spec.name)}); do
  if ! "$rt" stop -t {round(spec.stop_timeout)} "$old" >/dev/null </dev/null; then
    _rec failed "" "container stop"
    exit 1
  fi
done
if ! "$rt" start {name} >/dev/null </dev/null; then
  echo "releaser: $rt could not start the container of {release} (what it said is just before this)" >&2
  _rec failed "" "container start"
  exit 1
fi
restarts=$("$rt" inspect --format '{{{{.RestartCount}}}}' {name} 2>/dev/null || true)
"""
        + ready
    )


# A container's release label as `ps --format` gives it: podman's labels are a map, docker's a method.
_RELEASE_LABEL = {"podman": '{{index .Labels "releaser.release"}}', "docker": '{{.Label "releaser.release"}}'}


def served(spec: ContainerSpec, runtime: str) -> str:
    """Sets $served to the release of the app's running container: "" when none runs, and
    several joined by commas (which _safe reads as "?") in the middle of a handover."""
    running = f"label=releaser.app={spec.name}"
    return f"""served=$("$rt" ps --filter {q(running)} --format {q(_RELEASE_LABEL[runtime])} 2>/dev/null | paste -sd, -)
"""


def prune(spec: ContainerSpec) -> str:
    """In the cleanup loop, in place of removing releases/$name: its container goes, then the
    directory, then its image unless a kept release names the same one."""
    return f"""  gone=""
  read -r gone 2>/dev/null < "releases/$name/{IMAGE_FILE}" || true
  "$rt" rm -f "{spec.name}-${{name//+/_}}" >/dev/null 2>&1 </dev/null || true
  rm -rf "releases/$name"
  [ -z "$gone" ] || grep -qsxF "$gone" releases/*/{IMAGE_FILE} || "$rt" rmi "$gone" >/dev/null 2>&1 </dev/null || true
"""
