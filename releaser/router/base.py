"""The router interface: a load balancer that can be told a route and confirm it took it."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod

from ..model import Environment, RouterSpec
from .route import Route


class Router(ABC):
    """Renders a route into the file releaser owns on the router and gives the one script that
    puts it live there (write, test, reload, confirm), run on each router host."""

    MARKER = "RELEASER_ROUTE"  # the file's header line carrying the route it holds, as JSON

    def __init__(self, spec: RouterSpec, environment: Environment):
        self.spec, self.environment = spec, environment

    @staticmethod
    def marker(route: Route) -> str:
        return json.dumps(route.to_dict(), sort_keys=True, separators=(",", ":"))

    @abstractmethod
    def render(self, route: Route) -> str:
        """The text of the file releaser owns."""

    @abstractmethod
    def apply_script(self, route: Route, drain: bool) -> str:
        """A bash script that puts the route live and prints `RELEASER_ROUTE_LIVE <ms>` once new
        requests take it; with `drain`, it then waits for requests still held under the old
        route (`RELEASER_ROUTE_DRAINED <ms>`, or `RELEASER_ROUTE_DRAIN_TIMEOUT <left>`). A refused
        route leaves the router as it was and exits non-zero."""


def router_for(spec: RouterSpec, environment: Environment) -> Router:
    """The router of a type (see names.ROUTER_TYPES); each is imported only when used."""
    if spec.type == "nginx":
        from .nginx import NginxRouter

        return NginxRouter(spec, environment)
    raise ValueError(f"unknown router type {spec.type!r}")
