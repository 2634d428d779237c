"""The canary check: the cohort against the same-time baseline, judged sequentially.

It reads request and error counters and, optionally, a latency histogram, for every host of
the cohort (running the release) and of the baseline (the hosts still running an earlier
release), adds up what each group served since the evidence started (kept in the check's
memory, which the store keeps between looks and processes), and asks the judge
(health.judge) two questions per metric: is the cohort shown to be worse (more errors per
request, or more requests slower than the baseline's p95 bucket), and is it shown to be no
worse than the bound? It fails on the first, passes when every metric has the second, and is
inconclusive until then. `alpha` bounds the chance of a wrong decision either way over every
look; a regression's alpha is shared between the metrics.

With no baseline (a first install: no host runs an earlier release) there is nothing to
compare, and the check says it does not apply.
"""

from __future__ import annotations

import math
import time

from ..metrics import MetricsUnavailable, Selector, counter_increase, read_selector
from ..model import Environment
from ..schema import Fields
from .base import Check, CheckResult, CheckTarget, Verdict
from .judge import Bound, Comparison, Judgement, judge

SLOW_SHARE = 0.05  # the latency bound: the highest bucket the baseline exceeds this often
# What a pass must show by default, chosen from bench/judge (bench/RESULTS.md): a cohort of one
# host at 1 request a second shows a good release no worse within minutes, a +5 point error
# ratio or a doubled latency is caught, and where events are common enough to compare (see
# judge.RARE) the ratio decides, so a doubled error ratio never passes on the margin.
DEFAULT_BOUNDS = {"errors": Bound(1.5, 0.04), "latency": Bound(2.0, 0.02)}


class CanaryCheck(Check):
    type = "canary"

    def __init__(
        self,
        name: str,
        requests: Selector,
        errors: Selector | None = None,
        latency: str | None = None,
        alpha: float = 0.01,
        tolerance: float = 1.2,
        min_requests: int = 100,
        failure_threshold: int = 1,
        bounds: dict[str, Bound] | None = None,
    ):
        super().__init__(name, failure_threshold)
        self.requests, self.errors, self.latency = requests, errors, latency
        self.alpha, self.tolerance, self.min_requests = alpha, tolerance, min_requests
        self.bounds = {**DEFAULT_BOUNDS, **(bounds or {})}

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
            bounds=_read_bounds(fields),
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
        if not target.cohort:
            return CheckResult(self.name, Verdict.INCONCLUSIVE, "NODATA: no host runs the release yet")
        if not target.baseline:
            return CheckResult(
                self.name,
                Verdict.NOT_APPLICABLE,
                f"no host of {target.environment.name} runs an earlier release to compare with (a first install)",
            )
        selectors = {"requests": self.requests, **({"errors": self.errors} if self.errors else {})}
        hosts = list(target.cohort + target.baseline)
        try:
            if target.metrics is None:
                raise MetricsUnavailable("no metric source")
            now = target.metrics.readings(hosts, selectors, self.latency)
        except MetricsUnavailable as exc:
            return CheckResult(self.name, Verdict.INCONCLUSIVE, f"NODATA: cannot read the metrics: {exc}", blind=True)
        first_look = "started" not in memory  # counts start here: no rate can be told yet
        started = memory.setdefault("started", time.time())
        if memory.get("bound") is None and self.latency:
            memory["bound"], memory["first_bucket"] = _slow_bound([now[h.name] for h in target.baseline])
        served = _accumulate(memory, now)
        if any(reading.counters.get("requests", 0.0) > 0 for reading in now.values()):
            memory["counted"] = True  # the selector matches a counter: a silence is quiet traffic
        cohort = {h.name for h in target.cohort}
        comparisons = []
        if self.errors:
            comparisons.append(("errors", _compare("error ratio", served, cohort, "errors")))
        if self.latency and memory.get("bound") is not None:
            slow = f"requests slower than {memory['bound']:g}s"
            if memory.get("first_bucket"):
                slow += " (the histogram's first bucket: finer buckets would show smaller slowdowns)"
            comparisons.append(("latency", _compare(slow, served, cohort, "slow")))
        if not comparisons:
            return CheckResult(self.name, Verdict.INCONCLUSIVE, "NODATA: no latency histogram yet")
        elapsed = max(time.time() - started, 0.0)
        shown = memory.setdefault("shown", [])
        judgements = [
            self._judge(kind, c, len(comparisons), elapsed, target.bake_left, shown) for kind, c in comparisons
        ]
        summary = "; ".join(j.explanation for j in judgements)
        decisions = {j.decision for j in judgements}
        evidence = [self._evidence(kind, c, j) for (kind, c), j in zip(comparisons, judgements, strict=True)]
        if "fail" in decisions:
            return CheckResult(self.name, Verdict.FAIL, summary, evidence=evidence)
        if decisions == {"pass"}:
            return CheckResult(self.name, Verdict.PASS, summary, evidence=evidence)
        undecided = [
            (kind, c, j) for (kind, c), j in zip(comparisons, judgements, strict=False) if j.decision != "pass"
        ]
        return CheckResult(
            self.name,
            Verdict.INCONCLUSIVE,
            summary,
            needs=None if first_look else self._needs(undecided, elapsed),
            advice=self._advice(undecided, memory.get("counted", False)),
            evidence=evidence,
        )

    def _evidence(self, kind: str, c: Comparison, j: Judgement) -> dict:
        """One metric's evidence at this look, for the dashboard to draw over time."""
        return {
            "metric": kind,
            "cohort_requests": round(c.cohort_requests),
            "cohort_events": round(c.cohort_events),
            "baseline_requests": round(c.baseline_requests),
            "baseline_events": round(c.baseline_events),
            "ratio": self.bounds[kind].ratio,
            "margin": self.bounds[kind].margin,
            "decision": j.decision,
            **(
                {"more_requests": round(j.more_requests)}
                if j.more_requests is not None and math.isfinite(j.more_requests)
                else {}
            ),
        }

    def _judge(
        self, kind: str, comparison: Comparison, metrics: int, elapsed: float, left: float | None, shown: list
    ) -> Judgement:
        """Judge one metric; a pass once shown stays shown (the evidence is valid at any
        look), while a regression is still looked for at every look."""
        verdict = judge(
            comparison,
            self.alpha / metrics,
            self.alpha,
            self.tolerance,
            self.bounds[kind],
            self.min_requests,
            elapsed,
            left,
        )
        if verdict.decision == "pass" and kind not in shown:
            shown.append(kind)
        elif verdict.decision in ("inconclusive", "nodata") and kind in shown:
            verdict.decision = "pass"
            verdict.explanation += " (no worse than the bound was shown earlier; still watched for a regression)"
        return verdict

    def _needs(self, undecided: list[tuple[str, Comparison, Judgement]], elapsed: float) -> float | None:
        """Seconds until every undecided metric decides at the current rates (math.inf: never at
        these rates); None before a rate can be told."""
        if elapsed <= 0:
            return None
        longest = 0.0
        for _kind, c, j in undecided:
            if j.decision == "nodata":
                short = [
                    (served, self.min_requests - served)
                    for served in (c.cohort_requests, c.baseline_requests)
                    if served < self.min_requests
                ]
                needed = max(missing / (served / elapsed) if served > 0 else math.inf for served, missing in short)
            elif j.more_requests is None:
                needed = math.inf
            else:
                needed = j.more_requests / (c.cohort_requests / elapsed) if c.cohort_requests else math.inf
            longest = max(longest, needed)
        return longest

    def _advice(self, undecided: list[tuple[str, Comparison, Judgement]], counted: bool) -> str:
        """The settings that would let this check decide sooner, in words; when the `requests`
        selector has read nothing but 0 on every host, that selector first (no bake would help)."""
        if not counted and not any(c.cohort_requests or c.baseline_requests for _kind, c, _j in undecided):
            return (
                f"first see that requests are counted: the `requests` selector (`{self.requests.text()}`) "
                f"of the check {self.name} reads 0 on every host; if the hosts serve traffic, point it at the "
                "request counter the app exports (curl a host's metrics)"
            )
        kinds = {kind for kind, _c, _j in undecided}
        margins = ", ".join(f"`bound.{kind}.margin` (now {self.bounds[kind].margin:.1%})" for kind in sorted(kinds))
        return (
            f"a longer bake (`bake: {{max: ...}}` on the stage), a larger `cohort` (more traffic), a wider "
            f"{margins}, or a lower `min_requests` (now {self.min_requests}) on the check {self.name}"
        )


