"""The pipeline end to end on local-transport hosts, driven through the CLI as a user would."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from tests.harness.project import HOSTS, wait_for_event


def test_happy_path_through_all_stages(any_project):
    project = any_project
    project.register("1.0.0")
    proc = project.cli("run", "1.0.0", "--json", check=True)
    runs = json.loads(proc.stdout)["runs"]
    assert [(r["stage"], r["status"]) for r in runs] == [
        ("selftest", "passed"),
        ("test", "passed"),
        ("gray", "passed"),
        ("full", "passed"),
    ]
    status = project.status()
    for env, hosts in HOSTS.items():
        assert project.env_versions(env) == {h: "1.0.0" for h in hosts}
        assert {h: s["version"] for h, s in status["environments"][env]["hosts"].items()} == {h: "1.0.0" for h in hosts}
    release = status["releases"][0]
    assert release["status"] == "live"
    assert all(stage["started_at"] and stage["finished_at"] for stage in release["stages"])
    history = json.loads(project.cli("history", "--json", check=True).stdout)["events"]
    kinds = [e["kind"] for e in history]
    assert kinds.count("stage.passed") == 4 and "release.created" in kinds
    # the host keeps an append-only record of every step, its phase's ids, the run
    lines = [
        json.loads(line)
        for line in (project.dir / "hosts" / "web-1" / ".releaser" / "record.jsonl").read_text().splitlines()
    ]
    switch = [line for line in lines if line["action"] == "deploy"]
    assert [line["step"] for line in switch] == ["begin", "switched", "restarted", "verified", "served", "end"]
    assert {line["op"] for line in switch} == {switch[0]["op"]} and switch[-1]["rc"] == "0"
    assert switch[0]["release"] == "1.0.0" and switch[0]["run"].startswith("stage-")
    assert [line["step"] for line in lines if line["action"] == "prepare"] == ["begin", "unpacked", "prepared", "end"]


def test_promote_runs_one_stage_at_a_time_and_refuses_to_skip(project):
    project.register("1.0.0")
    refused = project.cli("promote", "1.0.0", "--to", "gray")
    assert refused.returncode == 2
    assert "would skip selftest, test" in refused.stderr
    assert project.current("web-1") is None and project.current("dev-1") is None
    assert project.status()["releases"][0]["stages"] == []

    project.cli("promote", "1.0.0", check=True)
    assert project.current("dev-1") == "1.0.0" and project.current("test-1") is None

    forced = project.cli(
        "promote", "1.0.0", "--to", "gray", "--force", "--reason", "hotfix for incident 42", check=True
    )
    assert forced.returncode == 0
    stages = {s["stage"]: s for s in project.status()["releases"][0]["stages"]}
    assert stages["test"]["status"] == "skipped" and stages["test"]["forced"]
    assert stages["test"]["reason"] == "hotfix for incident 42"
    assert stages["gray"]["status"] == "passed"
    assert project.current("test-1") is None
    gray_hosts = [h for h in HOSTS["prod"] if project.current(h) == "1.0.0"]
    assert len(gray_hosts) == 1
    events = json.loads(project.cli("history", "--json", check=True).stdout)["events"]
    assert any(e["kind"] == "stage.skipped" and "incident 42" in e["message"] for e in events)


# Where each stage's failure is planted: the stage, and a host of that stage that reports sick.
FAILURES = {"selftest": "dev-1", "test": "test-2", "gray": None, "full": None}


@pytest.mark.parametrize(
    "any_project,stage", [*(("sqlite", s) for s in FAILURES), ("postgresql", "full")], indirect=["any_project"]
)
def test_failing_check_at_each_stage_rolls_back(any_project, stage):
    project = any_project
    project.register("1.0.0")
    project.cli("run", "1.0.0", check=True)
    names = ["selftest", "test", "gray", "full"]
    # 1.1.0 passes every stage before `stage`, then one host of `stage` turns sick.
    gray_host = _gray_host(project)
    sick = FAILURES[stage] or (gray_host if stage == "gray" else next(h for h in HOSTS["prod"] if h != gray_host))
    project.register("1.1.0", fail_on=(sick,))
    proc = project.cli("run", "1.1.0", "--json")
    assert proc.returncode == 1, proc.stderr
    assert "rolled back" in proc.stderr
    env = {"selftest": "dev", "test": "test", "gray": "prod", "full": "prod"}[stage]
    assert set(project.env_versions(env).values()) == {"1.0.0"}
    status = project.status()
    release = next(r for r in status["releases"] if r["version"] == "1.1.0")
    assert release["status"] == "rolled_back"
    assert release["stages"][-1]["stage"] == stage and release["stages"][-1]["status"] == "rolled_back"
    assert status["environments"][env]["consistent"]
    assert all(h["version"] == "1.0.0" for h in status["environments"][env]["hosts"].values())
    # later stages never ran
    assert [s["stage"] for s in release["stages"]] == names[: names.index(stage) + 1]
    events = json.loads(project.cli("history", "--release", "1.1.0", "--json", check=True).stdout)["events"]
    failed = next(e for e in events if e["kind"] == "stage.failed")
    assert sick in failed["message"] and "503" in failed["message"]
    assert any(e["kind"] == "rollback.done" for e in events)
    incident = next(e for e in events if e["kind"] == "incident")
    assert incident["data"]["time_to_detect"] > 0 and incident["data"]["time_to_rollback"] > 0


def test_failed_prepare_step_rolls_back_the_hosts_that_switched(project):
    project.register("1.0.0")
    project.cli("run", "1.0.0", check=True)
    project.register("1.1.0", fail_prepare=True)
    proc = project.cli("promote", "1.1.0")
    assert proc.returncode == 1
    assert "prepare refused by FAIL_PREPARE" in proc.stderr
    assert project.current("dev-1") == "1.0.0"
    assert (project.dir / "hosts" / "dev-1" / "shared" / "running").read_text().strip() == "1.0.0"


def test_manual_rollback(any_project):
    project = any_project
    for version in ("1.0.0", "1.1.0"):
        project.register(version)
        project.cli("run", version, check=True)
    assert set(project.env_versions("prod").values()) == {"1.1.0"}
    missing_reason = project.cli("rollback", "prod")
    assert missing_reason.returncode == 2
    project.cli("rollback", "prod", "--reason", "customer complaint", check=True)
    assert set(project.env_versions("prod").values()) == {"1.0.0"}
    status = project.status()
    assert next(r for r in status["releases"] if r["version"] == "1.1.0")["status"] == "rolled_back"
    # forward again to a named release, prepared anew where it was cleaned up
    project.cli("rollback", "prod", "--to", "1.1.0", "--reason", "false alarm", check=True)
    assert set(project.env_versions("prod").values()) == {"1.1.0"}


def test_keep_releases_never_removes_current_or_previous(project):
    for version in ("1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0"):
        project.register(version)
        project.cli("promote", version, check=True)  # selftest only: dev-1
    releases = sorted(os.listdir(project.dir / "hosts" / "dev-1" / "releases"))
    assert len(releases) == 3  # keep_releases: 3
    assert "1.4.0" in releases and "1.3.0" in releases
    assert project.current("dev-1") == "1.4.0"


def test_second_promotion_is_refused_while_the_environment_is_locked(any_project):
    project = any_project
    project.register("1.0.0")
    project.cli("promote", "1.0.0", check=True)
    project.register("1.1.0")
    project.write_config(bake="1h")  # the holder bakes until the test stops it: no race with the clock
    first = project.spawn("promote", "1.1.0")
    try:
        wait_for_event(project, "bake.started")
        second = project.cli("promote", "1.1.0", "--json")
        assert second.returncode == 3
        assert "locked by" in second.stderr and f"pid {first.pid}" in second.stderr
        assert json.loads(second.stdout)["exit_code"] == 3
        lock = project.status()["environments"]["dev"]["lock"]
        assert lock["pid"] == first.pid and lock["command"] == "promote 1.1.0 --to selftest"
    finally:
        first.send_signal(signal.SIGTERM)  # ends the bake like a failed stage: rolled back, lock released
        assert first.wait(timeout=60) == 1
    assert project.status()["environments"]["dev"]["lock"] is None
    assert project.current("dev-1") == "1.0.0"


def test_unlock_clears_a_lock_and_journals_it(project):
    project.register("1.0.0")
    project.write_config(bake="30s")
    holder = project.spawn("promote", "1.0.0")
    wait_for_event(project, "bake.started")
    holder.send_signal(signal.SIGSTOP)  # a wedged holder: alive, not renewing
    try:
        assert project.cli("unlock", "dev").returncode == 2  # --force and --reason required
        project.cli("unlock", "dev", "--force", "--reason", "holder wedged", check=True)
        assert project.status()["environments"]["dev"]["lock"] is None
        events = json.loads(project.cli("history", "--json", check=True).stdout)["events"]
        assert any(e["kind"] == "lock.cleared" and "holder wedged" in e["message"] for e in events)
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize(
    "any_project,roll_back", [("sqlite", False), ("sqlite", True), ("postgresql", True)], indirect=["any_project"]
)
def test_kill_9_mid_stage_then_resume_ends_consistent(any_project, roll_back):
    project = any_project
    project.register("1.0.0")
    project.cli("run", "1.0.0", check=True)
    project.register("1.1.0")
    project.cli("run", "1.1.0", "--to", "gray", check=True)
    # full: one host at a time, each restart slow, so the kill lands between hosts
    project.write_config(prod_parallel=1, restart_delay="0.4")
    victim = project.spawn("promote", "1.1.0")
    deadline = time.monotonic() + 60
    while sum(v == "1.1.0" for v in project.env_versions("prod").values()) < 4:
        assert time.monotonic() < deadline and victim.poll() is None
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    mixed = set(project.env_versions("prod").values())
    assert mixed == {"1.0.0", "1.1.0"}
    status = project.status()
    assert status["environments"]["prod"]["interrupted"][0]["stage"] == "full"
    # a new promotion is refused until the interrupted one is resumed
    assert project.cli("promote", "1.1.0").returncode == 4

    project.write_config()
    args = ("resume", "--rollback") if roll_back else ("resume",)
    proc = project.cli(*args, "--json", check=True if not roll_back else 1)
    expected = "1.0.0" if roll_back else "1.1.0"
    assert set(project.env_versions("prod").values()) == {expected}, proc.stderr
    status = project.status()
    prod = status["environments"]["prod"]
    assert prod["consistent"] and prod["interrupted"] == [] and prod["lock"] is None
    assert all(h["version"] == expected for h in prod["hosts"].values())
    release = next(r for r in status["releases"] if r["version"] == "1.1.0")
    assert release["status"] == ("rolled_back" if roll_back else "live")
    events = json.loads(project.cli("history", "--json", check=True).stdout)["events"]
    assert any(e["kind"] == "lock.taken_over" for e in events)
    assert any(e["kind"] == "stage.resumed" for e in events)


def _gray_host(project) -> str:
    from releaser.cohort import gray_cohort
    from releaser.model import Host

    hosts = [Host(name, "127.0.0.1", "/") for name in HOSTS["prod"]]
    return gray_cohort("prod", hosts, 10)[0].name


def test_sigterm_mid_bake_rolls_the_stage_back(project):
    project.register("1.0.0")
    project.cli("promote", "1.0.0", check=True)
    project.register("1.1.0")
    project.write_config(bake="30s")
    victim = project.spawn("promote", "1.1.0")
    wait_for_event(project, "bake.started", "1.1.0")
    assert project.current("dev-1") == "1.1.0"
    victim.send_signal(signal.SIGTERM)
    _, stderr = victim.communicate(timeout=60)
    assert victim.returncode == 1, stderr
    assert "interrupted (SIGTERM)" in stderr
    assert project.current("dev-1") == "1.0.0"
    status = project.status()
    assert status["environments"]["dev"]["interrupted"] == [] and status["environments"]["dev"]["lock"] is None


def test_live_progress_on_a_terminal_plain_lines_otherwise(project):
    import pty
    import subprocess
    import sys

    project.register("1.0.0")
    plain = project.cli("promote", "1.0.0", check=True)
    assert "hosts done" not in plain.stderr and "prepare: 1/1 hosts ok" in plain.stderr
    assert "\x1b" not in plain.stderr

    main, secondary = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "releaser.cli", "-C", str(project.dir), "promote", "1.0.0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=secondary,
        env={**os.environ, "TERM": "xterm"},
    )
    os.close(secondary)
    output = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    assert proc.wait(timeout=60) == 0
    text = output.decode()
    assert "prepare: 2/2 hosts done, 0 failed, 0 pending" in text


def test_command_check_runs_on_the_hosts_and_fails_the_stage(project):
    (project.dir / "healthchecks" / "cmd.yaml").write_text(
        "checks:\n  - name: disk-ok\n    type: command\n"
        "    command: '! grep -qx {name} BROKEN_HOSTS 2>/dev/null'\n    timeout: 5s\n"
    )
    project.write_config(checks="health, cmd")
    project.register("1.0.0")
    project.cli("run", "1.0.0", "--to", "test", check=True)
    project.register("1.1.0", files={"BROKEN_HOSTS": "test-2\n"})
    project.cli("promote", "1.1.0", check=True)  # dev-1 is fine
    proc = project.cli("promote", "1.1.0")
    assert proc.returncode == 1
    assert "disk-ok: 1/2 hosts failed: test-2" in proc.stderr
    assert set(project.env_versions("test").values()) == {"1.0.0"}


@pytest.mark.parametrize("wave_bake", ["", "    wave_bake: 2s\n"])
def test_a_bake_between_waves_stops_the_rollout_before_the_next_wave(project, wave_bake):
    """A check that fails at a host's third look (a fault that shows after a while): one look
    between the waves lets the second wave go; a `wave_bake` watches long enough to stop it."""
    (project.dir / "healthchecks" / "later.yaml").write_text(
        "checks:\n  - name: later\n    type: command\n"
        "    command: 'n=$(cat looks 2>/dev/null || echo 0); echo $((n + 1)) > looks; [ \"$n\" -lt 2 ]'\n"
    )
    project.register("1.0.0")
    project.cli("run", "1.0.0", check=True)
    config = project.dir / "environments.yaml"
    full = "  - stage: full\n    environment: prod\n    checks: [health]\n    bake: 300ms\n"
    assert full in config.read_text()
    later = full.replace("[health]", "[health, later]").replace("300ms", "3s") + "    waves: [50%, 100%]\n" + wave_bake
    config.write_text(config.read_text().replace(full, later))
    project.register("1.1.0")
    project.cli("run", "1.1.0", "--to", "gray", check=True)
    proc = project.cli("promote", "1.1.0")
    assert proc.returncode == 1, proc.stderr
    events = json.loads(project.cli("history", "--release", "1.1.0", "--json", check=True).stdout)["events"]
    waves = [e["data"]["hosts"] for e in events if e["kind"] == "wave.started" and e["stage"] == "full"]
    (rolled_back,) = [e["data"]["hosts"] for e in events if e["kind"] == "rollback.done"]
    if wave_bake:
        assert "full: baking 2s after wave 1/2" in proc.stderr
        assert "checks failed after wave 1/2: later" in proc.stderr
        assert len(waves) == 1 and len(rolled_back) == 1 + len(waves[0])  # gray's host and wave 1 only
    else:  # caught in the final bake, once every host had it
        assert len(waves) == 2 and "after wave" not in proc.stderr and len(rolled_back) == len(HOSTS["prod"])
    assert set(project.env_versions("prod").values()) == {"1.0.0"}


@pytest.mark.parametrize("policy", ["fail", "hold"])
def test_no_metrics_is_never_a_pass(project, policy):
    """A metric source that cannot be read: inconclusive; when the bake ends, fail safe or hold."""
    (project.dir / "healthchecks" / "blind.yaml").write_text(
        "checks:\n  - name: errors\n    type: threshold\n    metric: demo_http_requests_total\n    max: 1\n"
    )
    project.stage_options["selftest"] = f"    on_inconclusive: {policy}\n"
    project.write_config(checks="blind")
    config = project.dir / "environments.yaml"
    config.write_text(
        config.read_text().replace(
            "    transport: local\n",
            "    transport: local\n    metrics: {source: scrape, scrape_url: 'http://127.0.0.1:1/metrics'}\n",
        )
    )
    project.register("1.0.0")
    proc = project.cli("promote", "1.0.0", "--json")
    stages = project.status()["releases"][0]["stages"]
    if policy == "fail":
        # fail safe; a first install has nothing to go back to: the host keeps it, and nobody is stuck
        assert proc.returncode == 1, proc.stderr
        assert "not enough evidence in" in proc.stderr
        assert "dev-1 keep 1.0.0: nothing ran there before it (a first install); promote a fixed release" in proc.stderr
        assert "rolled back (0 host(s))" not in proc.stderr  # nothing was
        assert stages[-1]["status"] == "rolled_back" and project.current("dev-1") == "1.0.0"
        assert project.status()["environments"]["dev"]["rollbacks"] == []  # nothing left open for resume
        assert project.cli("resume").returncode == 0
        project.write_config()  # the fix: checks that can see
        project.register("1.0.1")
        project.cli("promote", "1.0.1", check=True)
        assert project.current("dev-1") == "1.0.1"
    else:
        assert proc.returncode == 5, proc.stderr
        assert json.loads(proc.stdout)["exit_code"] == 5
        assert stages[-1]["status"] == "held" and "no data" in stages[-1]["reason"]
        assert project.current("dev-1") == "1.0.0"  # nothing changed: the host keeps the release
        assert project.status()["environments"]["dev"]["lock"] is None


def still_counters(directory: Path):
    """Each host's /metrics/<name> with counters that never move: a service nobody uses."""
    from functools import partial
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    (directory / "metrics").mkdir(parents=True)
    for host in HOSTS["prod"]:
        (directory / "metrics" / host).write_text("requests_total 5\nerrors_total 0\n")
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_an_undecided_canary_says_so_at_once_and_fails_safe_without_an_incident(project):
    """No traffic: the canary cannot decide, says so at its first look with the settings that
    would help, and the bake's end fails safe: rolled back as unproven, not as a fault."""
    counters = still_counters(project.dir / "static")
    try:
        (project.dir / "healthchecks" / "judge.yaml").write_text(
            "checks:\n  - {name: canary, type: canary, requests: requests_total, errors: errors_total}\n"
        )
        project.write_config(bake="1500ms")
        config = project.dir / "environments.yaml"
        gray = "  - stage: gray\n    environment: prod\n    checks: [health"
        config.write_text(
            config.read_text()
            # gray's bake: room for a second look, which forecasts, on a busy machine too
            .replace(gray + "]\n    bake: 1500ms\n", gray + ", judge]\n    bake: 5s\n")
            .replace(
                "  prod:\n    transport: local\n",
                f"  prod:\n    transport: local\n    metrics: {{source: scrape, scrape_url: "
                f"'http://127.0.0.1:{counters.server_address[1]}/metrics/{{name}}'}}\n",
            )
        )
        assert project.cli("validate").returncode == 0, project.cli("validate").stderr
        project.register("1.0.0")
        project.cli("run", "1.0.0", check=True)  # a first install: nothing to compare with
        project.register("1.1.0")
        proc = project.cli("run", "1.1.0", "--to", "gray", "--json")
        assert proc.returncode == 1, proc.stderr
        events = json.loads(project.cli("history", "--release", "1.1.0", "--json", check=True).stdout)["events"]
        kinds = [e["kind"] for e in events]
        forecasts = [e for e in events if e["kind"] == "bake.too_short"]
        assert len(forecasts) == 1 and "at the current rates it never decides" in forecasts[0]["message"]
        assert "a larger `cohort`" in forecasts[0]["message"] and "min_requests" in forecasts[0]["message"]
        assert kinds.index("bake.too_short") < kinds.index("stage.failed")
        assert "rollback.done" in kinds and "incident" not in kinds
        rollback = next(e for e in events if e["kind"] == "rollback.started")
        assert rollback["data"]["cause"] == "unproven"
        release = next(r for r in project.status()["releases"] if r["version"] == "1.1.0")
        assert "not enough evidence in" in release["reason"] and "to decide in time" in release["reason"]
        assert set(project.env_versions("prod").values()) == {"1.0.0"}
    finally:
        counters.shutdown()
        counters.server_close()


