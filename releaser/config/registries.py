"""`registries:`: how releaser reaches the container registries image releases name."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..model import RegistrySpec
from ..schema import Fields

_ADDRESS = re.compile(r"(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:]+\])(?::[0-9]{1,5})?")


def read_registries(top: Fields, base: Path) -> dict[str, RegistrySpec]:
    """Each registry by its address (host[:port], as image references write it)."""
    registries = {}
    for address, fields in top.sections(
        "registries", _ADDRESS.fullmatch, "a registry address like registry.example.com"
    ):
        ca_file = fields.str("ca_file")
        if ca_file:
            ca_file = str((base / os.path.expanduser(ca_file)).resolve())
            if not os.path.isfile(ca_file):
                fields.problem("ca_file", f"{ca_file}: no such file on this machine")
        spec = RegistrySpec(
            address=address,
            insecure=fields.bool("insecure", False),
            ca_file=ca_file or None,
            username_env=fields.env_name("username_env"),
            password_env=fields.env_name("password_env"),
            timeout=fields.duration("timeout", 30.0),
        )
        if (spec.username_env is None) != (spec.password_env is None):
            fields.problem("username_env", "give both username_env and password_env, or neither")
        if spec.insecure and spec.ca_file:
            fields.problem("insecure", "an insecure registry is plain HTTP: drop `insecure` or `ca_file`")
        fields.finish()
        registries[address] = spec
    return registries
