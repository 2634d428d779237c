"""Hosts and how they are reached: an environment's `hosts:` items, `ssh:` options (of an
environment or one host), and the keys `defaults:` shares with every environment."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

from ..model import Host, LocalFile, SshOptions
from ..schema import Fields, fill_template, shown
from ..yamlsrc import Mapping
from .context import Context
from .rules import HOST_ADDRESS, HOST_KEY_POLICIES, JUMP, SAFE_NAME, SAFE_NAME_RULE, SHARED_ENVIRONMENT_KEYS, SSH_USER


def shared_environment_keys(defaults: Fields) -> dict:
    """The environment keys `defaults:` sets, as written (each environment reads and checks them)."""
    shared = Mapping()
    shared.key_lines = {}
    for key in SHARED_ENVIRONMENT_KEYS:
        if defaults.has(key):
            shared[key] = defaults.raw(key)
            shared.key_lines[key] = defaults.line_of(key)
    return shared


def with_defaults(own: dict, shared: dict) -> dict:
    """An environment's mapping with the shared keys it does not set; line numbers kept, so a
    problem in a shared value names the line in `defaults:`."""
    merged = Mapping()
    merged.line = getattr(own, "line", 0)
    merged.key_lines = {**getattr(shared, "key_lines", {}), **getattr(own, "key_lines", {})}
    merged.update(shared)
    for key, value in own.items():
        base = shared.get(key)
        if key in ("ssh", "vars", "secrets") and isinstance(base, dict) and isinstance(value, dict):
            value = with_defaults(value, base)
        merged[key] = value
    return merged


def read_ssh(context: Context, parent: Fields, base: SshOptions, transport: str | None) -> SshOptions:
    """An `ssh:` section over `base`; only meaningful for the ssh transport."""
    fields = parent.mapping("ssh")
    if fields is None:
        return base
    if transport != "ssh":
        parent.problem("ssh", "ssh options need `transport: ssh`")
    changes = {
        "user": fields.str("user"),
        "port": fields.int("port", minimum=1, maximum=65535),
        "identity_file": fields.str("identity_file"),
        "known_hosts": fields.str("known_hosts"),
        "host_key_policy": fields.str("host_key_policy", choices=HOST_KEY_POLICIES),
        "jump": fields.str("jump"),
        "config_file": fields.str("config_file"),
        "connect_timeout": fields.duration("connect_timeout"),
        "auth_timeout": fields.duration("auth_timeout"),
        "keepalive": fields.duration("keepalive"),
    }
    if changes["user"] is not None and not SSH_USER.fullmatch(changes["user"]):
        fields.problem("user", f"expected a user name, got {shown(changes['user'])}")
    jump = JUMP.fullmatch(changes["jump"] or "")
    if changes["jump"] is not None and (not jump or (jump["port"] and not 0 < int(jump["port"]) < 65536)):
        fields.problem("jump", f"expected [user@]host[:port], got {shown(changes['jump'])}")
    fields.finish()
    for key in ("identity_file", "known_hosts", "config_file"):
        if changes[key]:
            changes[key] = str((context.base / os.path.expanduser(changes[key])).resolve())
            context.local_files.setdefault(
                changes[key], LocalFile(changes[key], fields.file, fields.line_of(key), fields.key_path(key))
            )
    return replace(base, **{k: v for k, v in changes.items() if v is not None})


def read_host(
    context: Context,
    item: Any,
    line: int | None,
    key: str,
    env: Fields,
    transport: str | None,
    root_template: str | None,
    env_vars: dict[str, str],
    ssh: SshOptions,
) -> Host | None:
    """One `hosts:` item: a name, or a mapping with name, address, root, vars and ssh."""
    if isinstance(item, str):
        item = {"name": item}
    fields = Fields(item, env.file, key, context.problems, line)
    name = fields.str("name", required=True)
    address = fields.str("address", "127.0.0.1" if transport == "local" else name)
    root = fields.str("root", root_template)
    host_vars = {**env_vars, **fields.scalar_map("vars")}
    ssh = read_ssh(context, fields, ssh, transport)
    fields.finish()
    if name is None:
        return None
    if not SAFE_NAME.fullmatch(name):
        fields.problem("name", f"a host name is {SAFE_NAME_RULE}, got {shown(name)}")
        return None
    if address is not None and not HOST_ADDRESS.fullmatch(address):
        fields.problem("address", f"expected a host name or IP address, got {shown(address)}")
        return None
    try:
        root = fill_template(root or "", {"host": name})
    except ValueError:
        fields.problem("root", f"only {{host}} may be used in a root path, got {shown(root)}")
        return None
    if transport == "local":
        root = str((context.base / root).resolve())
    elif not root.startswith("/"):
        fields.problem("root", f"a remote root must be an absolute path, got {shown(root)}")
    return Host(name=name, address=address or name, root=root, vars=host_vars, ssh=ssh)
