"""The metric source interface, and the `metrics:` keys every source reads.

Anything that keeps a source from answering (unreachable, an error, no samples) raises
MetricsUnavailable: missing data is never a pass."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import field
from typing import ClassVar

from ..model import Host, MetricsSpec, Selector
from ..record import Record
from ..schema import Fields, render_template, shown
from .histogram import Histogram
from .selector import promql_regex


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
    """A source of one environment's metrics. A kind reads its own `metrics:` keys (`read_spec`)
    and says what cannot work for the environment's hosts (`problems_for`)."""

    needs_url: ClassVar[bool] = False  # `url:` is required
    host_template: ClassVar[str]  # the key holding the per-host template (instance, scrape_url)

    def __init__(self, spec: MetricsSpec):
        self.spec = spec

    @classmethod
    def read_spec(cls, source: str, fields: Fields) -> MetricsSpec:
        """The section's keys (the source is read); every source accepts the same keys."""
        spec = MetricsSpec(
            source=source,
            url=fields.str("url", "", required=cls.needs_url),
            instance=fields.str("instance", MetricsSpec.instance),
            scrape_url=fields.str("scrape_url", MetricsSpec.scrape_url),
            timeout=fields.duration("timeout", 5.0),
            bearer_env=fields.env_name("bearer_env"),
            username_env=fields.env_name("username_env"),
            password_env=fields.env_name("password_env"),
        )
        if spec.url and not spec.url.startswith(("http://", "https://")):
            fields.problem("url", f"expected an http:// or https:// URL, got {shown(spec.url)}")
        return spec

    @classmethod
    def problems_for(cls, spec: MetricsSpec, hosts: list[Host]) -> list[tuple[str, str]]:
        """(key, message) for a per-host template that does not fill in for some host."""
        template = getattr(spec, cls.host_template)
        for host in hosts:
            try:
                value = render_template(template, host)
            except ValueError as exc:
                return [(cls.host_template, str(exc))]
            problem = cls.host_problem(value, host)
            if problem:
                return [(cls.host_template, problem)]
        return []

    @classmethod
    def host_problem(cls, value: str, host: Host) -> str | None:
        """What is wrong with the filled-in template of one host, if anything."""
        return None

    @abstractmethod
    def readings(
        self, hosts: list[Host], selectors: dict[str, Selector], histogram: str | None = None
    ) -> dict[str, Reading]:
        """Per host name, the counters named by `selectors` and the histogram `histogram`
        (its `_bucket` series); MetricsUnavailable when the source cannot answer."""

    def instances(self, hosts: list[Host]) -> str:
        """A regex of the hosts' `instance` labels, for a PromQL `instance=~"..."` matcher."""
        return "|".join(promql_regex(render_template(self.spec.instance, h)) for h in hosts)

    def query(self, expr: str) -> list[Series]:
        """A PromQL instant query (only a Prometheus server answers these)."""
        raise MetricsUnavailable(f"the {self.spec.source} source answers no PromQL queries")
