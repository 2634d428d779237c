"""Transports: how a script reaches a host. One interface, several ways."""

from ..model import Environment
from .base import CommandResult, Session, Transport
from .base import Notify
from .local import LocalTransport
from .ssh import SshTransport

TRANSPORTS = {"local": LocalTransport, "ssh": SshTransport}


def transport_for(environment: Environment, notify: Notify | None = None) -> Transport:
    return TRANSPORTS[environment.transport](environment, notify)


__all__ = ["CommandResult", "Session", "Transport", "TRANSPORTS", "transport_for"]
