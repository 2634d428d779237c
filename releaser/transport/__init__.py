"""Transports: how a script reaches a host. One interface, several ways; each is imported
only when an environment uses it (the ssh one brings paramiko)."""

from ..model import Environment
from ..names import TRANSPORTS
from .base import CommandResult, Notify, Session, Transport


def transport_for(environment: Environment, notify: Notify | None = None) -> Transport:
    if environment.transport == "ssh":
        from .ssh import SshTransport

        return SshTransport(environment, notify)
    from .local import LocalTransport

    return LocalTransport(environment, notify)


__all__ = ["TRANSPORTS", "CommandResult", "Session", "Transport", "transport_for"]
