"""Rollback on alerts: Alertmanager's webhook received by `releaser watch --listen`; with a real
Prometheus rule and a real Alertmanager, a firing alert rolls the release in its window back."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import threading
import time
from datetime import UTC
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from releaser.alerts import BadPayload, firing_groups
from releaser.config import load_config
from releaser.demo.ports import free_ports
from releaser.store import SqliteStore
from tests.harness.marks import needs
from tests.harness.project import gated
from tests.harness.prometheus import Prometheus
from tests.harness.shop import wait_for

TOKEN = "alert-token-0123456789abcdef"
RULE = '    alerts: {match: \'{service="shop", env="prod"}\'}\n'


def _notification(status="firing", labels=None, starts="2026-12-03T06:00:00.123456789Z", group='{}:{alertname="X"}'):
    labels = labels if labels is not None else {"alertname": "CheckoutErrors", "service": "shop", "env": "prod"}
    return json.dumps(
        {
            "version": "4",
            "groupKey": group,
            "status": status,
            "receiver": "releaser",
            "alerts": [
                {
                    "status": status,
                    "labels": labels,
                    "startsAt": starts,
                    "annotations": {"summary": "checkout errors above 5%"},
                }
            ],
        }
    ).encode()


def _with_alert_rule(project) -> None:
    config = project.dir / "environments.yaml"
    config.write_text(config.read_text().replace("  prod:\n", "  prod:\n" + RULE))


def test_notifications_are_read_strictly_and_matched_per_environment(project):
    _with_alert_rule(project)
    envs = load_config(project.dir / "environments.yaml").environments
    assert envs["prod"].alerts is not None and envs["dev"].alerts is None
    [record] = firing_groups(_notification(), envs)
    assert (record.environment, record.alertname, record.starts_at, record.summary) == (
        "prod",
        "CheckoutErrors",
        "2026-12-03T06:00:00.123+00:00",
        "checkout errors above 5%",
    )
    assert firing_groups(_notification(labels={"alertname": "X", "service": "shop", "env": "dev"}), envs) == []
    assert firing_groups(_notification(status="resolved"), envs) == []
    for body in (
        b"not json",
        b"[]",
        b'{"alerts": []}',
        b'{"groupKey": "g", "alerts": [1]}',
        _notification(labels={"a": 1}),
        _notification(starts="yesterday"),
        _notification(starts="2026-12-03T06:00:00"),
        _notification(status="burning"),
    ):
        with pytest.raises(BadPayload):
            firing_groups(body, envs)


def test_bad_configuration_of_alerts_is_named(project):
    config = project.dir / "environments.yaml"
    for rule, words in (
        ("{match: 'up{env=\"prod\"}'}", "label matchers alone"),
        ("{rollback: true}", "required"),
        ("{match: '{env=~\"(\"}'}", "match"),
    ):
        config.write_text(
            config.read_text().replace("    playbook: app\n", f"    playbook: app\n    alerts: {rule}\n", 1)
        )
        proc = project.cli("validate")
        assert proc.returncode == 2 and "environments.dev.alerts" in proc.stderr and words in proc.stderr, proc.stderr
        project.write_config()


def _listening(project, port):
    env = {**project.environ(), "RELEASER_ALERT_TOKEN": TOKEN}
    return subprocess.Popen(
        [*_releaser(project), "watch", "--interval", "30s", "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _releaser(project):
    import sys

    return [sys.executable, "-m", "releaser.cli", "-C", str(project.dir)]


def _post(port, body, token=TOKEN):
    return requests.post(
        f"http://127.0.0.1:{port}/alerts",
        data=body,
        timeout=10,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )


def _ready(port, daemon):
    deadline = time.monotonic() + 60
    while True:
        try:
            return requests.get(f"http://127.0.0.1:{port}/alerts", timeout=1)
        except requests.ConnectionError:
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(daemon.communicate()) from None
            time.sleep(0.05)


def test_the_webhook_refuses_strangers_and_junk_and_aborts_a_promotion_once(project):
    _with_alert_rule(project)
    gate = gated(project)
    project.register("1.0.0")
    project.cli("run", "1.0.0", check=True)
    project.register("1.1.0")
    project.cli("run", "1.1.0", "--to", "test", check=True)
    store = SqliteStore(project.dir / ".releaser" / "state.db")
    port = free_ports(1)[0]
    daemon = _listening(project, port)
    try:
        assert _ready(port, daemon).status_code == 405
        assert _post(port, _notification(), token="wrong-token-0123456789").status_code == 401
        assert _post(port, b'{"alerts": "all of them"}').status_code == 400
        assert store.alerts() == []  # refused and junk change nothing

        gate.unlink()
        switches = sum(e.kind == "switch.started" for e in store.events())
        runner = project.spawn("promote", "1.1.0")  # gray, held at the gate
        wait_for(store, "switch.started", count=switches + 1)
        assert _post(port, _notification()).status_code == 200
        assert _post(port, _notification()).json()["message"] == "0 new"  # Alertmanager repeats: one episode
        wait_for(store, "abort.requested")
        gate.touch()
        assert runner.wait(timeout=120) == 1
    finally:
        gate.touch()
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
    assert set(project.env_versions("prod").values()) == {"1.0.0"}
    failed = next(e for e in store.events(release="1.1.0") if e.kind == "stage.failed")
    assert failed.data["cause"] == "abort" and "alert CheckoutErrors firing: checkout errors above 5%" in failed.message
    [alert] = store.alerts()
    assert alert.state == "done" and alert.outcome == "aborted gray of 1.1.0"
    store.close()


class Exporter:
    """One gauge, shop_errors, that the test raises to make the Prometheus rule fire."""

    def __init__(self):
        self.value = 0
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body = f"# TYPE shop_errors gauge\nshop_errors {exporter.value}\n".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.target = f"127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


class Alertmanager:
    """Debian's Alertmanager on a loopback port, sending every alert to one webhook with a bearer token."""

    def __init__(self, base, webhook: str):
        needs("alertmanager")
        binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
        if binary is None:
            pytest.fail("Alertmanager is not installed: the test command installs Debian's prometheus-alertmanager")
        base.mkdir(parents=True, exist_ok=True)
        self.port = free_ports(1)[0]
        (base / "alertmanager.yml").write_text(
            "route:\n  receiver: releaser\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1s\n"
            "  repeat_interval: 1h\nreceivers:\n  - name: releaser\n    webhook_configs:\n"
            f"      - url: '{webhook}'\n        send_resolved: true\n"
            f"        http_config: {{authorization: {{credentials: '{TOKEN}'}}}}\n"
        )
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={base / 'alertmanager.yml'}",
                f"--storage.path={base / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(base / "alertmanager.log", "ab"),
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{self.port}/-/ready", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((base / "alertmanager.log").read_text()[-2000:])
            time.sleep(0.1)

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.mark.prometheus
@pytest.mark.alertmanager
def test_a_prometheus_rule_firing_through_alertmanager_rolls_the_window_back(project, tmp_path):
    _with_alert_rule(project)
    for version in ("1.0.0", "1.1.0"):
        project.register(version)
        project.cli("run", version, check=True)
    store = SqliteStore(project.dir / ".releaser" / "state.db")
    port = free_ports(1)[0]
    daemon = _listening(project, port)
    exporter = Exporter()
    alertmanager = Alertmanager(tmp_path / "am", f"http://127.0.0.1:{port}/alerts")
    rules = tmp_path / "rules.yml"
    rules.write_text(
        "groups:\n  - name: shop\n    rules:\n      - alert: CheckoutErrors\n        expr: shop_errors > 0\n"
        "        labels: {service: shop, env: prod}\n"
        "        annotations: {summary: 'checkout errors above 5%'}\n"
    )
    prometheus = Prometheus(
        tmp_path / "prom",
        [exporter.target],
        extra_config=(
            f"rule_files: ['{rules}']\nalerting:\n  alertmanagers:\n"
            f"    - static_configs:\n        - targets: ['127.0.0.1:{alertmanager.port}']\n"
        ),
    )
    try:
        _ready(port, daemon)
        exporter.value = 7  # the release starts failing checkouts
        wait_for(store, "incident", timeout=120)
        wait_for(store, "alert.firing")
    finally:
        for part in (prometheus, alertmanager):
            part.stop()
        exporter.httpd.shutdown()
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
    assert set(project.env_versions("prod").values()) == {"1.0.0"}
    assert set(project.env_versions("test").values()) == {"1.1.0"}  # the rule matched prod only
    incident = next(e for e in store.events() if e.kind == "incident")
    assert incident.environment == "prod" and incident.data["cause"] == "alert"
    assert "alert CheckoutErrors firing: checkout errors above 5%" in incident.data["reason"]
    assert [a.outcome for a in store.alerts()] == ["rolled back 1.1.0"]
    store.close()


