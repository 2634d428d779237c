"""Transports: how a script reaches a host. One interface, several ways."""

from ..model import Environment
from .base import CommandResult, Session, Transport
from .local import LocalTransport

TRANSPORTS = {"local": LocalTransport}


def transport_for(environment: Environment) -> Transport:
    return TRANSPORTS[environment.transport](environment)


__all__ = ["CommandResult", "Session", "Transport", "TRANSPORTS", "transport_for"]
