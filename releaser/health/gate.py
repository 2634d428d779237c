"""The gate: evaluate a stage's checks together, counting consecutive failures per check.

What the checks have seen lives in `memory`, a plain JSON-able dict the caller keeps in the
store between looks: each check's own memory (the judge's counts, a threshold's `for:` start)
and its failure streak. So a look from a new process (cron's `watch --once`, a restarted
daemon) decides exactly as one long-lived process would.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..model import StageCheck
from ..record import Record
from .base import Check, CheckResult, CheckTarget, Verdict


class GateResult(Record):
    verdict: Verdict
    results: list[CheckResult]

    def summary(self) -> str:
        return "; ".join(f"{r.check}: {r.verdict} ({r.summary})" for r in self.results) or "no checks"

    def failing(self) -> list[CheckResult]:
        return [r for r in self.results if r.verdict is Verdict.FAIL]

    def not_applicable(self) -> list[CheckResult]:
        return [r for r in self.results if r.verdict is Verdict.NOT_APPLICABLE]


class Gate:
    """FAIL once any check has failed `failure_threshold` times in a row; a check failing
    fewer times so far, or one that cannot see, makes the round INCONCLUSIVE. A check that
    does not apply (nothing to compare with) neither passes nor holds the round."""

    def __init__(self, checks: Iterable[StageCheck], memory: dict | None = None):
        self.checks = [_check(check) for check in checks]
        self.memory = memory if memory is not None else {}
        self._states = self.memory.setdefault("checks", {})

    def evaluate(self, target: CheckTarget) -> GateResult:
        results, verdict = [], Verdict.PASS
        for check in self.checks:
            state = self._states.setdefault(check.name, {"seen": {}, "streak": 0})
            result = check.evaluate(target, state["seen"])
            if result.verdict is Verdict.FAIL:
                state["streak"] += 1
                if state["streak"] >= check.failure_threshold:
                    results.append(result)
                    verdict = Verdict.FAIL
                    continue
                result = CheckResult(
                    check.name,
                    Verdict.INCONCLUSIVE,
                    f"failing {state['streak']} of {check.failure_threshold} looks in a row: {result.summary}",
                    result.hosts,
                )
            else:
                state["streak"] = 0
            results.append(result)
            if result.verdict is Verdict.INCONCLUSIVE and verdict is Verdict.PASS:
                verdict = Verdict.INCONCLUSIVE
        return GateResult(verdict, results)


def _check(check: StageCheck) -> Check:
    """A stage's check as the configuration holds it (model.StageCheck), which health built."""
    if not isinstance(check, Check):
        raise TypeError(f"not a health check: {check!r}")
    return check
