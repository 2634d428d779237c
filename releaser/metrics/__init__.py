"""Metric sources behind one interface: a Prometheus server's HTTP API, or each host's /metrics.

Checks, the canary judge and the effect report read metrics only through `MetricSource`.
Anything that keeps a source from answering (unreachable, an error, no samples) raises
MetricsUnavailable: missing data is never a pass. The HTTP libraries load only when a
source is built (`source_for`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import field

from ..model import Host, MetricsSpec
from ..record import Record
from .histogram import Histogram
from .selector import Selector, counter_increase, promql_regex, read_selector


class MetricsUnavailable(Exception):
    """The source could not answer; whatever asked is inconclusive."""


class Reading(Record):
    """One host's cumulative counters now (each selector's summed value) and, when asked
    for, its latency histogram."""

    counters: dict[str, float] = field(default_factory=dict)
    histogram: Histogram | None = None


class Series(Record, frozen=True):
    """One labelled series of a PromQL query's answer."""

    labels: dict
    value: float


class RangeSeries(Record, frozen=True):
    """One labelled series of a range query: (time, value) points."""

    labels: dict
    points: list[tuple[float, float]]


class MetricSource(ABC):
    def __init__(self, spec: MetricsSpec):
        self.spec = spec

    @abstractmethod
    def readings(
        self, hosts: list[Host], selectors: dict[str, Selector], histogram: str | None = None
    ) -> dict[str, Reading]:
        """Per host name, the counters named by `selectors` and the histogram `histogram`
        (its `_bucket` series); MetricsUnavailable when the source cannot answer."""

    def instances(self, hosts: list[Host]) -> str:
        """A regex of the hosts' `instance` labels, for a PromQL `instance=~"..."` matcher."""
        from ..schema import render_template

        return "|".join(promql_regex(render_template(self.spec.instance, h)) for h in hosts)

    def query(self, expr: str) -> list[Series]:
        """A PromQL instant query (only a Prometheus server answers these)."""
        raise MetricsUnavailable(f"the {self.spec.source} source answers no PromQL queries")


def source_for(spec: MetricsSpec | None) -> MetricSource | None:
    if spec is None:
        return None
    if spec.source == "prometheus":
        from .prometheus import PrometheusSource

        return PrometheusSource(spec)
    from .scrape import ScrapeSource

    return ScrapeSource(spec)


__all__ = [
    "Histogram",
    "MetricSource",
    "MetricsUnavailable",
    "RangeSeries",
    "Reading",
    "Selector",
    "Series",
    "counter_increase",
    "promql_regex",
    "read_selector",
    "source_for",
]
