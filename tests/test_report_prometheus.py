"""An effect report read from a real Prometheus, over traffic the test produced: slow and
failing before the release, fast and healthy after it, a new feature used only after."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from releaser.config import load_config
from releaser.demo.ports import free_ports
from releaser.journal import Journal
from releaser.model import Release, RunStatus
from releaser.report.compute import build
from releaser.report.outbox import schedule
from releaser.report.render import render
from releaser.report.service import build_service, zone_of
from releaser.store import SqliteStore
from tests.harness.marks import starts
from tests.harness.prometheus import Prometheus

CONFIG = """\
project: shop
environments:
  prod:
    playbook: app
    metrics: {{source: prometheus, url: "{url}", instance: "127.0.0.1:{{PORT}}"}}
    hosts:
      - {{name: a, vars: {{PORT: "{ports[0]}"}}}}
      - {{name: b, vars: {{PORT: "{ports[1]}"}}}}
pipeline:
  - {{stage: gray, environment: prod, cohort: 50%}}
  - {{stage: full, environment: prod}}
report:
  delay: 0s
  window: 10s
  step: 2s
  metrics:
    requests: http_requests_total
    errors: 'http_requests_total{{code="500"}}'
    latency: http_request_duration_seconds
  features:
    batch-order: 'feature_used_total{{feature="batch-order"}}'
