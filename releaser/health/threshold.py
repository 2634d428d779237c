"""The threshold check: a metric of the cohort, baseline or environment against max / min.

With a Prometheus source it is a PromQL query in which $instances (a regex of the scope's
`instance` labels), $hosts, $environment and $release are filled in. With the scrape source it
is a selector over each host's /metrics: `metric` alone sums the scope's current values (a
gauge); with `per`, it is the ratio of the two counters' increase since the last look (for
the first look, since the processes started), e.g. errors per request. A share like that is
decided on counts, so its pass is evidence too: besides lying within the bounds at this look,
the counts since the check's first look must show it below `max` (above `min`) with confidence
1 - `alpha`, as the canary's absolute margin does; until then the check is inconclusive.

An empty query result is "no data" (inconclusive). A healthy service often has no error series
at all, so write error ratios as `(sum(rate(errors[1m])) or vector(0)) / sum(rate(requests[1m]))`.
"""

from __future__ import annotations

import math
import time
from string import Template

from ..metrics import MetricSource, MetricsUnavailable, Selector, counter_increase, promql_regex, read_selector
from ..model import Environment
from ..schema import Fields
from .base import Check, CheckResult, CheckTarget, Verdict

SCOPES = ("cohort", "baseline", "environment")


class ThresholdCheck(Check):
    type = "threshold"

    def __init__(
        self,
        name: str,
        query: str | None = None,
        metric: Selector | None = None,
        per: Selector | None = None,
        scope: str = "cohort",
        maximum: float | None = None,
        minimum: float | None = None,
        hold_for: float = 0.0,
        failure_threshold: int = 1,
        alpha: float = 0.01,
    ):
        super().__init__(name, failure_threshold)
        self.query, self.metric, self.per, self.scope_name = query, metric, per, scope
        self.maximum, self.minimum, self.hold_for, self.alpha = maximum, minimum, hold_for, alpha

    @classmethod
    def from_fields(cls, name: str, fields: Fields) -> ThresholdCheck:
        check = cls(
            name,
            query=fields.str("query", multiline=True),
            metric=read_selector(fields, "metric"),
            per=read_selector(fields, "per"),
            scope=fields.str("scope", "cohort", choices=SCOPES) or "cohort",
            maximum=fields.number("max"),
            minimum=fields.number("min"),
            hold_for=fields.duration("for", 0.0),
            failure_threshold=fields.int("failure_threshold", 1, minimum=1),
            alpha=fields.number("alpha", 0.01),
        )
        if not 0 < check.alpha < 1:
            fields.problem("alpha", f"must be between 0 and 1, got {check.alpha}")
        if check.maximum is None and check.minimum is None:
            fields.problem("max", "a threshold check needs max, min or both")
        if (check.query is None) == (fields.data.get("metric") is None):
            fields.problem("query", "give a PromQL `query` (prometheus) or a `metric` selector (scrape), not both")
        return check

    def problems_for(self, environment: Environment, stage: str) -> list[tuple[str, str]]:
        spec = environment.metrics
        if spec is None:
            return [("type", "the environment has no `metrics:` source")]
        if spec.source == "prometheus" and self.query is None:
            return [("metric", "a prometheus source needs a PromQL `query`")]
        if spec.source == "scrape" and self.metric is None:
            return [("query", "the scrape source needs a `metric` selector (and `per` for a ratio)")]
        return []

    def evaluate(self, target: CheckTarget, memory: dict) -> CheckResult:
        hosts = target.scope(self.scope_name)
        if not hosts:
            return CheckResult(self.name, Verdict.INCONCLUSIVE, f"no hosts in the {self.scope_name}")
        try:
            if target.metrics is None:
                raise MetricsUnavailable("no metric source")
            if self.query is not None:
                values = self._promql(target.metrics, self.query, target, hosts)
            else:
                values = self._scraped(target.metrics, hosts, memory)
        except MetricsUnavailable as exc:
            return CheckResult(self.name, Verdict.INCONCLUSIVE, f"no data: {exc}", blind=True)
        values = [v for v in values if not math.isnan(v)]
        if not values:
            return CheckResult(
                self.name, Verdict.INCONCLUSIVE, f"no data for the {self.scope_name} (no samples or no traffic)"
            )
        result = self._judge(values, memory)
        if result.verdict is Verdict.PASS and "counted" in memory:
            return self._shown(result, *memory["counted"])
        return result

    def _shown(self, result: CheckResult, events: float, requests: float) -> CheckResult:
        """A passing share is a pass only once the counts show it within the bounds."""
        from .judge import evidence_below

        if requests <= 0:
            return CheckResult(self.name, Verdict.INCONCLUSIVE, f"{result.summary} at this look, nothing counted yet")
        if not 0 <= events <= requests:  # not a share of the requests (bytes per request...): a level
            return result

        def shown(scale: float) -> bool:
            below = (
                self.maximum is None
                or not 0 < self.maximum < 1
                or evidence_below(events * scale, requests * scale, self.maximum) >= math.log(1 / self.alpha)
            )
            above = (
                self.minimum is None
                or not 0 < self.minimum < 1
                or evidence_below((requests - events) * scale, requests * scale, 1 - self.minimum)
                >= math.log(1 / self.alpha)
            )
            return bool(below and above)

        if shown(1.0):
            return CheckResult(self.name, Verdict.PASS, f"{result.summary}, shown on {requests:,.0f} counted")
        scale = next((k for k in (1.5, 2, 3, 5, 10, 30, 100) if shown(k)), None)
        need = f"about {requests * (scale - 1):,.0f} more at this ratio" if scale else "much more at this ratio"
        return CheckResult(
            self.name,
            Verdict.INCONCLUSIVE,
            f"{result.summary} at this look, not yet shown on {requests:,.0f} counted: {need}",
        )

    def _judge(self, values: list[float], memory: dict) -> CheckResult:
        """Every series must lie within the bounds: the largest against `max`, the smallest against `min`."""
        bounds = " and ".join(
            f"{word} {limit:g}" for word, limit in (("max", self.maximum), ("min", self.minimum)) if limit is not None
        )
        high, low = max(values), min(values)
        above = self.maximum is not None and high > self.maximum
        below = self.minimum is not None and low < self.minimum
        shown_value = high if above or (not below and self.maximum is not None) else low
        series = f"{len(values)} series, " if len(values) > 1 else ""
        if not (above or below):
            memory.pop("since", None)
            return CheckResult(self.name, Verdict.PASS, f"{self.scope_name} {series}{shown_value:.4g} within {bounds}")
        now = time.time()
        held = max(0.0, now - memory.setdefault("since", now))
        what = f"{self.scope_name} {series}{shown_value:.4g} outside {bounds}"
        if held >= self.hold_for:
            return CheckResult(self.name, Verdict.FAIL, what + (f" for {held:.0f}s" if self.hold_for else ""))
        return CheckResult(self.name, Verdict.INCONCLUSIVE, f"{what} for {held:.0f}s of {self.hold_for:g}s")

    def _promql(self, metrics: MetricSource, query: str, target: CheckTarget, hosts) -> list[float]:
        expr = Template(query).safe_substitute(
            instances=metrics.instances(list(hosts)),
            hosts="|".join(promql_regex(h.name) for h in hosts),
            environment=target.environment.name,
            release=target.release,
        )
        return [s.value for s in metrics.query(expr)]

    def _scraped(self, metrics: MetricSource, hosts, memory: dict) -> list[float]:
        """The scope's summed gauge, or the ratio of two counters' increase since the last look."""
        if self.metric is None:  # from_fields sees to it that a check without a query names a metric
            raise MetricsUnavailable("no metric to read")
        selectors = {"value": self.metric, **({"per": self.per} if self.per else {})}
        readings = metrics.readings(list(hosts), selectors)
        if self.per is None:
            return [math.fsum(r.counters["value"] for r in readings.values())]
        last = memory.get("last", {})
        now = {host: (r.counters["value"], r.counters["per"]) for host, r in readings.items()}
        memory["last"] = now
        num = math.fsum(counter_increase(last.get(h, (None, None))[0], v[0]) for h, v in now.items())
        den = math.fsum(counter_increase(last.get(h, (None, None))[1], v[1]) for h, v in now.items())
        counted = memory.setdefault("counted", [0.0, 0.0])  # since the first look: what a pass rests on
        if last:
            counted[0], counted[1] = counted[0] + num, counted[1] + den
        return [num / den] if den > 0 else []
