"""Metric sources and threshold checks against real demo app processes (and, below, a real Prometheus)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import pytest

from releaser.demo.ports import free_ports
from releaser.demo.traffic import Traffic
from releaser.health.base import CheckTarget, Verdict
from releaser.health.threshold import ThresholdCheck
from releaser.metrics import MetricsUnavailable, Selector, counter_increase
from releaser.metrics.scrape import ScrapeSource
from releaser.model import Environment, Host, MetricsSpec
from tests.harness.marks import starts


def test_selector_parsing_and_matching():
    sel = Selector.parse('demo_http_requests_total{code=~"5..", path!="/health"}')
    assert sel.name == "demo_http_requests_total"
    assert sel.matches("demo_http_requests_total", (("code", "503"), ("path", "/api")))
    assert not sel.matches("demo_http_requests_total", (("code", "200"), ("path", "/api")))
    assert not sel.matches("demo_http_requests_total", (("code", "500"), ("path", "/health")))
    assert Selector.parse("up").matchers == ()
    for bad in ("", "9bad", 'x{code="5"', "x{code=5}", 'x{code=~"("}'):
        with pytest.raises((ValueError, re.error)):
            Selector.parse(bad)


def test_counter_increase_handles_resets():
    assert counter_increase(None, 7) == 7
    assert counter_increase(5, 9) == 4
    assert counter_increase(9, 2) == 2  # the process restarted


@pytest.fixture
@starts()  # the demo app, as subprocesses
def apps(tmp_path):
    """Two demo app processes: `good` serves everything, `bad` fails half its batch orders."""
    ports = dict(zip(("good", "bad"), free_ports(2), strict=False))
    procs, hosts = [], {}
    for name, port in ports.items():
        root = tmp_path / name
        (root / "releases" / "r").mkdir(parents=True)
        failures = {"/api/orders/batch": 0.5} if name == "bad" else {}
        (root / "releases" / "r" / "app.json").write_text(json.dumps({"version": name, "failures": failures}))
        (root / "current").symlink_to("releases/r")
        procs.append(
            subprocess.Popen([sys.executable, "-m", "releaser.demo.app", "--root", str(root), "--port", str(port)])
        )
        hosts[name] = Host(name, "127.0.0.1", str(root), {"PORT": str(port)})
    deadline = time.monotonic() + 10
    spec = MetricsSpec(scrape_url="http://{address}:{PORT}/metrics")
    while True:
        try:
            ScrapeSource(spec).scrape_all(list(hosts.values()))
            break
        except MetricsUnavailable:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    yield hosts, ports
    for proc in procs:
        proc.terminate()
        proc.wait()


def test_scrape_threshold_on_error_ratio(apps):
    hosts, ports = apps
    spec = MetricsSpec(scrape_url="http://{address}:{PORT}/metrics")
    env = Environment("prod", "local", "app", tuple(hosts.values()), metrics=spec)
    check = ThresholdCheck(
        "errors",
        metric=Selector.parse('demo_http_requests_total{code=~"5.."}'),
        per=Selector.parse("demo_http_requests_total"),
        maximum=0.05,
    )
    source = ScrapeSource(spec)
    bad = CheckTarget(env, "r", (hosts["bad"],), (hosts["good"],), metrics=source)
    good = CheckTarget(env, "r", (hosts["good"],), (hosts["bad"],), metrics=source)
    bad_memory, good_memory = {}, {}
    # no traffic yet: no data, which is never a pass
    assert check.evaluate(bad, bad_memory).verdict is Verdict.INCONCLUSIVE
    assert check.evaluate(good, good_memory).verdict is Verdict.INCONCLUSIVE
    with Traffic({"prod": list(ports.values())}, rate=50):
        # a share within its bound is a pass once enough requests were counted to show it
        looks = [check.evaluate(good, good_memory)]
        deadline = time.monotonic() + 30
        while looks[-1].verdict is not Verdict.PASS and time.monotonic() < deadline:
            time.sleep(0.2)
            looks.append(check.evaluate(good, good_memory))
        assert looks[-1].verdict is Verdict.PASS and "shown on" in looks[-1].summary, looks[-1].summary
        assert good_memory["counted"][1] >= 100  # no pass on a handful of requests
        assert all(look.verdict is Verdict.INCONCLUSIVE for look in looks[:-1])
        assert any("not yet shown on" in look.summary for look in looks)
        result = check.evaluate(bad, bad_memory)
    assert result.verdict is Verdict.FAIL, result.summary
    assert "cohort" in result.summary and "max 0.05" in result.summary
    # the baseline scope of the bad target is the good host
    baseline = ThresholdCheck("b", metric=check.metric, per=check.per, scope="baseline", maximum=0.05).evaluate(bad, {})
    assert baseline.verdict is Verdict.INCONCLUSIVE and baseline.summary.startswith("baseline 0 within max 0.05")


def test_threshold_for_holds_before_failing(apps):
    hosts, _ = apps
    spec = MetricsSpec(scrape_url="http://{address}:{PORT}/metrics")
    env = Environment("prod", "local", "app", tuple(hosts.values()), metrics=spec)
    gauge = ThresholdCheck("info", metric=Selector.parse("demo_app_info"), maximum=0.5, hold_for=0.5)
    target = CheckTarget(env, "r", (hosts["good"],), metrics=ScrapeSource(spec))
    memory = {}
    first = gauge.evaluate(target, memory)
    assert first.verdict is Verdict.INCONCLUSIVE and "of 0.5s" in first.summary
    time.sleep(0.6)
    assert gauge.evaluate(target, memory).verdict is Verdict.FAIL


def test_unreachable_metrics_are_inconclusive(apps):
    _hosts, _ = apps
    gone = Host("gone", "127.0.0.1", "/", {"PORT": str(free_ports(1)[0])})
    spec = MetricsSpec(scrape_url="http://{address}:{PORT}/metrics")
    env = Environment("prod", "local", "app", (gone,), metrics=spec)
    check = ThresholdCheck("errors", metric=Selector.parse("demo_http_requests_total"), maximum=1)
    result = check.evaluate(CheckTarget(env, "r", (gone,), metrics=ScrapeSource(spec)), {})
    assert result.verdict is Verdict.INCONCLUSIVE and "no data" in result.summary
