"""Metric sources: a Prometheus server's HTTP API, or each host's /metrics read directly.

Anything that keeps a source from answering (unreachable, an error, no samples) raises
MetricsUnavailable, which checks turn into INCONCLUSIVE: missing data is never a pass.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import requests
from prometheus_client.parser import text_string_to_metric_families
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from .. import secrets
from ..fleet import fan_out
from ..model import Host, MetricsSpec
from ..schema import Fields, shown
from .base import render_template


class MetricsUnavailable(Exception):
    """The source could not answer; the check is inconclusive."""


class _Transient(Exception):
    pass


@dataclass(frozen=True)
class Series:
    labels: dict
    value: float


@dataclass(frozen=True)
class RangeSeries:
    labels: dict
    points: list[tuple[float, float]]


class PrometheusSource:
    """Instant and range queries over the HTTP API, with timeouts, bounded retries and
    basic or bearer auth whose secrets come from environment variables."""

    def __init__(self, spec: MetricsSpec):
        self.spec = spec
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

    def totals(self, hosts: list[Host], selectors: dict[str, Selector], histogram: str | None = None) -> dict[str, dict]:
        """Per host: each selector's summed value, and the histogram's cumulative buckets
        under keys ("le", bound)."""
        by_instance = {render_template(self.spec.instance, h): h.name for h in hosts}
        pattern = "|".join(promql_regex(i) for i in by_instance)
        result: dict[str, dict] = {h.name: {} for h in hosts}
        for key, selector in selectors.items():
            for series in self.query(f"sum by (instance) ({selector.promql(pattern)})"):
                host = by_instance.get(series.labels.get("instance", ""))
                if host:
                    result[host][key] = series.value
        if histogram:
            buckets = Selector(f"{histogram}_bucket", ())
            for series in self.query(f"sum by (instance, le) ({buckets.promql(pattern)})"):
                host = by_instance.get(series.labels.get("instance", ""))
                if host:
                    result[host][("le", float(series.labels["le"]))] = series.value
        return result

    def _get(self, path: str, params: dict) -> dict:
        try:
            return self._get_retrying(path, params)
        except (_Transient, requests.RequestException) as exc:
            raise MetricsUnavailable(f"prometheus at {self.spec.url} did not answer: {exc}") from None

    @retry(retry=retry_if_exception_type((_Transient, requests.ConnectionError, requests.Timeout)),
           stop=stop_after_attempt(3), wait=wait_random_exponential(multiplier=0.2, max=2), reraise=True)
    def _get_retrying(self, path: str, params: dict) -> dict:
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


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class ScrapeSource:
    """Reads every host's /metrics (the embedded default: no Prometheus needed)."""

    def __init__(self, spec: MetricsSpec):
        self.spec = spec

    def scrape(self, host: Host) -> Samples:
        url = render_template(self.spec.scrape_url, host)
        try:
            response = requests.get(url, timeout=self.spec.timeout)
            response.raise_for_status()
            families = list(text_string_to_metric_families(response.text))
        except (requests.RequestException, ValueError) as exc:
            raise MetricsUnavailable(f"{host.name}: {url}: {type(exc).__name__}") from None
        return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}

    def totals(self, hosts: list[Host], selectors: dict[str, Selector], histogram: str | None = None) -> dict[str, dict]:
        """As PrometheusSource.totals, from one read of each host's /metrics."""
        result = {}
        for host, samples in self.scrape_all(hosts).items():
            values = {key: selector.total(samples) for key, selector in selectors.items()}
            if histogram:
                for (name, labels), value in samples.items():
                    if name == f"{histogram}_bucket":
                        key = ("le", float(dict(labels)["le"]))
                        values[key] = values.get(key, 0.0) + value
            result[host] = values
        return result

    def scrape_all(self, hosts: list[Host]) -> dict[str, Samples]:
        """Every host's samples; MetricsUnavailable if any host cannot be read."""
        outcomes = fan_out(hosts, self.scrape, parallel=16)
        missing = [str(o.error) for o in outcomes if o.error is not None]
        if missing:
            raise MetricsUnavailable("; ".join(missing[:3]))
        return {o.item.name: o.value for o in outcomes}


_SELECTOR = re.compile(r"^\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?:\{(.*)\})?\s*$")
_MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')


@dataclass(frozen=True)
class Selector:
    """`name{label="v", other=~"re"}`: which samples of a scrape to add up."""

    name: str
    matchers: tuple[tuple[str, str, str], ...]

    @classmethod
    def parse(cls, text: str) -> Selector:
        match = _SELECTOR.match(text or "")
        if not match:
            raise ValueError(f"expected a metric selector like name{{label=\"value\"}}, got {shown(text)}")
        body, matchers, pos = match.group(2) or "", [], 0
        while pos < len(body.rstrip()):
            item = _MATCHER.match(body, pos)
            if not item:
                raise ValueError(f"cannot read the label matchers in {text!r}")
            label, op, value = item.group(1), item.group(2), item.group(3).encode().decode("unicode_escape")
            if op in ("=~", "!~"):
                re.compile(value)
            matchers.append((label, op, value))
            pos = item.end()
        return cls(match.group(1), tuple(matchers))

    def matches(self, name: str, labels: tuple[tuple[str, str], ...]) -> bool:
        if name != self.name:
            return False
        values = dict(labels)
        for label, op, wanted in self.matchers:
            value = values.get(label, "")
            ok = {"=": value == wanted, "!=": value != wanted,
                  "=~": re.fullmatch(wanted, value) is not None, "!~": re.fullmatch(wanted, value) is None}[op]
            if not ok:
                return False
        return True

    def promql(self, instances: str) -> str:
        """This selector in PromQL, restricted to the instances matching the regex."""
        matchers = [f'{label}{op}"{_promql_string(value)}"' for label, op, value in self.matchers]
        matchers.append(f'instance=~"{instances}"')
        return f"{self.name}{{{', '.join(matchers)}}}"

    def total(self, samples: Samples) -> float:
        return math.fsum(v for (name, labels), v in samples.items() if self.matches(name, labels))


def read_selector(fields: Fields, key: str, required: bool = False) -> Selector | None:
    """A selector-valued configuration key; a malformed one is a problem at its line."""
    text = fields.str(key, required=required)
    if text is None:
        return None
    try:
        return Selector.parse(text)
    except (ValueError, re.error) as exc:
        fields.problem(key, str(exc))
        return None


def counter_increase(before: float | None, after: float) -> float:
    """How much a counter grew; a reset (process restart) counts from zero, as rate() does."""
    if before is None or after < before:
        return after
    return after - before


def source_for(spec: MetricsSpec | None):
    if spec is None:
        return None
    return PrometheusSource(spec) if spec.source == "prometheus" else ScrapeSource(spec)


def _promql_string(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def promql_regex(value: str) -> str:
    """A literal for a regex matcher inside a PromQL double-quoted string."""
    return _promql_string(re.escape(value))
