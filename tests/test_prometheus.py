"""Gray deployment judged by a real Prometheus scraping the demo app processes."""

from __future__ import annotations

import json
import re
import sys
import threading
import time

import pytest

from releaser.config import load_config
from releaser.demo import sandbox
from releaser.demo.traffic import OTHER_PATHS, PROD_PATHS, Traffic
from releaser.errors import StageFailed
from releaser.journal import Journal
from releaser.model import ReleaseStatus, RunStatus
from releaser.pipeline import Pipeline
from releaser.releases import create_release
from releaser.store import open_store
from tests.harness.marks import starts
from tests.harness.prometheus import Prometheus

ERRORS = """\
checks:
  - name: error-ratio
    type: threshold
    scope: cohort
    # 1 - ok/all rather than errors/all: a release's first 5xx makes a new series that rate()
    # sees only from its second scrape, and `or vector(0)` would read that gap as no errors.
    query: >
      1 - sum(rate(demo_http_requests_total{code=~"2..", instance=~"$instances"}[10s]))
      / sum(rate(demo_http_requests_total{instance=~"$instances"}[10s]))
    max: 0.05
"""


@pytest.fixture
@starts("prometheus")
def fleet(tmp_path, request):
    """The demo sandbox, its gray and full stages judged only by Prometheus-backed checks:
    the threshold check, or (parametrized with a check set name) that check set on gray."""
    gray_checks = getattr(request, "param", "errors")
    directory = sandbox.prepare_directory(tmp_path / "sandbox")
    layout = sandbox.build(directory, sys.executable)
    prometheus = Prometheus(tmp_path / "prometheus", [f"127.0.0.1:{p}" for ports in layout.values() for p in ports])
    try:
        config = directory / "environments.yaml"
        text = config.read_text().replace(
            sandbox.METRICS,
            f"    metrics:\n      source: prometheus\n      url: {prometheus.url}\n"
            '      instance: "127.0.0.1:{PORT}"\n      timeout: 2s\n',
        )
        assert "source: prometheus" in text
        for stage, checks in (("gray", gray_checks), ("full", "errors")):
            head = text.index(f"  - stage: {stage}")
            block_end = text.find("  - stage:", head + 5)
            block = text[head : block_end if block_end > 0 else len(text)]
            new = re.sub(r"checks: \[[a-z-]+\]", f"checks: [{checks}]", block)
            if "canary" not in checks:  # a threshold decides at once: a fixed bake
                new = re.sub(r"bake: \{[^}]*\}", "bake: 6s", new)
            text = text.replace(block, new)
        config.write_text(text)
        (directory / "healthchecks" / "errors.yaml").write_text(ERRORS)
        loaded = load_config(config)
        store = open_store(loaded)
        events = []
        pipeline = Pipeline(loaded, store, Journal(store, events.append))
        for version, spec in sandbox.RELEASES.items():
            create_release(
                store,
                pipeline.journal,
                version,
                directory / "artifacts" / f"demo-app-{version}.tar.gz",
                spec["notes"],
                tuple(spec["features"]),
            )
        with Traffic(layout, rate=10) as traffic:
            yield pipeline, store, prometheus, events, traffic
    finally:
        sandbox.stop_apps(directory)
        prometheus.stop()
        if "store" in locals():
            store.close()


def _stage_failure(store, version: str) -> str:
    return next(e.message for e in store.events(release=version) if e.kind == "stage.failed")


def test_threshold_on_prometheus_passes_good_and_rolls_back_bad(fleet):
    pipeline, store, _prometheus, _, _ = fleet
    pipeline.run("1.0.0")
    pipeline.run("1.1.0")
    assert store.get_release("1.1.0").status is ReleaseStatus.LIVE
    with pytest.raises(StageFailed, match=r"gray of 1\.2\.0 failed"):
        pipeline.run("1.2.0")
    assert "error-ratio: cohort" in _stage_failure(store, "1.2.0")
    assert {s.version for s in store.host_states("prod").values()} == {"1.1.0"}
    assert store.get_release("1.2.0").status is ReleaseStatus.ROLLED_BACK


def test_prometheus_stopped_mid_bake_is_inconclusive_then_fails_safe(fleet):
    pipeline, store, prometheus, events, _ = fleet
    pipeline.run("1.0.0")
    pipeline.run("1.1.0", to_stage="test")
    stopper = threading.Thread(target=lambda: (_wait_for(events, "bake.started", "1.1.0"), prometheus.stop()))
    stopper.start()
    with pytest.raises(StageFailed, match="not enough evidence in"):
        pipeline.promote("1.1.0")  # gray: a good release, but nobody can see that it is
    stopper.join()
    assert "no data" in _stage_failure(store, "1.1.0") and "did not answer" in _stage_failure(store, "1.1.0")
    assert {s.version for s in store.host_states("prod").values()} == {"1.0.0"}
    assert store.get_release("1.1.0").status is ReleaseStatus.ROLLED_BACK


def _wait_for(events, kind, release, timeout=60):
    import time

    deadline = time.monotonic() + timeout
    while not any(e.kind == kind and e.stage == "gray" and e.release == release for e in events):
        assert time.monotonic() < deadline
        time.sleep(0.05)


