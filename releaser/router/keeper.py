"""Keeps an environment's router on the route the store holds.

Every change is stored and journaled (`route.changing`) before the router is touched, and its
outcome after: `route.changed` with how long until new requests took it, or `route.failed` with
what the router said (a refused route leaves the router as it was). A process killed in between
leaves the store's route marked unapplied: `resume` puts it live again before anything else.
"""

from __future__ import annotations

import re
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from ..errors import ReleaserError
from ..events import Event
from ..fleet import Fleet
from ..model import Environment, Host
from . import router_for
from .route import Route

if TYPE_CHECKING:
    from ..journal import Journal
    from ..store import Store

THIS_MACHINE = Host("local", "127.0.0.1", "/")
_FIGURE = re.compile(r"^(RELEASER_ROUTE_\w+) ?(.*)$", re.M)


class RouteRefused(ReleaserError):
    """A router did not take a route (its test refused it, the reload failed, it was unreachable)."""


class RouteKeeper:
    def __init__(self, environment: Environment, store: Store, journal: Journal, fleet: Fleet):
        """`fleet`: the stage's, whose sessions reach the router's hosts too."""
        if environment.router is None:
            raise ValueError(f"{environment.name} has no router")
        self.env, self.spec = environment, environment.router
        self.store, self.journal, self.fleet = store, journal, fleet
        self.router = router_for(self.spec, environment)

    @property
    def hosts(self) -> list[str]:
        return [h.name for h in self.env.hosts]

    def route(self) -> Route:
        stored = self.store.get_route(self.env.name)
        return Route.from_dict(stored["route"]) if stored else Route()

    def applied(self) -> bool:
        stored = self.store.get_route(self.env.name)
        return stored is None or stored["applied"]

    # -- what the pipeline, the deployer and the rollback path ask for --

    def begin(self, release: str, versions: dict[str, str | None], share: float | None) -> Route:
        """The route for a stage rolling `release` out: sides from what the hosts run, nobody
        drained; `share` None follows capacity. Allowed keys carry on within one release."""
        current = self.route()
        allow = current.allow if current.release == release else ()
        route = Route(release, share=share, allow=allow).with_hosts(versions)
        return self.change(route, f"{release} rolls out") if route != current or not self.applied() else route

    def step(self, share: float, allow: tuple[str, ...], why: str) -> Route:
        return self.change(replace(self.route(), share=share, allow=allow), why)

    def batches(self, hosts: list[str]) -> list[list[str]]:
        """The hosts to switch, in batches that each leave a host in rotation: one batch when
        others serve meanwhile, two halves when they are every host in rotation, and one host
        alone (it cannot be spared: switched in place)."""
        route = self.route()
        stable, new = route.sides(self.hosts)
        if set(stable + new) - set(hosts) or len(hosts) < 2:
            return [hosts]
        half = len(hosts) // 2
        return [hosts[:half], hosts[half:]]

    def drain(self, hosts: list[str]) -> None:
        """Take hosts out of rotation and wait for the requests they still serve. A batch that
        would leave nobody in rotation (a one-host environment) is not drained."""
        route = self.route()
        stable, new = route.sides(self.hosts)
        if not set(stable + new) - set(hosts):
            return
        drained = replace(route, drained=tuple(h for h in self.hosts if h in set(route.drained) | set(hosts)))
        self.change(drained, f"drain {_names(hosts)} for their switch", drain=True)

    def settle(self, versions: dict[str, str | None], hosts: list[str], keep_out: set[str]) -> None:
        """Put switched hosts back in rotation on the side of what they now run; `keep_out`
        (hosts whose switch failed or is unknown) stay drained."""
        route = self.route()
        drained = (set(route.drained) - set(hosts)) | (keep_out & set(hosts))
        settled = route.with_hosts(versions, drained)
        if settled != route:
            back = [h for h in hosts if h not in keep_out]
            self.change(settled, f"{_names(back)} back in rotation" if back else "sides follow the hosts")

    def to_stable(self, why: str) -> bool:
        """Every user to the stable side in one change: the first act of a rollback. A refused
        change is journaled (route.failed) and the rollback goes on with the hosts: False."""
        route = self.route()
        if route.effective_share(self.hosts) == 0 and not route.allow and self.applied():
            return True
        try:
            self.change(replace(route, share=0.0, allow=()), f"every user back to the stable side: {why}")
        except RouteRefused:
            return False
        return True

    def reapply(self) -> None:
        """Put the stored route live again if a change was left unfinished (resume)."""
        if not self.applied():
            self.change(self.route(), "the last route change was not confirmed: applied again")

    # -- the one way a route reaches the router --

    def change(self, route: Route, why: str, drain: bool = False) -> Route:
        """Store, journal and put live `route` on every router host. Raises RouteRefused."""
        tag = {"environment": self.env.name, "release": route.release}
        described = route.describe(self.hosts)
        with self.store.transaction():
            self.store.save_route(self.env.name, route.to_dict(), applied=False, why=why)
            self.journal.record(
                Event.ROUTE_CHANGING, f"  route: {why}: {described}", data={"route": route.to_dict(), "why": why}, **tag
            )
        started = time.monotonic()
        fleet, targets = self._router_fleet()
        results = fleet.run(
            "route",
            targets,
            lambda _: self.router.apply_script(route, drain),
            timeout=self.spec.drain_timeout + 30,
            quiet=True,
        )
        seconds = time.monotonic() - started
        failed = {name: result.why() for name, result in results.items() if not result.ok}
        if failed:
            self.journal.record(
                Event.ROUTE_FAILED,
                f"  route: the router refused it ({why}): " + "; ".join(f"{h}: {w}" for h, w in sorted(failed.items())),
                data={"route": route.to_dict(), "failed": failed, "why": why},
                **tag,
            )
            raise RouteRefused(
                f"the router of {self.env.name} refused the route ({why}): "
                + "; ".join(f"{h}: {w}" for h, w in sorted(failed.items()))
            )
        figures = {name: dict(_FIGURE.findall(result.stdout)) for name, result in results.items()}
        live_ms = max((int(f.get("RELEASER_ROUTE_LIVE", 0) or 0) for f in figures.values()), default=0)
        unfinished = {
            h: f["RELEASER_ROUTE_DRAIN_TIMEOUT"] for h, f in figures.items() if "RELEASER_ROUTE_DRAIN_TIMEOUT" in f
        }
        unconfirmed = {
            h: f["RELEASER_ROUTE_UNCONFIRMED"] for h, f in figures.items() if "RELEASER_ROUTE_UNCONFIRMED" in f
        }
        with self.store.transaction():
            self.store.save_route(self.env.name, route.to_dict(), applied=True, why=why)
            self.journal.record(
                Event.ROUTE_CHANGED,
                f"  route: {described} (live in {seconds:.2f}s)"
                + (
                    f"; requests still held after {self.spec.drain_timeout:g}s on {', '.join(unfinished)}"
                    if unfinished
                    else ""
                )
                + (
                    f"; reloaded but not confirmed live on {', '.join(unconfirmed)}: {next(iter(unconfirmed.values()))}"
                    if unconfirmed
                    else ""
                ),
                data={
                    "route": route.to_dict(),
                    "why": why,
                    "seconds": round(seconds, 3),
                    "live_ms": live_ms,
                    "drain_unfinished": unfinished,
                    "unconfirmed": unconfirmed,
                },
                **tag,
            )
        return route

    def _router_fleet(self) -> tuple[Fleet, list[Host]]:
        """The router's hosts, reached by the environment's transport; `hosts: local` is this machine."""
        if self.spec.hosts:
            return self.fleet, list(self.spec.hosts)
        if self.env.transport == "local":
            return self.fleet, [THIS_MACHINE]
        from ..transport.local import LocalTransport

        return Fleet(self.env, LocalTransport(self.env)), [THIS_MACHINE]


def _names(hosts: list[str]) -> str:
    return ", ".join(hosts[:6]) + ("…" if len(hosts) > 6 else "")
