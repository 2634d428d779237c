"""A route: what an environment's router is told, whichever router it is.

Hosts are on one of two sides: `new` (they run the release being rolled out) or stable (every
other host). Users are split between the sides by a stable hash of their key: `share` percent go
to the new side (no share: as many as the new side's share of hosts in rotation), keys in
`allow` always do. A drained host is out of rotation (its switch and
restart are under way). A side with no host in rotation gets no user, whatever the share says:
the route never sends anyone to nothing."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from ..record import Record


class Route(Record, frozen=True):
    """One environment's route, as stored, journaled and written to its router."""

    release: str | None = None  # what the new side runs; None: no rollout, one side
    new: tuple[str, ...] = ()  # hosts on the new side
    drained: tuple[str, ...] = ()  # hosts out of rotation
    share: float | None = 0.0  # percent of users (by the hash of their key) to the new side; None: by capacity
    allow: tuple[str, ...] = ()  # keys always sent to the new side

    def to_dict(self) -> dict:
        return {
            "release": self.release,
            "new": list(self.new),
            "drained": list(self.drained),
            "share": self.share,
            "allow": list(self.allow),
        }

    @classmethod
    def from_dict(cls, data: dict) -> Route:
        share = data.get("share")
        return cls(
            data.get("release"),
            tuple(data.get("new", ())),
            tuple(data.get("drained", ())),
            None if share is None else float(share),
            tuple(data.get("allow", ())),
        )

    def sides(self, hosts: Iterable[str]) -> tuple[list[str], list[str]]:
        """(stable, new): the hosts in rotation on each side, in the environment's order."""
        stable: list[str] = []
        new: list[str] = []
        for host in hosts:
            if host not in self.drained:
                (new if host in self.new else stable).append(host)
        return stable, new

    def effective_share(self, hosts: Iterable[str]) -> float:
        """The share users really get: 0 with no new host in rotation, 100 with no stable one."""
        stable, new = self.sides(hosts)
        if not new:
            return 0.0
        if not stable:
            return 100.0
        if self.share is None:
            return round(100.0 * len(new) / (len(stable) + len(new)), 2)
        return self.share

    def with_hosts(self, versions: dict[str, str | None], drained: Iterable[str] = ()) -> Route:
        """The same route with its sides taken from what each host runs."""
        new = tuple(h for h, v in versions.items() if self.release is not None and v == self.release)
        return replace(self, new=new, drained=tuple(h for h in versions if h in set(drained)))

    def describe(self, hosts: Iterable[str]) -> str:
        """In words, e.g. "10% of users (and 2 allowed keys) to 1.1.0 on 1 host, the rest on 9 hosts"."""
        hosts = list(hosts)
        stable, new = self.sides(hosts)
        drained = f"; {len(self.drained)} drained" if self.drained else ""
        share = self.effective_share(hosts)
        if self.release is None or not new:
            return f"every user to the stable side ({_hosts(len(stable))}){drained}"
        allowed = f" (and {len(self.allow)} allowed key{'s' if len(self.allow) != 1 else ''})" if self.allow else ""
        if share >= 100:
            return f"every user to {self.release} ({_hosts(len(new))}){drained}"
        by = " (as its share of hosts)" if self.share is None else ""
        return (
            f"{share:g}% of users{by}{allowed} to {self.release} on {_hosts(len(new))}, the rest on "
            f"{_hosts(len(stable))}{drained}"
        )


def _hosts(count: int) -> str:
    return f"{count} host{'s' if count != 1 else ''}"
