"""The gate: evaluate a stage's checks together, counting consecutive failures per check."""

from __future__ import annotations

import time
from dataclasses import dataclass

from .base import Check, CheckResult, CheckTarget, Verdict


@dataclass
class GateResult:
    verdict: Verdict
    results: list[CheckResult]
    failing_for: float = 0.0  # seconds since the first failing look of the checks that fail now

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
        self._since: dict[str, float] = {}

    def evaluate(self, target: CheckTarget) -> GateResult:
        results, verdict, failing_for = [], Verdict.PASS, 0.0
        for check in self.checks:
            result = check.evaluate(target, self._memory[check.name])
            results.append(result)
            if result.verdict is Verdict.FAIL:
                self._streaks[check.name] += 1
                since = self._since.setdefault(check.name, time.monotonic())
                failing_for = max(failing_for, time.monotonic() - since)
                if self._streaks[check.name] >= check.failure_threshold:
                    verdict = Verdict.FAIL
                    continue
                result = CheckResult(check.name, Verdict.INCONCLUSIVE, f"failing, {result.summary}", result.hosts)
            else:
                self._streaks[check.name] = 0
                self._since.pop(check.name, None)
            if result.verdict is Verdict.INCONCLUSIVE and verdict is Verdict.PASS:
                verdict = Verdict.INCONCLUSIVE
        return GateResult(verdict, results, failing_for)
