"""Transports: how a script reaches a host. One interface (base), several kinds; a kind's module
is imported only when an environment uses it (the ssh one brings paramiko). A new kind is one
module here (a Transport) and one line below; the configuration names the kinds in
config.rules.TRANSPORTS, because reading a configuration must not load this package."""

from ..model import Environment
from ..plugins import Kinds
from .base import CommandResult, Notify, Session, Transport

TRANSPORTS: Kinds[Transport] = Kinds(
    __name__,
    "transport",
    {
        "local": "local:LocalTransport",
        "ssh": "ssh:SshTransport",
    },
)


def transport_for(environment: Environment, notify: Notify | None = None) -> Transport:
    return TRANSPORTS.get(environment.transport)(environment, notify)


__all__ = ["TRANSPORTS", "CommandResult", "Session", "Transport", "transport_for"]
