"""What the environment did over a window, step by step: counter increases per step and the
share of time the hosts answered. From Prometheus range queries, or from the samples releaser
recorded itself (the scrape source keeps no history of its own).

A step's value is None when nothing was measured in it: missing data is never a zero.
"""

from __future__ import annotations

import math
import time
from dataclasses import field

from ..fanout import fan_out
from ..metrics import Selector, counter_increase
from ..metrics.histogram import Histogram, bucket_key
from ..metrics.prometheus import PrometheusSource
from ..metrics.scrape import ScrapeSource, histogram_of
from ..model import Config, Environment, MetricsSpec, ReleaseStatus, ReportSpec, ReportState, Sample, parse_ts
from ..record import Record
from ..store import Store


class Step(Record):
    end: float  # epoch seconds; the step covers (end - length, end]
    seconds: float = 0.0  # how much of the step was observed (per host, on average)
    counters: dict[str, float] = field(default_factory=dict)  # requests, errors, cpu, feature:NAME, le:BOUND
    up: float | None = None  # share of host observations that answered, 0..1
    looks: float = 0.0  # how many observations `up` stands for (its weight)


class Timeline(Record):
    start: float
    end: float
    step: float
    steps: list[Step]
    hosts: int  # hosts of the environment
    measured: tuple[float, float] | None = None  # the first and the last moment measured; None: nothing

    def total(self, key: str) -> tuple[float, float] | None:
        """(sum of a counter's increases, seconds observed while it was measured); None: no data."""
        measured = [s for s in self.steps if key in s.counters]
        if not measured:
            return None
        return math.fsum(s.counters[key] for s in measured), math.fsum(s.seconds for s in measured)

    def histogram(self) -> Histogram:
        """The latency histogram summed over the window."""
        result = Histogram()
        for step in self.steps:
            result.merge(Histogram.from_counters(step.counters))
        return result

    def availability(self) -> float | None:
        """The share of looks at the hosts that found them answering."""
        looks = math.fsum(s.looks for s in self.steps if s.up is not None)
        if not looks:
            return None
        return math.fsum(s.up * s.looks for s in self.steps if s.up is not None) / looks

    @property
    def observed(self) -> float:
        return math.fsum(s.seconds for s in self.steps)


def empty_steps(start: float, end: float, step: float) -> list[Step]:
    count = max(1, math.ceil((end - start) / step - 1e-9))
    return [Step(min(end, start + step * (i + 1))) for i in range(count)]


def _index(start: float, step: float, ts: float, count: int) -> int:
    return min(count - 1, max(0, math.ceil((ts - start) / step - 1e-9) - 1))


# -- the metric values releaser records from a scrape --


def extract(samples: dict, spec: ReportSpec) -> dict[str, float]:
    """The counters a report needs, from one host's scraped samples. A selector that matches
    nothing is left out (no data), except errors where requests were counted: that is 0 errors."""
    values: dict[str, float] = {}
    for key, selector in spec.counters():
        matched = [v for (name, labels), v in samples.items() if selector.matches(name, labels)]
        if matched:
            values[key] = math.fsum(matched)
    if spec.errors is not None and "requests" in values:
        values.setdefault("errors", 0.0)
    histogram = histogram_of(samples, spec.latency) if spec.latency else None
    if histogram is not None:
        values.update(histogram.counters())
    return values


def record_samples(store: Store, env: Environment, metrics: MetricsSpec, spec: ReportSpec, now: float) -> list[Sample]:
    """Read the /metrics of every host in service (running a release) once and keep what the
    report needs; a host that did not answer is recorded as such (None)."""
    source = ScrapeSource(metrics)
    states = store.host_states(env.name)
    serving = [h for h in env.hosts if states.get(h.name) and states[h.name].version]
    outcomes = fan_out(serving, source.scrape, parallel=16)
    samples = [
        Sample(env.name, o.item.name, now, None if o.value is None else extract(o.value, spec)) for o in outcomes
    ]
    store.add_samples(samples)
    return samples


def record_if_due(config: Config, store: Store) -> None:
    """Record the report environment's metrics when its source is `scrape` (which keeps no
    history), at most every quarter step (and every minute); forget what no report needs."""
    env, spec = config.report_environment, config.report
    if env is None or env.metrics is None or env.metrics.source != "scrape" or not spec.measures:
        return
    now = time.time()
    last = store.last_sample_ts(env.name)
    if last is not None and now - last < min(spec.resolution / 4, 60.0):
        return
    record_samples(store, env, env.metrics, spec, now)
    store.prune_samples(env.name, _still_needed_from(store, env.name, spec, now))