@pytest.mark.prometheus
def test_prometheus_source_with_basic_auth_from_the_environment(tmp_path, monkeypatch):
    from releaser.metrics import MetricsUnavailable
    from releaser.metrics.prometheus import PrometheusSource
    from releaser.model import MetricsSpec

    prometheus = Prometheus(tmp_path / "prometheus", [], users={"releaser": "s3cret-pw"})
    try:
        spec = MetricsSpec(
            source="prometheus", url=prometheus.url, username_env="PROM_USER", password_env="PROM_PASSWORD"
        )
        monkeypatch.setenv("PROM_USER", "releaser")
        monkeypatch.setenv("PROM_PASSWORD", "s3cret-pw")
        assert PrometheusSource(spec).query("vector(42)")[0].value == 42.0
        now = time.time()
        series = PrometheusSource(spec).query_range("vector(1)", now - 10, now, 5)
        assert len(series) == 1 and len(series[0].points) >= 2
        monkeypatch.setenv("PROM_PASSWORD", "wrong")
        with pytest.raises(MetricsUnavailable) as info:
            PrometheusSource(spec).query("vector(42)")
        assert "401" in str(info.value) and "s3cret" not in str(info.value)
        monkeypatch.setenv("PROM_PASSWORD", "s3cret-pw")
        with pytest.raises(MetricsUnavailable, match="query error"):
            PrometheusSource(spec).query("vector(")
    finally:
        prometheus.stop()


FOR_REGRESSION = """\
checks:
  - name: errors-for
    type: threshold
    scope: cohort
    query: >
      1 - sum(rate(demo_http_requests_total{code=~"2..", instance=~"$instances"}[10s]))
      / sum(rate(demo_http_requests_total{instance=~"$instances"}[10s]))
    max: 0.05
    for: 3s
"""


def _cli(directory, *args):
    from click.testing import CliRunner

    from releaser.cli import cli

    return CliRunner(env={"NO_COLOR": "1"}).invoke(cli, ["-C", str(directory), *args], catch_exceptions=False)


def _gray_checks(directory, checks: str) -> None:
    config = directory / "environments.yaml"
    text = config.read_text()
    head = text.index("  - stage: gray")
    end = text.index("  - stage: full")
    config.write_text(text[:head] + re.sub(r"checks: \[[a-z-]+\]", f"checks: [{checks}]", text[head:end]) + text[end:])


def _cron_until_rolled_back(directory, release: str, limit: float = 120) -> list[dict]:
    """`watch --once` every second, each a fresh process state, until one rolls `release` back."""
    looks = []
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        result = _cli(directory, "watch", "--once", "--json")
        looks.append(json.loads(result.stdout))
        if release in looks[-1]["rolled_back"]:
            assert result.exit_code == 1
            return looks
        time.sleep(1)
    raise AssertionError(f"{len(looks)} cron looks never rolled {release} back: {looks[-1]}")


@pytest.mark.parametrize("fleet", ["demo-canary"], indirect=True)
def test_cron_watch_once_catches_for_and_canary_regressions(fleet):
    """A bad release passes gray while no user places batch orders; then they do. `watch --once`
    from a cron-like loop, remembering nothing itself, catches the regression in the window:
    first a threshold with `for: 3s`, then (re-promoted from gray, never straight to full) the
    canary judge, whose counts continue from look to look in the store. Before that: a first
    install and a good release judged by the canary on Prometheus; after: the bad release
    caught in its gray bake."""
    pipeline, store, _, _, traffic = fleet
    directory = pipeline.config.path.parent
    (directory / "healthchecks" / "errors-for.yaml").write_text(FOR_REGRESSION)
    pipeline.run("1.0.0")  # a first install, unforced: the canary does not apply, and says so
    assert any(e.kind == "check.not_applicable" and e.release == "1.0.0" for e in store.events(release="1.0.0"))
    pipeline.run("1.1.0")  # gray passes once the judge has shown the cohort no worse
    assert store.get_release("1.1.0").status is ReleaseStatus.LIVE
    for checks in ("errors-for", "demo-canary"):
        _gray_checks(directory, checks)
        traffic.paths["prod"] = OTHER_PATHS  # nobody places batch orders: 1.2.0 looks healthy
        promoted = _cli(directory, "run", "1.2.0", "--to", "gray", "--json")
        assert promoted.exit_code == 0, promoted.stderr
        assert [r for r in store.stage_runs("1.2.0") if r.stage == "gray"][-1].status is RunStatus.PASSED
        traffic.paths["prod"] = PROD_PATHS  # now they do
        looks = _cron_until_rolled_back(directory, "1.2.0")
        reason = next(e.message for e in reversed(store.events(release="1.2.0")) if e.kind == "rollback.started")
        if checks == "errors-for":
            assert len(looks) >= 2 and re.search(r"errors-for: cohort .* outside max 0.05 for \d+s", reason)
        else:
            assert "canary: error ratio: cohort" in reason and "=> regression" in reason
        assert {s.version for s in store.host_states("prod").values()} == {"1.1.0"}
        run = [r for r in store.stage_runs("1.2.0") if r.stage == "gray"][-1]
        watching = [e for e in store.events(release="1.2.0") if e.kind == "window.watching" and e.data["run"] == run.id]
        assert len(watching) == 1  # announced by the first look; the later ones continued it
    assert [r.stage for r in store.stage_runs("1.2.0")] == ["selftest", "test", "gray", "gray"]
    # with batch orders placed from the start, the judge catches 1.2.0 in its gray bake
    with pytest.raises(StageFailed, match=r"gray of 1\.2\.0 failed"):
        pipeline.run("1.2.0")
    reason = [e.message for e in store.events(release="1.2.0") if e.kind == "stage.failed"][-1]
    assert "canary: error ratio: cohort" in reason and "=> regression" in reason
    assert {s.version for s in store.host_states("prod").values()} == {"1.1.0"}
