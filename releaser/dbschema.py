"""Which schema versions each release runs on, and what a rollback must do to the database first.

Releases declare their schema steps when they are registered (`release create --expand V
--contract W --reversible expand`); the steps of every release, in the order the releases were
registered, are the database's history as releaser knows it. A release runs on the versions from
its floor (the last expand step of it or of a release before it) up to its ceiling (the version
before the first contract step of a later release): an expand step keeps the release before it
working, a contract step does not. Pure logic: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable

from .model import Release
from .record import Record

EMPTY = ""  # the version of a database no step has touched (`current` printed nothing)


class Step(Record, frozen=True):
    version: str
    phase: str  # expand | contract
    release: str
    reversible: bool

    def describe(self) -> str:
        return f"{self.release}'s {self.phase} step {self.version}"


class Plan(Record, frozen=True):
    """What the database needs before `release` runs on it: nothing (`fits`), a `down` to
    `target` through `undo` (newest first), or a refusal with `why` in words."""

    release: str
    current: str
    fits: bool
    target: str | None = None
    undo: tuple[Step, ...] = ()
    why: str = ""
    unknown: bool = False  # the database is at a version no release declares: releaser cannot tell

    @property
    def runs_down(self) -> bool:
        return not self.fits and not self.why


def shown(version: str | None) -> str:
    return version if version else "an empty schema"


class History:
    """Every release's schema steps, in the order the releases were registered."""

    def __init__(self, releases: Iterable[Release]):
        self.releases = [r for r in releases]
        self.order = {r.version: i for i, r in enumerate(self.releases)}
        self.steps: list[Step] = []
        for release in self.releases:
            for phase in ("expand", "contract"):
                version = getattr(release.schema, phase)
                if version is not None:
                    self.steps.append(Step(version, phase, release.version, phase in release.schema.reversible))

    def __bool__(self) -> bool:
        return bool(self.steps)

    def index(self, version: str) -> int | None:
        """Where a version stands in the history: -1 for an empty database, None if unknown."""
        if version == EMPTY:
            return -1
        found = [i for i, step in enumerate(self.steps) if step.version == version]
        return found[-1] if found else None

    def floor(self, release: str) -> int:
        """The index of the oldest version `release` runs on: its own expand step, or the last
        expand step of a release before it (-1: any, from an empty database)."""
        mine = self.order[release]
        found = [i for i, s in enumerate(self.steps) if s.phase == "expand" and self.order[s.release] <= mine]
        return found[-1] if found else -1

    def ceiling(self, release: str) -> int:
        """The index of the newest version `release` runs on: the one before the first contract
        step of a later release (else the newest there is)."""
        mine = self.order[release]
        for i, step in enumerate(self.steps):
            if step.phase == "contract" and self.order[step.release] > mine:
                return i - 1
        return len(self.steps) - 1

    def version_at(self, index: int) -> str:
        return EMPTY if index < 0 else self.steps[index].version

    def needed(self, release: str) -> str | None:
        """The version the database must reach before `release`'s code runs: its own expand step,
        else the last expand step of a release before it (which it was built on, even when that
        release was rolled back before it reached an environment); None when there is none."""
        if release not in self.order:
            return None
        floor = self.floor(release)
        return None if floor < 0 else self.steps[floor].version

    def runs_on(self, release: str) -> tuple[str, str]:
        """The oldest and newest versions `release` runs on."""
        return self.version_at(self.floor(release)), self.version_at(self.ceiling(release))

    def satisfied(self, version: str) -> list[str]:
        """The versions at or after `version`: a database at any of them needs no step to reach it."""
        index = self.index(version)
        if index is None:
            return [version]
        return list(dict.fromkeys([version, *(s.version for s in self.steps[index + 1 :])]))

    def plan(self, release: str, current: str) -> Plan:
        """What the database at `current` needs before `release` runs on it."""
        if release not in self.order or not self.steps:
            return Plan(release, current, fits=True)
        at = self.index(current)
        if at is None:
            return Plan(release, current, fits=True, unknown=True)
        low, high = self.floor(release), self.ceiling(release)
        if at < low:
            return Plan(
                release,
                current,
                fits=False,
                why=f"{release} needs schema {self.version_at(low)} or later; the database is at {shown(current)}: "
                f"roll forward with `releaser promote`, which runs its expand step",
            )
        if at <= high:
            return Plan(release, current, fits=True)
        undo = tuple(reversed(self.steps[high + 1 : at + 1]))
        target = self.version_at(high)
        blocking = [step for step in undo if not step.reversible]
        if blocking:
            step = blocking[-1]
            return Plan(
                release,
                current,
                fits=False,
                target=target,
                undo=undo,
                why=f"{release} needs schema {shown(target)} at most; the database is at {shown(current)} after "
                f"{step.describe()}, which is irreversible",
            )
        return Plan(release, current, fits=False, target=target, undo=undo)


def describe_undo(plan: Plan) -> str:
    """The down steps of a plan in words."""
    steps = ", ".join(step.describe() for step in plan.undo)
    return f"down from {shown(plan.current)} to {shown(plan.target)} (undoing {steps})"