def _still_needed_from(store: Store, environment: str, spec: ReportSpec, now: float) -> float:
    """The oldest sample a report may still ask for: a window before the rollout of every release
    still being promoted or whose report has not gone out, however long its rollout took."""
    oldest = now - 2 * spec.window - spec.delay
    pending = {r.release for r in store.reports() if r.state is not ReportState.SENT}
    pending |= {r.version for r in store.list_releases() if r.status is ReleaseStatus.PROMOTING}
    for run in store.stage_runs():
        if run.environment == environment and run.release in pending:
            oldest = min(oldest, parse_ts(run.started_at).timestamp() - spec.window)
    if spec.service is not None:  # the monthly service report reads the whole of the last month
        oldest = min(oldest, now - 62 * 86400)
    return oldest - 86400  # and a day to spare


def from_samples(samples: list[Sample], start: float, end: float, step: float, hosts: int) -> Timeline:
    """Counter increases between each host's consecutive answers, put in the step of the later
    one; a restart (the counter went down) counts from zero, as Prometheus's increase() does."""
    steps = empty_steps(start, end, step)
    answered: list[list[int]] = [[0, 0] for _ in steps]  # per step: answers, observations
    host_seconds = [0.0] * len(steps)
    last: dict[str, tuple[float, dict[str, float]]] = {}  # per host: its latest answer's time and values
    reporting: set[str] = set()
    looked = sorted((s for s in samples if start <= s.ts <= end), key=lambda s: s.ts)
    for sample in looked:
        index = _index(start, step, sample.ts, len(steps))
        answered[index][1] += 1
        if sample.values is None:
            continue
        answered[index][0] += 1
        previous = last.get(sample.host)
        last[sample.host] = (sample.ts, sample.values)
        if previous is None:
            continue
        reporting.add(sample.host)
        previous_ts, previous_values = previous
        host_seconds[index] += sample.ts - previous_ts
        counters = steps[index].counters
        for key, value in sample.values.items():
            counters[key] = counters.get(key, 0.0) + counter_increase(previous_values.get(key), value)
    for index, step_ in enumerate(steps):
        step_.seconds = host_seconds[index] / len(reporting) if reporting else 0.0
        answers, observations = answered[index]
        step_.up, step_.looks = (answers / observations if observations else None), observations
    return Timeline(start, end, step, steps, hosts, (looked[0].ts, looked[-1].ts) if looked else None)


def from_prometheus(
    source: PrometheusSource, env: Environment, spec: ReportSpec, start: float, end: float, step: float
) -> Timeline:
    """Range queries per metric; each point is the increase over the step that ends at it. A last
    step shorter than the others (a month so far) is asked on its own, over its own length: the
    range's grid would stop before it, and a full-length look back would reach before `start`."""
    steps = empty_steps(start, end, step)
    pattern = source.instances(list(env.hosts))
    full_end = start + step * math.floor((end - start) / step + 1e-9)
    passes = [(start + step, full_end, step)] if full_end > start else []
    if end - full_end > 1e-6:
        passes.append((end, end, end - full_end))

    def fill(expr, key_of) -> None:
        for first, last, length in passes:
            for series in source.query_range(expr(f"{max(1, round(length * 1000))}ms"), first, last, step):
                key = key_of(series.labels)
                for ts, value in series.points:
                    if math.isfinite(value):
                        steps[_index(start, step, ts, len(steps))].counters[key] = value

    for key, selector in spec.counters():
        fill(lambda span, s=selector: f"sum(increase({s.promql(pattern)}[{span}]))", lambda _labels, key=key: key)
    if spec.latency:
        bucket = Selector(f"{spec.latency}_bucket", ()).promql(pattern)
        fill(lambda span: f"sum by (le) (increase({bucket}[{span}]))", lambda labels: bucket_key(float(labels["le"])))
    for first, last, length in passes:
        up = f'avg(avg_over_time(up{{instance=~"{pattern}"}}[{max(1, round(length * 1000))}ms]))'
        for series in source.query_range(up, first, last, step):
            for ts, value in series.points:
                one = steps[_index(start, step, ts, len(steps))]
                one.up, one.looks = value, 1.0
    for index, step_ in enumerate(steps):
        if spec.errors is not None and "requests" in step_.counters:
            step_.counters.setdefault("errors", 0.0)
        step_.seconds = step_.end - (start + step * index) if (step_.counters or step_.up is not None) else 0.0
    measured = [s.end for s in steps if s.seconds]  # each point covers the step before it
    covered = (max(start, measured[0] - step), measured[-1]) if measured else None
    return Timeline(start, end, step, steps, len(env.hosts), covered)


def timeline(
    store: Store, env: Environment, spec: ReportSpec, start: float, end: float, step: float | None = None
) -> Timeline:
    """The environment's timeline over [start, end] from wherever its metrics live, in steps of
    `step` (default: the report's resolution); metrics.MetricsUnavailable when the Prometheus
    server cannot answer."""
    step = min(step or spec.resolution, max(end - start, 1.0))
    if env.metrics is None or end <= start:
        return Timeline(start, end, step, empty_steps(start, max(end, start + step), step), len(env.hosts))
    if env.metrics.source == "prometheus":
        return from_prometheus(PrometheusSource(env.metrics), env, spec, start, end, step)
    return from_samples(store.samples(env.name, start, end), start, end, step, len(env.hosts))
