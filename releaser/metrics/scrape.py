"""Every host's /metrics read directly: the embedded default, no Prometheus needed. requests
and the exposition parser load at the first scrape, not when a configuration names the source."""

from __future__ import annotations

from typing import ClassVar

from ..fanout import fan_out
from ..model import Host, Samples, Selector
from ..schema import render_template, shown
from .base import MetricSource, MetricsUnavailable, Reading
from .histogram import Histogram


class ScrapeSource(MetricSource):
    host_template: ClassVar[str] = "scrape_url"

    @classmethod
    def host_problem(cls, value: str, host: Host) -> str | None:
        if not value.startswith(("http://", "https://")):
            return f"expected an http:// or https:// URL, got {shown(value)} (host {host.name})"
        return None

    def scrape(self, host: Host) -> Samples:
        import requests
        from prometheus_client.parser import text_string_to_metric_families

        url = render_template(self.spec.scrape_url, host)
        try:
            response = requests.get(url, timeout=self.spec.timeout)
            response.raise_for_status()
            families = list(text_string_to_metric_families(response.text))
        except (requests.RequestException, ValueError) as exc:
            raise MetricsUnavailable(f"{host.name}: {url}: {type(exc).__name__}") from None
        return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}

    def readings(
        self, hosts: list[Host], selectors: dict[str, Selector], histogram: str | None = None
    ) -> dict[str, Reading]:
        """From one read of each host's /metrics; MetricsUnavailable if any host cannot be read."""
        result = {}
        for host, samples in self.scrape_all(hosts).items():
            reading = Reading({key: selector.total(samples) for key, selector in selectors.items()})
            if histogram:
                reading.histogram = histogram_of(samples, histogram)
            result[host] = reading
        return result

    def scrape_all(self, hosts: list[Host]) -> dict[str, Samples]:
        outcomes = fan_out(hosts, self.scrape, parallel=16)
        missing = [str(o.error) for o in outcomes if o.error is not None]
        if missing:
            raise MetricsUnavailable(
                f"{len(missing)} of {len(outcomes)} hosts did not answer: " + "; ".join(missing[:3])
            )
        return {o.item.name: o.value for o in outcomes if o.value is not None}


def histogram_of(samples: Samples, name: str) -> Histogram | None:
    """The `{name}_bucket` series of one scrape, summed over their other labels."""
    histogram = Histogram()
    for (metric, labels), value in samples.items():
        if metric == f"{name}_bucket":
            histogram.add(float(dict(labels)["le"]), value)
    return histogram if histogram.buckets else None