def test_a_first_install_that_broke_off_is_healed_by_a_promotion_not_a_redeploy(project):
    """A host in doubt with no release recorded (its first switch may or may not have happened):
    status names the promotion that heals it, never a redeploy that would refuse."""
    from releaser.store import SqliteStore

    project.register("1.0.0")
    project.cli("status", check=True)  # the state exists
    store = SqliteStore(project.dir / ".releaser" / "state.db")
    store.doubt_host("dev", "dev-1", "its switch to 1.0.0 may have happened: the connection dropped")
    store.close()
    dev = project.status()["environments"]["dev"]
    assert dev["heal"] == "releaser promote VERSION --to selftest"
    assert "nothing is recorded there to redeploy: promote a release" in project.cli("status", check=True).stdout
    refused = project.cli("redeploy", "dev", "--reason", "x")
    assert refused.returncode == 2 and "promote a release, which asks each host first" in refused.stderr
    project.cli("promote", "1.0.0", check=True)
    dev = project.status()["environments"]["dev"]
    assert dev["in_doubt"] == {} and dev["heal"] is None and dev["hosts"]["dev-1"]["version"] == "1.0.0"


def test_redeploy_heals_a_host_in_doubt_and_resume_does_not_call_it_fine(project):
    """A host whose app does not serve what `current` says is in doubt: status and resume name
    the command that heals it, and `redeploy` puts it back through the normal switch."""
    project.register("1.0.0")
    project.cli("promote", "1.0.0", check=True)
    (project.dir / "hosts" / "dev-1" / "shared" / "running").write_text("garbage\n")
    project.cli("state", "rebuild", check=True)  # asks the hosts: dev-1's app serves something else
    dev = project.status()["environments"]["dev"]
    assert "the app serves garbage" in dev["in_doubt"]["dev-1"] and dev["heal"] == "releaser redeploy dev --reason TEXT"
    assert "fix: `releaser redeploy dev --host dev-1 --reason TEXT`" in project.cli("status", check=True).stdout
    resumed = project.cli("resume")
    assert resumed.returncode == 4 and "dev-1 of dev is in doubt" in resumed.stderr
    assert "`releaser redeploy dev --host dev-1 --reason TEXT` puts it back on 1.0.0" in resumed.stderr

    assert project.cli("redeploy", "dev", "--host", "dev-9", "--reason", "x").returncode == 2
    healed = project.cli("redeploy", "dev", "--reason", "the app lost its state", "--json", check=True)
    assert json.loads(healed.stdout)["redeployed"] == {"dev-1": "1.0.0"}
    assert (project.dir / "hosts" / "dev-1" / "shared" / "running").read_text() == "1.0.0\n"  # restarted
    dev = project.status()["environments"]["dev"]
    assert dev["in_doubt"] == {} and dev["consistent"] and dev["heal"] is None
    history = project.cli("history", "--env", "dev", "--json", check=True)
    kinds = [e["kind"] for e in json.loads(history.stdout)["events"]]
    assert (
        kinds.index("redeploy.started")
        < kinds.index("switch.started", kinds.index("redeploy.started"))
        < kinds.index("redeploy.finished")
    )
    record = (project.dir / "hosts" / "dev-1" / ".releaser" / "record.jsonl").read_text()
    assert '"action": "redeploy"' in record
    assert project.cli("resume").returncode == 0
    again = project.cli("redeploy", "dev", "--reason", "nothing to do", check=True)
    assert "none is in doubt" in again.stdout
