"""Rollback windows: a failure after a stage passed, caught by `releaser watch` and rolled back."""

from __future__ import annotations

import json
import signal
import time

from tests.harness.project import HOSTS, break_host, live, wait_for_event


def test_watch_once_rolls_back_a_failure_inside_the_window(project):
    live(project, "1.0.0", "1.1.0")
    calm = project.cli("watch", "--once", "--json", check=True)
    windows = json.loads(calm.stdout)["windows"]
    assert {(w["environment"], w["release"]) for w in windows} == {
        ("dev", "1.1.0"),
        ("test", "1.1.0"),
        ("prod", "1.1.0"),
    }
    assert next(w for w in windows if w["environment"] == "prod")["stage"] == "full"
    assert project.status()["windows"] == windows  # status shows the same armed windows

    break_host(project, "web-3")
    proc = project.cli("watch", "--once", "--json")
    assert proc.returncode == 1, proc.stderr
    assert json.loads(proc.stdout)["rolled_back"] == ["1.1.0"]
    assert set(project.env_versions("prod").values()) == {"1.0.0"}
    assert set(project.env_versions("test").values()) == {"1.1.0"}  # other environments are their own
    status = project.status()
    assert next(r for r in status["releases"] if r["version"] == "1.1.0")["status"] == "rolled_back"
    events = json.loads(project.cli("history", "--release", "1.1.0", "--json", check=True).stdout)["events"]
    incident = next(e for e in events if e["kind"] == "incident")
    assert incident["environment"] == "prod" and incident["data"]["time_to_rollback"] < 60
    assert "web-3" in incident["data"]["reason"]
    # the prod window is closed now: nothing runs 1.1.0 there any more
    after = json.loads(project.cli("watch", "--once", "--json", check=True).stdout)["windows"]
    assert ("prod", "1.1.0") not in {(w["environment"], w["release"]) for w in after}


def test_windows_close(project):
    project.stage_options["selftest"] = "    rollback_window: 1s\n"
    project.write_config()
    project.register("1.0.0")
    project.cli("promote", "1.0.0", check=True)
    time.sleep(1.2)
    proc = project.cli("watch", "--once", "--json", check=True)
    assert json.loads(proc.stdout)["windows"] == []


def test_watch_killed_and_restarted_keeps_its_windows(project):
    live(project, "1.0.0", "1.1.0")
    first = project.spawn("watch", "--interval", "200ms")
    wait_for_event(project, "window.watching")
    first.send_signal(signal.SIGKILL)
    first.wait()
    second = project.spawn("watch", "--interval", "200ms")
    try:
        time.sleep(0.5)
        break_host(project, HOSTS["prod"][4])
        wait_for_event(project, "incident", timeout=60)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0  # stopped by a signal: a normal stop, its rollbacks were its job
    assert set(project.env_versions("prod").values()) == {"1.0.0"}
    kinds = [e["kind"] for e in json.loads(project.cli("history", "--json", check=True).stdout)["events"]]
    assert "rollback.done" in kinds
    # 1.1.0's three windows were announced once, by the first process; the second continued them
    assert kinds.count("window.watching") == 3


def test_a_rollback_that_cannot_finish_raises_an_alarm(project):
    import shutil

    live(project, "1.0.0", "1.1.0")
    # the last good release is gone from one host and its artifact from the disk: no way back
    shutil.rmtree(project.dir / "hosts" / "web-2" / "releases" / "1.0.0")
    (project.dir / "artifacts" / "app-1.0.0.tar.gz").unlink()
    break_host(project, "web-2")
    proc = project.cli("watch", "--once", "--json")
    assert proc.returncode == 4, proc.stderr
    assert json.loads(proc.stdout)["alarms"] == ["1.1.0"]
    events = json.loads(project.cli("history", "--json", check=True).stdout)["events"]
    alarm = next(e for e in events if e["kind"] == "alarm")
    assert "web-2" in alarm["message"]
    status = project.status()["environments"]["prod"]
    assert not status["consistent"]  # and the store says so


def test_a_window_whose_checks_cannot_see_says_so_once(project):
    """The metrics of prod become unreadable (the exporter gone on every host): the window is
    reported blind, journaled once, and nothing is rolled back on no evidence."""
    live(project, "1.0.0")
    (project.dir / "healthchecks" / "blind.yaml").write_text(
        "checks:\n  - name: errors\n    type: threshold\n    metric: demo_http_requests_total\n    max: 1\n"
    )
    config = project.dir / "environments.yaml"
    text = config.read_text()
    full = text.index("  - stage: full")
    text = text[:full] + text[full:].replace("checks: [health]", "checks: [health, blind]", 1)
    prod = text.index("  prod:\n")
    text = (
        text[:prod]
        + "  prod:\n    metrics: {source: scrape, scrape_url: 'http://127.0.0.1:1/metrics'}\n"
        + text[prod + 8 :]
    )
    config.write_text(text)
    for _ in range(2):
        proc = project.cli("watch", "--once", "--json")
        assert proc.returncode == 0, proc.stderr
        look = json.loads(proc.stdout)
        assert look["blind"] == ["1.0.0"] and look["rolled_back"] == []
    events = json.loads(project.cli("history", "--json", check=True).stdout)["events"]
    blind = [e for e in events if e["kind"] == "window.blind"]
    assert len(blind) == 1 and "errors: no data" in blind[0]["message"] and blind[0]["stage"] == "full"
