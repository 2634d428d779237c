"""Metric sources behind one interface (base): a Prometheus server's HTTP API, or each host's
/metrics. Checks, the canary judge and the effect report read metrics only through
`MetricSource`; a source's module (and its HTTP libraries) loads only when a configuration
names it. A new kind is one module here (a MetricSource) and one line below."""

from __future__ import annotations

from ..model import MetricsSpec
from ..plugins import Kinds
from .base import MetricSource, MetricsUnavailable, RangeSeries, Reading, Series
from .histogram import Histogram
from .selector import Selector, counter_increase, promql_regex, read_selector

SOURCES: Kinds[MetricSource] = Kinds(
    __name__,
    "metric source",
    {
        "scrape": "scrape:ScrapeSource",
        "prometheus": "prometheus:PrometheusSource",
    },
)


def source_for(spec: MetricsSpec | None) -> MetricSource | None:
    return None if spec is None else SOURCES.get(spec.source)(spec)


__all__ = [
    "SOURCES",
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
