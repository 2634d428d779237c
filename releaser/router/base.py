"""The router interface: a load balancer that can be told a route and confirm it took it, and
the `router:` keys every kind reads (a kind gives its own defaults, or reads more keys)."""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

from ..model import Environment, Host, RouterSpec
from ..schema import Fields, render_template, shown
from .route import Route

# What reaches the router's configuration: plain names, and keys a router reads as plain strings.
_COOKIE = re.compile(r"[A-Za-z0-9_]{1,64}")
_HEADER = re.compile(r"[A-Za-z0-9-]{1,64}")
_BACKEND = re.compile(r"(?:[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}")


class Router(ABC):
    """Renders a route into the file releaser owns on the router and gives the one script that
    puts it live there (write, test, reload, confirm), run on each router host."""

    MARKER = "RELEASER_ROUTE"  # the file's header line carrying the route it holds, as JSON
    DEFAULTS: ClassVar[dict[str, str]]  # the kind's `test`, `reload` and `pid_file`

    def __init__(self, spec: RouterSpec, environment: Environment):
        self.spec, self.environment = spec, environment

    @classmethod
    def read_spec(
        cls, kind: str, fields: Fields, hosts: tuple[Host, ...], app_hosts: list[Host], remote: bool, base: Path
    ) -> RouterSpec:
        """The section's keys but `type` and `hosts` (read already: `hosts`, where the router
        runs). `remote`: its paths are on another machine, so they must be absolute; on this
        one a relative path is resolved against `base`, the configuration's directory."""
        paths = {}
        for key, default in (("file", None), ("pid_file", cls.DEFAULTS["pid_file"])):
            path = fields.str(key, default, required=default is None)
            if path and not path.startswith("/"):
                if remote:
                    fields.problem(key, f"a path on the router must be absolute, got {shown(path)}")
                path = str((base / path).resolve())
            paths[key] = path or ""
        backend = fields.str("backend", RouterSpec.backend) or RouterSpec.backend
        for host in app_hosts:
            try:
                value = render_template(backend, host)
            except ValueError as exc:
                fields.problem("backend", str(exc))
                break
            if not _BACKEND.fullmatch(value):
                fields.problem("backend", f"expected host:port, got {shown(value)} (host {host.name})")
                break
        return RouterSpec(
            type=kind,
            hosts=hosts,
            file=paths["file"],
            backend=backend,
            key=_user_key(fields),
            without_key=fields.str("without_key", "stable", choices=("stable", "address")) or "stable",
            test=fields.str("test", cls.DEFAULTS["test"]) or cls.DEFAULTS["test"],
            reload=fields.str("reload", cls.DEFAULTS["reload"]) or cls.DEFAULTS["reload"],
            pid_file=paths["pid_file"],
            drain_timeout=fields.duration("drain_timeout", RouterSpec.drain_timeout),
        )

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


def _user_key(router: Fields) -> tuple[str, str]:
    """`key: address`, `key: {cookie: NAME}` or `key: {header: NAME}`."""
    if router.data.get("key", "address") == "address":
        return ("address", "")
    fields = router.mapping("key")
    if fields is None:
        return ("address", "")
    cookie, header = fields.str("cookie"), fields.str("header")
    fields.finish()
    if (cookie is None) == (header is None):
        router.problem("key", "expected address, {cookie: NAME} or {header: NAME}")
    elif cookie is not None and not _COOKIE.fullmatch(cookie):
        fields.problem("cookie", f"a cookie name is letters, digits and '_', got {shown(cookie)}")
    elif header is not None and not _HEADER.fullmatch(header):
        fields.problem("header", f"a header name is letters, digits and '-', got {shown(header)}")
    else:
        return ("cookie", cookie) if cookie is not None else ("header", header or "")
    return ("address", "")
