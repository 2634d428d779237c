"""The canary check: the cohort against the same-time baseline, judged sequentially.

It reads request and error counters and, optionally, a latency histogram, for every host of
the cohort (running the release) and of the baseline (the rest of the environment, still on
the last good release), adds up what each group served since the check's first look, and asks
the judge (health.judge) whether the cohort is worse: more errors per request, or more
requests slower than the baseline's p95 bucket. `alpha` bounds the chance of a false alarm over
every look of the stage, shared between the metrics.
"""

from __future__ import annotations

import math

from ..model import Environment
from ..schema import Fields
from .base import Check, CheckResult, CheckTarget, Verdict
from .judge import Comparison, judge
from .sources import MetricsUnavailable, Selector, counter_increase, read_selector

SLOW_SHARE = 0.05  # the latency bound: the highest bucket the baseline exceeds this often


class CanaryCheck(Check):
    type = "canary"

    def __init__(self, name: str, requests: Selector, errors: Selector | None = None, latency: str | None = None,
                 alpha: float = 0.01, tolerance: float = 1.2, min_requests: int = 100, failure_threshold: int = 1):
        super().__init__(name, failure_threshold)
        self.requests, self.errors, self.latency = requests, errors, latency
        self.alpha, self.tolerance, self.min_requests = alpha, tolerance, min_requests

    @classmethod
    def from_fields(cls, name: str, fields: Fields) -> CanaryCheck:
        check = cls(
            name,
            requests=read_selector(fields, "requests", required=True) or Selector("requests", ()),
            errors=read_selector(fields, "errors"),
            latency=fields.str("latency"),
            alpha=fields.number("alpha", 0.01),
            tolerance=fields.number("tolerance", 1.2),
            min_requests=fields.int("min_requests", 100, minimum=1),
            failure_threshold=fields.int("failure_threshold", 1, minimum=1),
        )
        if not 0 < check.alpha < 1:
            fields.problem("alpha", f"must be between 0 and 1, got {check.alpha}")
        if check.tolerance < 1:
            fields.problem("tolerance", f"must be at least 1 (a relative risk), got {check.tolerance}")
        if check.errors is None and check.latency is None:
            fields.problem("errors", "a canary check needs `errors`, `latency` or both")
        return check

    def problems_for(self, environment: Environment, stage: str) -> list[tuple[str, str]]:
        if environment.metrics is None:
            return [("type", "the environment has no `metrics:` source")]
        if stage != "gray":
            return [("type", f"a canary compares the cohort with a baseline: use it on gray, not {stage}")]
        return []

    def evaluate(self, target: CheckTarget, memory: dict) -> CheckResult:
        if not target.cohort or not target.baseline:
            return CheckResult(self.name, Verdict.INCONCLUSIVE, "NODATA: no cohort or no baseline to compare")
        selectors = {"requests": self.requests, **({"errors": self.errors} if self.errors else {})}
        hosts = list(target.cohort + target.baseline)
        try:
            if target.metrics is None:
                raise MetricsUnavailable("no metric source")
            now = target.metrics.totals(hosts, selectors, self.latency)
        except MetricsUnavailable as exc:
            return CheckResult(self.name, Verdict.INCONCLUSIVE, f"NODATA: {exc}")
        if "bound" not in memory and self.latency:
            memory["bound"] = _slow_bound([now[h.name] for h in target.baseline])
        served = _accumulate(memory, now)
        cohort = {h.name for h in target.cohort}
        comparisons = []
        if self.errors:
            comparisons.append(_compare("error ratio", served, cohort, "errors"))
        if self.latency and memory.get("bound") is not None:
            comparisons.append(_compare(f"requests slower than {memory['bound']:g}s", served, cohort, "slow"))
        verdicts = [judge(c, self.alpha / len(comparisons), self.tolerance, self.min_requests) for c in comparisons]
        summary = "; ".join(v.explanation for v in verdicts) or "NODATA: no latency histogram yet"
        decisions = {v.decision for v in verdicts} or {"nodata"}
        if "fail" in decisions:
            return CheckResult(self.name, Verdict.FAIL, summary)
        if "nodata" in decisions:
            return CheckResult(self.name, Verdict.INCONCLUSIVE, summary)
        return CheckResult(self.name, Verdict.PASS, summary)


def _slow_bound(baseline: list[dict]) -> float | None:
    """The highest finite bucket bound that at least SLOW_SHARE of baseline requests exceed."""
    buckets: dict[float, float] = {}
    for values in baseline:
        for key, value in values.items():
            if isinstance(key, tuple):
                buckets[key[1]] = buckets.get(key[1], 0.0) + value
    total = buckets.get(math.inf, 0.0)
    if total <= 0:
        return None
    eligible = [bound for bound, count in buckets.items() if bound != math.inf and (total - count) / total >= SLOW_SHARE]
    return max(eligible) if eligible else min(b for b in buckets if b != math.inf)


def _accumulate(memory: dict, now: dict[str, dict]) -> dict[str, dict[str, float]]:
    """Per host, what was served since the first look (requests, errors, slow), across restarts."""
    bound = memory.get("bound")
    last, served = memory.setdefault("last", {}), memory.setdefault("served", {})
    for host, values in now.items():
        current = {"requests": values.get("requests", 0.0), "errors": values.get("errors", 0.0)}
        if bound is not None:
            current["slow"] = values.get(("le", math.inf), 0.0) - values.get(("le", bound), 0.0)
        before = last.get(host)
        total = served.setdefault(host, {key: 0.0 for key in current})
        if before is not None:
            for key, value in current.items():
                total[key] = total.get(key, 0.0) + counter_increase(before.get(key), value)
        last[host] = current
    return served


def _compare(metric: str, served: dict[str, dict], cohort: set[str], events: str) -> Comparison:
    def total(hosts, key):
        return math.fsum(served[h].get(key, 0.0) for h in hosts)

    mine = [h for h in served if h in cohort]
    theirs = [h for h in served if h not in cohort]
    return Comparison(metric, total(mine, "requests"), total(mine, events), total(theirs, "requests"), total(theirs, events))
