"""Routers: the load balancers in front of an environment (nginx; HAProxy next).

With a router, gray goes to a share of *users* (a sticky hash of a cookie, a header or the
client address) rather than of requests, every host is drained before its switch and put back
after, and a rollback first sends every user back to the stable side in one change. `route`
is the router-neutral state; `keeper` journals and applies it; a router kind renders it.
A new kind is one module here (a Router with its DEFAULTS) and one line below."""

from __future__ import annotations

from ..model import Environment, RouterSpec
from ..plugins import Kinds
from .base import Router

ROUTERS: Kinds[Router] = Kinds(__name__, "router", {"nginx": "nginx:NginxRouter"})


def router_for(spec: RouterSpec, environment: Environment) -> Router:
    """The router of the kind the environment names; its module is imported here, when used."""
    return ROUTERS.get(spec.type)(spec, environment)


__all__ = ["ROUTERS", "Router", "router_for"]
