"""The app's secrets (`secrets:` of an environment): read from releaser's own environment when
a stage prepares, registered so that nothing releaser writes shows them, and delivered to
each host as a file only its user can read (`<root>/.releaser/secrets/app.env`, NAME=value
lines), which the service or container is started with. Never in a script, a hook's
environment, the journal, a host's record or a process list."""

from __future__ import annotations

import base64
import json

from . import secrets
from .errors import UsageError
from .model import Environment, Host, RegistrySpec

ENV_FILE = ".releaser/secrets/app.env"
REGISTRY_AUTH = ".releaser/secrets/registry/config.json"  # podman --authfile; docker --config (its directory)


def env_file(env: Environment) -> bytes:
    """The file's contents; UsageError naming every variable that is not set (or cannot be a
    line of the file), before anything is done."""
    lines, missing = [], []
    for name, variable in env.secrets.items():
        value = secrets.read_env(variable)
        if not value or "\n" in value or "\r" in value or "\0" in value:
            missing.append(f"{name} (from ${variable}: {'a line break or NUL in it' if value else 'not set'})")
        else:
            lines.append(f"{name}={value}\n")
    if missing:
        raise UsageError(
            f"the secrets of {env.name} cannot be read on this machine: {', '.join(missing)}; set each "
            "variable (one line) in the environment releaser runs in"
        )
    return "".join(lines).encode()


def env_file_path(host: Host) -> str:
    return f"{host.root.rstrip('/')}/{ENV_FILE}"


def registry_auth(registry: RegistrySpec) -> bytes | None:
    """The credentials hosts pull from `registry` with, as podman's auth file and docker's
    config.json both read them; None for a registry without credentials."""
    if not registry.username_env:
        return None
    user, password = secrets.read_credentials(registry.username_env, registry.password_env)
    if not user or not password:
        raise UsageError(
            f"the credentials of registry {registry.address} cannot be read on this machine: set "
            f"${registry.username_env} and ${registry.password_env}"
        )
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return json.dumps({"auths": {registry.address: {"auth": token}}}).encode()