def _read_bounds(fields: Fields) -> dict[str, Bound]:
    """`bound: {errors: {ratio: 1.5, margin: 0.1%}, latency: {ratio: 1.5}}`"""
    section = fields.mapping("bound")
    if section is None:
        return {}
    bounds = {}
    for kind in DEFAULT_BOUNDS:
        one = section.mapping(kind)
        if one is None:
            continue
        default = DEFAULT_BOUNDS[kind]
        ratio, margin = one.number("ratio", default.ratio), one.percent("margin", default.margin * 100, allow_zero=True)
        if ratio < 1:
            one.problem("ratio", f"must be at least 1 (x the baseline), got {ratio:g}")
        one.finish()
        bounds[kind] = Bound(max(ratio, 1.0), min(margin, 99.0) / 100)
    section.finish()
    return bounds


def _slow_bound(baseline: list) -> tuple[float | None, bool]:
    """The highest finite bucket bound that at least SLOW_SHARE of baseline requests exceed, and
    whether it is only the histogram's first bucket because none is exceeded that often."""
    from ..metrics import Histogram

    merged = Histogram()
    for reading in baseline:
        merged.merge(reading.histogram)
    bound = merged.bound_exceeded_by(SLOW_SHARE)
    if bound is None:
        return None, False
    return bound, merged.above(bound) < SLOW_SHARE * merged.total


def _accumulate(memory: dict, now: dict) -> dict[str, dict[str, float]]:
    """Per host, what was served since the evidence started (requests, errors, slow), across
    process restarts of the apps (a counter that went down counts from zero)."""
    bound = memory.get("bound")
    last, served = memory.setdefault("last", {}), memory.setdefault("served", {})
    for host, reading in now.items():
        current = {"requests": reading.counters.get("requests", 0.0), "errors": reading.counters.get("errors", 0.0)}
        if bound is not None and reading.histogram is not None:
            current["slow"] = reading.histogram.above(bound)
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
    return Comparison(
        metric, total(mine, "requests"), total(mine, events), total(theirs, "requests"), total(theirs, events)
    )
