"""The check interface. A check looks at a stage's target and returns a verdict.

Verdicts are three-valued on purpose: a check that cannot see (no data, unreachable
metrics) is INCONCLUSIVE, which never counts as a pass.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Callable, ClassVar

from ..fleet import Fleet
from ..model import Environment, Host
from ..schema import Fields, fill_template


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


@dataclass
class CheckResult:
    check: str
    verdict: Verdict
    summary: str
    hosts: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"check": self.check, "verdict": str(self.verdict), "summary": self.summary, "hosts": self.hosts}


@dataclass(frozen=True)
class CheckTarget:
    """What a check looks at: the cohort now running the release, and the baseline beside it.
    `fleet` is the stage's open fleet, for checks that run commands on the hosts."""

    environment: Environment
    release: str
    cohort: tuple[Host, ...]
    baseline: tuple[Host, ...] = ()
    fleet: Fleet | None = None
    metrics: object | None = None  # the environment's metric source (health.sources)

    @classmethod
    def of(cls, environment: Environment, release: str, cohort, fleet: Fleet | None, metrics) -> CheckTarget:
        """The cohort given, the rest of the environment as its baseline."""
        names = {h.name for h in cohort}
        baseline = tuple(h for h in environment.hosts if h.name not in names)
        return cls(environment, release, tuple(cohort), baseline, fleet, metrics)

    def scope(self, name: str) -> tuple[Host, ...]:
        """cohort, baseline or environment."""
        return {"cohort": self.cohort, "baseline": self.baseline, "environment": self.cohort + self.baseline}[name]


def render_template(template: str, host: Host, quote: Callable[[str], str] = str) -> str:
    """Fill {name}, {address}, {root} and host vars into a check's URL or command."""
    try:
        return fill_template(template, host.template_values(), quote)
    except ValueError as exc:
        raise ValueError(f"{exc} for host {host.name}") from None


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
