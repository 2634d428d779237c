"""The check interface. A check looks at a stage's target and returns a verdict.

A check that cannot see (no data, unreachable metrics) is INCONCLUSIVE, which never counts
as a pass. A comparison with nothing to compare against (no baseline on a first install) is
NOT_APPLICABLE: it neither passes nor holds the gate, and says why.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import field
from enum import StrEnum
from typing import TYPE_CHECKING, ClassVar, Protocol

from ..model import Environment, Host
from ..record import Record
from ..schema import Fields, render_template

if TYPE_CHECKING:
    from ..metrics.base import MetricSource


class Verdict(StrEnum):
    PASS = "pass"  # noqa: S105 - a verdict, not a password
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"
    NOT_APPLICABLE = "not applicable"


class CheckResult(Record):
    """A check's verdict on a target, in words, with what each host showed."""

    check: str
    verdict: Verdict
    summary: str
    hosts: dict[str, str] = field(default_factory=dict)
    blind: bool = False  # it could not see at all (metrics unreadable, every host unreachable)
    needs: float | None = None  # inconclusive: seconds until it decides at the current rates (inf: never)
    advice: str = ""  # inconclusive: the settings that would let it decide sooner
    evidence: list[dict] = field(default_factory=list)  # a comparing check: each metric's counts and bound

    def to_dict(self) -> dict:
        return {
            "check": self.check,
            "verdict": str(self.verdict),
            "summary": self.summary,
            "hosts": self.hosts,
            **({"blind": True} if self.blind else {}),
            **(
                {}
                if self.needs is None
                else {"undecidable": True}
                if math.isinf(self.needs)
                else {"needs_seconds": round(self.needs)}
            ),
            **({"evidence": self.evidence} if self.evidence else {}),
        }


class HostOutcome(Protocol):
    """How a command ended on one host, as a check reads it (fleet.HostResult)."""

    @property
    def ok(self) -> bool: ...
    @property
    def exit_code(self) -> int | None: ...
    @property
    def error(self) -> str: ...
    def why(self) -> str: ...


class HostRunner(Protocol):
    """What runs a script on hosts for a check: the stage's open fleet (fleet.Fleet). A protocol:
    health sits beside deploy, not above it, and imports nothing of fleet or transport."""

    def run(
        self, phase: str, hosts: Iterable[Host], script_for: Callable[[Host], str], *, timeout: float, quiet: bool
    ) -> Mapping[str, HostOutcome]: ...


class CheckTarget(Record, frozen=True):
    """What a check looks at: the cohort now running the release, and the baseline beside it
    (the hosts running an earlier release). `fleet` is the stage's open fleet, for checks that
    run commands on the hosts."""

    environment: Environment
    release: str
    cohort: tuple[Host, ...]
    baseline: tuple[Host, ...] = ()
    fleet: HostRunner | None = None
    metrics: MetricSource | None = None
    bake_left: float | None = None  # seconds until the stage's bake ends (None outside a bake)

    @classmethod
    def of(
        cls,
        environment: Environment,
        release: str,
        cohort,
        running: dict[str, str | None],
        fleet: HostRunner | None,
        metrics: MetricSource | None,
    ) -> CheckTarget:
        """The cohort given; as its baseline, the other hosts that run some other release
        (`running`: what each host runs; hosts running nothing serve no one)."""
        names = {h.name for h in cohort}
        baseline = tuple(
            h for h in environment.hosts if h.name not in names and running.get(h.name) not in (None, release)
        )
        return cls(environment, release, tuple(cohort), baseline, fleet, metrics)

    def scope(self, name: str) -> tuple[Host, ...]:
        """cohort, baseline or environment."""
        return {"cohort": self.cohort, "baseline": self.baseline, "environment": self.cohort + self.baseline}[name]


class Check(ABC):
    """A named health condition; subclasses register a `type` and read their own keys."""

    type: ClassVar[str]
    origin: Fields | None = None  # where the check was defined, for validation messages

    def __init__(self, name: str, failure_threshold: int = 1):
        self.name = name
        self.failure_threshold = failure_threshold

    @classmethod
    @abstractmethod
    def from_fields(cls, name: str, fields: Fields) -> Check:
        """Build the check from its YAML mapping (common keys are already read)."""

    def templates(self) -> dict[str, str]:
        """Keys holding host templates, so validation can render them for every host."""
        return {}

    def problems_for(self, environment: Environment, stage: str) -> list[tuple[str, str]]:
        """(key, message) for what cannot work in this environment; checked by `validate`."""
        problems = []
        for key, template in self.templates().items():
            for host in environment.hosts:
                try:
                    render_template(template, host)
                except ValueError as exc:
                    problems.append((key, str(exc)))
                    break
        return problems

    @abstractmethod
    def evaluate(self, target: CheckTarget, memory: dict) -> CheckResult:
        """Look once; must not raise for an unhealthy or unreachable target. `memory` is
        this check's own dict for the stage run (earlier samples, since when it fails)."""
