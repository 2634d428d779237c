"""A Prometheus server's HTTP API: instant and range queries with timeouts, bounded retries and
basic or bearer auth whose secrets come from environment variables. requests and tenacity load
when a source is built, not when a configuration naming one is read."""

from __future__ import annotations

from typing import ClassVar

from .. import secrets
from ..model import Host, MetricsSpec, Selector
from ..schema import render_template
from .base import MetricSource, MetricsUnavailable, RangeSeries, Reading, Series
from .histogram import Histogram


class _Transient(Exception):
    pass


class PrometheusSource(MetricSource):
    needs_url: ClassVar[bool] = True
    host_template: ClassVar[str] = "instance"

    def __init__(self, spec: MetricsSpec):
        import requests

        super().__init__(spec)
        self.session = requests.Session()
        if spec.bearer_env:
            self.session.headers["Authorization"] = f"Bearer {secrets.read_env(spec.bearer_env)}"
        elif spec.username_env:
            self.session.auth = secrets.read_credentials(spec.username_env, spec.password_env)

    def query(self, expr: str) -> list[Series]:
        data = self._get("/api/v1/query", {"query": expr})
        return [Series(r["metric"], float(r["value"][1])) for r in _vector(data)]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[RangeSeries]:
        data = self._get("/api/v1/query_range", {"query": expr, "start": start, "end": end, "step": step})
        if data.get("resultType") != "matrix":
            raise MetricsUnavailable(f"expected a range vector, got {data.get('resultType')}")
        return [RangeSeries(r["metric"], [(float(t), float(v)) for t, v in r["values"]]) for r in data["result"]]

    def readings(
        self, hosts: list[Host], selectors: dict[str, Selector], histogram: str | None = None
    ) -> dict[str, Reading]:
        by_instance = {render_template(self.spec.instance, h): h.name for h in hosts}
        pattern = self.instances(hosts)
        result = {h.name: Reading() for h in hosts}
        for key, selector in selectors.items():
            for series in self.query(f"sum by (instance) ({selector.promql(pattern)})"):
                host = by_instance.get(series.labels.get("instance", ""))
                if host:
                    result[host].counters[key] = series.value
        if histogram:
            buckets = Selector(f"{histogram}_bucket", ())
            for series in self.query(f"sum by (instance, le) ({buckets.promql(pattern)})"):
                host = by_instance.get(series.labels.get("instance", ""))
                if host:
                    reading = result[host]
                    reading.histogram = reading.histogram or Histogram()
                    reading.histogram.add(float(series.labels["le"]), series.value)
        return result

    def _get(self, path: str, params: dict) -> dict:
        import requests
        from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_random_exponential

        retrying = retry(
            retry=retry_if_exception_type((_Transient, requests.ConnectionError, requests.Timeout)),
            stop=stop_after_attempt(3),
            wait=wait_random_exponential(multiplier=0.2, max=2),
            reraise=True,
        )
        try:
            return retrying(self._get_once)(path, params)
        except (_Transient, requests.RequestException) as exc:
            raise MetricsUnavailable(f"prometheus at {self.spec.url} did not answer: {exc}") from None

    def _get_once(self, path: str, params: dict) -> dict:
        response = self.session.get(self.spec.url.rstrip("/") + path, params=params, timeout=self.spec.timeout)
        if response.status_code >= 500:
            raise _Transient(f"HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            raise MetricsUnavailable(f"prometheus answered HTTP {response.status_code} without JSON") from None
        if body.get("status") != "success":
            raise MetricsUnavailable(f"query error: {body.get('errorType')}: {body.get('error')}")
        return body["data"]


def _vector(data: dict) -> list[dict]:
    if data.get("resultType") == "scalar":
        return [{"metric": {}, "value": data["result"]}]
    if data.get("resultType") != "vector":
        raise MetricsUnavailable(f"expected an instant vector, got {data.get('resultType')}")
    return data["result"]
