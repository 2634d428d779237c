"""The gate: evaluate a stage's checks together, counting consecutive failures per check."""

from __future__ import annotations

from dataclasses import dataclass

from .base import Check, CheckResult, CheckTarget, Verdict


@dataclass
class GateResult:
    verdict: Verdict
    results: list[CheckResult]

    def summary(self) -> str:
        return "; ".join(f"{r.check}: {r.verdict} ({r.summary})" for r in self.results) or "no checks"

    def failing(self) -> list[CheckResult]:
        return [r for r in self.results if r.verdict is Verdict.FAIL]


class Gate:
    """FAIL once any check has failed `failure_threshold` times in a row; a check failing
    fewer times so far, or one that cannot see, makes the round INCONCLUSIVE."""

    def __init__(self, checks: tuple[Check, ...] | list[Check]):
        self.checks = list(checks)
        self._streaks = {check.name: 0 for check in self.checks}
        self._memory: dict[str, dict] = {check.name: {} for check in self.checks}

    def evaluate(self, target: CheckTarget) -> GateResult:
        results, verdict = [], Verdict.PASS
        for check in self.checks:
            result = check.evaluate(target, self._memory[check.name])
            results.append(result)
            if result.verdict is Verdict.FAIL:
                self._streaks[check.name] += 1
                if self._streaks[check.name] >= check.failure_threshold:
                    verdict = Verdict.FAIL
                    continue
                result = CheckResult(check.name, Verdict.INCONCLUSIVE, f"failing, {result.summary}", result.hosts)
            else:
                self._streaks[check.name] = 0
            if result.verdict is Verdict.INCONCLUSIVE and verdict is Verdict.PASS:
                verdict = Verdict.INCONCLUSIVE
        return GateResult(verdict, results)
