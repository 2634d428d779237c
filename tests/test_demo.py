"""`releaser demo` end to end, as a newcomer runs it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from releaser.processes import pid_alive

pytestmark = pytest.mark.real  # the demo runs releaser, its apps and nginx as subprocesses


def run_demo(directory) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "releaser.cli", "demo", "--dir", str(directory), "--json"],
        capture_output=True,
        text=True,
        timeout=180,
    )


def demo_processes(directory) -> list[int]:
    pids = []
    for pidfile in (directory / "hosts").glob("*/shared/app.pid"):
        pid = int(pidfile.read_text())
        if pid_alive(pid):
            pids.append(pid)
    found = subprocess.run(["pgrep", "-f", f"releaser.demo.app --root {directory}"], capture_output=True, text=True)
    return pids + [int(p) for p in found.stdout.split()]


def test_demo_end_to_end(tmp_path):
    directory = tmp_path / "sandbox"
    proc = run_demo(directory)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["releases"] == {"1.0.0": "superseded", "1.1.0": "live", "1.2.0": "rolled_back"}
    assert "SECONDS" in proc.stderr  # it says the bake times are seconds
    assert "where to look next" in proc.stderr
    # the judge's verdict on the bad release is shown and explained
    assert "canary: error ratio: cohort" in proc.stderr and "=> regression" in proc.stderr
    assert "prod is behind nginx" in proc.stderr  # the test command installs nginx
    assert demo_processes(directory) == []

    status = json.loads(
        subprocess.run(
            [sys.executable, "-m", "releaser.cli", "-C", str(directory), "status", "--json"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    prod = status["environments"]["prod"]["hosts"]
    assert len(prod) == 10 and {h["version"] for h in prod.values()} == {"1.1.0"}
    releases = {r["version"]: r for r in status["releases"]}
    assert releases["1.2.0"]["status"] == "rolled_back"
    assert [s["stage"] for s in releases["1.2.0"]["stages"]] == ["selftest", "test", "gray"]
    assert [s["status"] for s in releases["1.1.0"]["stages"]] == ["passed"] * 4
    assert [s["status"] for s in releases["1.0.0"]["stages"]] == ["passed"] * 4  # a first install, unforced
    history = json.loads(
        subprocess.run(
            [sys.executable, "-m", "releaser.cli", "-C", str(directory), "history", "--json"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )["events"]
    not_applicable = [e for e in history if e["kind"] == "check.not_applicable"]
    assert [e["release"] for e in not_applicable] == ["1.0.0"] and "first install" in not_applicable[0]["message"]
    passes = [e for e in history if e["kind"] == "checks.pass" and e["release"] == "1.1.0" and e["stage"] == "gray"]
    assert "=> no regression" in passes[0]["message"]  # a pass is evidence, shown by the judge
    # gray by users: 10% of prod's users went to 1.2.0, and its rollback sent them all back before any switch
    assert any(
        e["kind"] == "route.changed" and e["release"] == "1.2.0" and e["data"]["route"]["share"] == 10.0
        for e in history
    )
    failed = max(i for i, e in enumerate(history) if e["kind"] == "stage.failed" and e["release"] == "1.2.0")
    back = next(i for i in range(failed, len(history)) if history[i]["kind"] == "route.changed")
    assert back < next(i for i in range(failed, len(history)) if history[i]["kind"] == "switch.started")
    assert history[back]["data"]["route"]["share"] == 0.0
    assert status["environments"]["prod"]["route"]["users_on_new"] == 0.0
    # the demo closed the windows it opened: nothing is watched, and a look rolls nothing back
    assert status["windows"] == []
    look = subprocess.run(
        [sys.executable, "-m", "releaser.cli", "-C", str(directory), "watch", "--once", "--json"],
        capture_output=True,
        text=True,
    )
    assert look.returncode == 0 and json.loads(look.stdout)["rolled_back"] == []
    # 1.1.0's effect report: written, its path printed, measured from the samples releaser recorded
    report = directory / ".releaser" / "reports" / "1.1.0" / "report.html"
    assert summary["report"] == str(report) and str(report) in proc.stderr and report.is_file()
    document = json.loads(report.with_name("report.json").read_text())
    metrics = {m["key"]: m for m in document["metrics"]}
    assert metrics["requests"]["before"] and metrics["requests"]["after"]
    assert metrics["p95"]["assessment"] == "better"  # 1.1.0 answers faster than 1.0.0
    assert document["features"][0]["before_total"] is None and document["features"][0]["after_total"] > 0
    assert [r["state"] for r in status["reports"] if r["release"] == "1.1.0"] == ["sent"]


def test_demo_refuses_a_directory_it_did_not_build(tmp_path):
    (tmp_path / "mine.txt").write_text("precious")
    proc = run_demo(tmp_path)
    assert proc.returncode == 2
    assert (tmp_path / "mine.txt").read_text() == "precious"


def test_a_second_demo_in_the_same_directory_stops_the_first_and_replaces_it(tmp_path):
    """What `releaser demo --dir` does first with a sandbox it built before (one still running
    an app, as after a demo stopped half-way)."""
    from releaser.demo.ports import free_ports
    from releaser.demo.sandbox import prepare_directory

    directory = prepare_directory(tmp_path / "sandbox")
    shared = directory / "hosts" / "dev-1" / "shared"
    shared.mkdir(parents=True)
    app = subprocess.Popen(
        [sys.executable, "-m", "releaser.demo.app", "--root", str(shared.parent), "--port", str(free_ports(1)[0])]
    )
    try:
        (shared / "app.pid").write_text(f"{app.pid}\n")
        (directory / "left.txt").write_text("from the first demo")
        assert prepare_directory(directory) == directory.resolve()
        assert app.wait(timeout=10) == -signal.SIGTERM  # stopped, not left serving
        assert sorted(p.name for p in directory.iterdir()) == [".releaser-demo"]
    finally:
        if app.poll() is None:
            app.kill()