@pytest.mark.alertmanager
def test_the_alertmanager_check_fails_on_a_firing_alert_and_never_passes_blind(tmp_path):
    from datetime import datetime

    from releaser.health.alertmanager import AlertmanagerCheck
    from releaser.health.base import Verdict
    from releaser.metrics.selector import Selector

    alertmanager = Alertmanager(tmp_path / "am", "http://127.0.0.1:9/unused")
    url = f"http://127.0.0.1:{alertmanager.port}"
    check = AlertmanagerCheck("alerts", url, Selector.parse('{service="shop", env=~"prod|production"}'))
    try:
        assert check.evaluate(None, {}).verdict is Verdict.PASS
        now = datetime.now(UTC).isoformat()
        for labels in (
            {"alertname": "DiskFull", "service": "billing", "env": "prod"},
            {"alertname": "CheckoutErrors", "service": "shop", "env": "prod"},
        ):
            requests.post(
                f"{url}/api/v2/alerts",
                json=[{"labels": labels, "startsAt": now, "annotations": {"summary": "checkout errors above 5%"}}],
                timeout=10,
            ).raise_for_status()
        result = check.evaluate(None, {})
        assert (
            result.verdict is Verdict.FAIL and "CheckoutErrors" in result.summary and "DiskFull" not in result.summary
        )
    finally:
        alertmanager.stop()
    blind = check.evaluate(None, {})
    assert blind.verdict is Verdict.INCONCLUSIVE and blind.blind and "cannot read Alertmanager" in blind.summary


def test_an_alert_recorded_before_a_crash_is_acted_on_by_the_next_watch(project):
    """The receiver stores an alert before it answers 200; a watch killed before acting on it
    leaves it pending, and the next look (here `watch --once`) rolls back all the same."""
    from releaser.model import AlertRecord

    _with_alert_rule(project)
    for version in ("1.0.0", "1.1.0"):
        project.register(version)
        project.cli("run", version, check=True)
    store = SqliteStore(project.dir / ".releaser" / "state.db")
    assert store.record_alert(
        AlertRecord(
            '{}:{alertname="X"}',
            "prod",
            "2026-12-03T06:00:00.000+00:00",
            "CheckoutErrors",
            {"alertname": "CheckoutErrors"},
            "errors",
        )
    )
    proc = project.cli("watch", "--once", "--json")
    assert proc.returncode == 1 and json.loads(proc.stdout)["rolled_back"] == ["prod"], proc.stderr
    assert set(project.env_versions("prod").values()) == {"1.0.0"}
    assert [a.state for a in store.alerts()] == ["done"]
    assert project.cli("watch", "--once").returncode == 0  # acted on once
    store.close()
