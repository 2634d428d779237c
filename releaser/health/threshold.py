"""The threshold check: a metric of the cohort, baseline or environment against max / min.

With a Prometheus source it is a PromQL query in which $instances (a regex of the scope's
`instance` labels), $hosts, $environment and $release are filled in. With the scrape source it
is a selector over each host's /metrics: `metric` alone sums the scope's current values (a
gauge); with `per`, it is the ratio of the two counters' increase since the last look (for
the first look, since the processes started), e.g. errors per request.

An empty query result is "no data" (inconclusive). A healthy service often has no error series
at all, so write error ratios as `(sum(rate(errors[1m])) or vector(0)) / sum(rate(requests[1m]))`.
"""

from __future__ import annotations

import math
import time
from string import Template

from ..model import Environment
from ..schema import Fields
from .base import Check, CheckResult, CheckTarget, Verdict, render_template
from .sources import MetricsUnavailable, PrometheusSource, Selector, counter_increase, promql_regex, read_selector

SCOPES = ("cohort", "baseline", "environment")


class ThresholdCheck(Check):
    type = "threshold"

    def __init__(self, name: str, query: str | None = None, metric: Selector | None = None,
                 per: Selector | None = None, scope: str = "cohort", maximum: float | None = None,
                 minimum: float | None = None, hold_for: float = 0.0, failure_threshold: int = 1):
        super().__init__(name, failure_threshold)
        self.query, self.metric, self.per, self.scope_name = query, metric, per, scope
        self.maximum, self.minimum, self.hold_for = maximum, minimum, hold_for

    @classmethod
    def from_fields(cls, name: str, fields: Fields) -> ThresholdCheck:
        check = cls(
            name, query=fields.str("query", multiline=True), metric=read_selector(fields, "metric"), per=read_selector(fields, "per"),
            scope=fields.str("scope", "cohort", choices=SCOPES) or "cohort",
            maximum=fields.number("max"), minimum=fields.number("min"), hold_for=fields.duration("for", 0.0),
            failure_threshold=fields.int("failure_threshold", 1, minimum=1),
        )
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
            if isinstance(target.metrics, PrometheusSource):
                value = self._from_prometheus(target, hosts)
            elif target.metrics is not None:
                value = self._from_scrape(target, hosts, memory)
            else:
                raise MetricsUnavailable("no metric source")
        except MetricsUnavailable as exc:
            return CheckResult(self.name, Verdict.INCONCLUSIVE, f"no data: {exc}")
        if value is None or math.isnan(value):
            return CheckResult(self.name, Verdict.INCONCLUSIVE, f"no data for the {self.scope_name} (no samples or no traffic)")
        return self._judge(value, memory)

    def _judge(self, value: float, memory: dict) -> CheckResult:
        bounds = " and ".join(
            f"{word} {limit:g}" for word, limit in (("max", self.maximum), ("min", self.minimum)) if limit is not None
        )
        breached = (self.maximum is not None and value > self.maximum) or (self.minimum is not None and value < self.minimum)
        if not breached:
            memory.pop("since", None)
            return CheckResult(self.name, Verdict.PASS, f"{self.scope_name} {value:.4g} within {bounds}")
        now = time.monotonic()
        held = now - memory.setdefault("since", now)
        if held >= self.hold_for:
            return CheckResult(self.name, Verdict.FAIL, f"{self.scope_name} {value:.4g} outside {bounds}"
                               + (f" for {held:.0f}s" if self.hold_for else ""))
        return CheckResult(self.name, Verdict.INCONCLUSIVE,
                           f"{self.scope_name} {value:.4g} outside {bounds} for {held:.0f}s of {self.hold_for:g}s")

    def _from_prometheus(self, target: CheckTarget, hosts) -> float | None:
        spec = target.metrics.spec
        instances = "|".join(promql_regex(render_template(spec.instance, h)) for h in hosts)
        expr = Template(self.query).safe_substitute(
            instances=instances, hosts="|".join(promql_regex(h.name) for h in hosts),
            environment=target.environment.name, release=target.release,
        )
        series = target.metrics.query(expr)
        values = [s.value for s in series if not math.isnan(s.value)]
        if not values:
            return None
        return max(values) if self.maximum is not None else min(values)

    def _from_scrape(self, target: CheckTarget, hosts, memory: dict) -> float | None:
        samples = target.metrics.scrape_all(list(hosts))
        if self.per is None:
            return math.fsum(self.metric.total(s) for s in samples.values())
        last = memory.get("last", {})
        now = {host: (self.metric.total(s), self.per.total(s)) for host, s in samples.items()}
        memory["last"] = now
        num = math.fsum(counter_increase(last.get(h, (None, None))[0], v[0]) for h, v in now.items())
        den = math.fsum(counter_increase(last.get(h, (None, None))[1], v[1]) for h, v in now.items())
        return num / den if den > 0 else None