"""


class App:
    """One host's metrics: 100 requests a second; 10% fail and take 0.3 s before the release,
    2% fail and take 0.03 s after it, when batch orders appear."""

    def __init__(self, port: int):
        self.registry = CollectorRegistry()
        self.requests = Counter("http_requests", "", ["code"], registry=self.registry)
        self.latency = Histogram(
            "http_request_duration_seconds",
            "",
            registry=self.registry,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
        )
        self.feature = Counter("feature_used", "", ["feature"], registry=self.registry)
        self.server, self.thread = start_http_server(port, addr="127.0.0.1", registry=self.registry)

    def tick(self, released: bool, tick: int) -> None:
        """Ten requests (a tenth of a second)."""
        failed = (1 if tick % 5 == 0 else 0) if released else 1
        self.requests.labels("500").inc(failed)
        self.requests.labels("200").inc(10 - failed)
        for _ in range(10):
            self.latency.observe(0.03 if released else 0.3)
        if released:
            self.feature.labels("batch-order").inc(2)

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
@starts()  # the apps Prometheus scrapes
def traffic():
    ports = free_ports(2)
    apps = [App(port) for port in ports]
    state = {"released": False, "stop": False}

    def run() -> None:
        tick = 0
        while not state["stop"]:
            for app in apps:
                app.tick(state["released"], tick)
            tick += 1
            time.sleep(0.1)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield ports, state
    state["stop"] = True
    thread.join()
    for app in apps:
        app.close()


@pytest.mark.prometheus
def test_report_from_prometheus_range_queries(tmp_path, traffic):
    ports, state = traffic
    prometheus = Prometheus(tmp_path / "prometheus", [f"127.0.0.1:{p}" for p in ports])
    try:
        (tmp_path / "playbooks").mkdir()
        (tmp_path / "playbooks" / "app.yaml").write_text("hooks: {}\n")
        (tmp_path / "environments.yaml").write_text(CONFIG.format(url=prometheus.url, ports=ports))
        config = load_config(tmp_path / "environments.yaml")
        store = SqliteStore(config.state_path)
        store.add_release(Release("2.0.0", "/a.tgz", "ff", 1, features=["batch-order"]))
        time.sleep(16)  # Prometheus finds its targets and fills the window before the release
        gray = store.start_stage_run("2.0.0", "gray", "prod", "alice")
        time.sleep(1)
        state["released"] = True
        time.sleep(2)
        store.set_stage_run_status(gray.id, RunStatus.PASSED)
        full = store.start_stage_run("2.0.0", "full", "prod", "alice")
        store.set_stage_run_status(full.id, RunStatus.PASSED)
        report = schedule(config, store, Journal(store), "2.0.0", "prod")
        live_at = datetime.fromisoformat(report.live_at).timestamp()
        time.sleep(max(0.0, live_at + 12 - time.time()))  # the window after, and a scrape more

        document = build(config, store, "2.0.0", now=live_at + 10)
        # the month so far, from the same Prometheus: a month's range at the report's 2 s step would be
        # more points than Prometheus answers, so the service report reads it in coarser steps
        moment = datetime.fromtimestamp(live_at + 10, UTC)
        month = build_service(config, store, moment.astimezone(zone_of(config)).strftime("%Y-%m"), "prod", now=moment)
    finally:
        prometheus.stop()
    availability = month["availability"]
    assert availability["source"] == "prometheus" and availability["why"] is None, availability
    assert availability["requests"] > 2 * 100 * 10 * 0.5  # two hosts, 100 a second, over more than 10 s
    # 10% of requests failed before the release and 2% after: the month's ratio lies between
    assert 0.02 <= availability["errors"] / availability["requests"] <= 0.10
    assert availability["value"] == pytest.approx(1 - availability["errors"] / availability["requests"])
    assert availability["met"] is False  # far below 99.9%
    metrics = {m["key"]: m for m in document["metrics"]}
    # Every observation of a window lands in one bucket: the quantiles are exact there,
    # whatever increase() extrapolates. 0.3 s is in (0.25, 0.5]; 0.03 s in (0.025, 0.05].
    assert metrics["p95"]["before"] == pytest.approx(0.25 + 0.25 * 0.95)
    assert metrics["p95"]["after"] == pytest.approx(0.025 + 0.025 * 0.95)
    assert metrics["p50"]["after"] == pytest.approx(0.025 + 0.025 * 0.5)
    # Ratios of counters scraped together: extrapolation cancels out, up to the edges.
    assert metrics["error_rate"]["before"] == pytest.approx(0.10, abs=0.01)
    assert metrics["error_rate"]["after"] == pytest.approx(0.02, abs=0.01)
    # 2 hosts x 100 requests a second; 10 s are not a day: no rate a day.
    assert metrics["requests"]["before"] == pytest.approx(200, rel=0.2)
    assert metrics["requests"]["after"] == pytest.approx(200, rel=0.2)
    assert metrics["requests"]["after_per_day"] is None
    assert metrics["availability"]["before"] == 1.0 and metrics["availability"]["after"] == 1.0
    assert metrics["cpu"]["before"] is None  # not configured: no data
    feature = document["features"][0]
    assert feature["before_total"] is None  # the series did not exist before the release
    assert feature["after_total"] / feature["after_seconds"] == pytest.approx(2 * 20, rel=0.2)
    assert document["environment"]["source"] == "prometheus" and document["problems"] == []
    assert len(document["series"]["before"]) == 5 and len(document["series"]["after"]) == 5
    markdown = render(document).markdown
    assert "p95 response time fell from 488 ms to 48.8 ms (-90%)" in markdown
    assert "| batch-order | no data |" in markdown


def test_prometheus_down_reports_no_data_and_why(tmp_path, traffic):
    ports, _state = traffic
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "app.yaml").write_text("hooks: {}\n")
    (tmp_path / "environments.yaml").write_text(CONFIG.format(url=f"http://127.0.0.1:{free_ports(1)[0]}", ports=ports))
    config = load_config(tmp_path / "environments.yaml")
    store = SqliteStore(config.state_path)
    store.add_release(Release("2.0.0", "/a.tgz", "ff", 1))
    for stage in ("gray", "full"):
        run = store.start_stage_run("2.0.0", stage, "prod", "alice")
        store.set_stage_run_status(run.id, RunStatus.PASSED)
    document = build(config, store, "2.0.0", now=time.time() + 20)
    assert all(m["before"] is None and m["after"] is None for m in document["metrics"])
    assert len(document["problems"]) == 2 and "did not answer" in document["problems"][0]
    assert "did not answer" in render(document).markdown
