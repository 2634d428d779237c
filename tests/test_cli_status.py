"""Status that answers at a glance, release list/show, rollback --dry-run, help and completion,
and progress that does not repeat itself."""

from __future__ import annotations

import json
import signal
import time

import click
from click.shell_completion import ShellComplete

from releaser.cli import cli
from releaser.terminal import Collapser, summarised
from tests.harness.project import HOSTS


def _wait(predicate, what: str, timeout: float = 60.0):
    """Poll a condition the test does not control the timing of (a process's first look)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_status_names_the_current_release_superseded_ones_and_why_one_failed_and_rollback_plans(project):
    with (project.dir / "environments.yaml").open("a") as config:
        config.write("report:\n  delay: 0s\n  window: 1m\n")
    for version in ("1.0.0", "1.1.0"):
        project.register(version)
        project.cli("run", version, check=True)
    sick = HOSTS["prod"][0]
    project.register("1.2.0", fail_on=(sick,))
    assert project.cli("run", "1.2.0").returncode == 1
    project.cli("report", "due", "--send", check=True)

    document = project.status()
    assert document["environments"]["prod"]["current"] == "1.1.0"
    releases = {r["version"]: r for r in document["releases"]}
    assert releases["1.0.0"]["status"] == "superseded" and releases["1.1.0"]["status"] == "live"
    assert releases["1.2.0"]["status"] == "rolled_back" and sick in releases["1.2.0"]["reason"]
    assert releases["1.2.0"]["runs_on"] == ["dev", "test"]
    reports = {r["release"]: r for r in document["reports"]}
    assert reports["1.1.0"]["delivered_to"] == 0  # no mail configured: written only

    text = project.cli("status", check=True).stdout  # a pipe: the whole text, one time format
    assert f"prod: 1.1.0 on {len(HOSTS['prod'])}/{len(HOSTS['prod'])} hosts" in text
    assert "1.0.0          superseded" in text and "why: " in text and "503" in text
    assert "effect report of 1.1.0: written only (no recipients) 20" in text
    assert " UTC" in text and "T" not in text.split("effect report of 1.1.0: ")[1][:30]
    # rollback windows are open (1h by default) and nothing watches them: status says so
    assert "watch: NOT running; no watch has ever run here" in text

    listed = project.cli("release", "list", check=True).stdout.splitlines()
    assert [line.split()[:2] for line in listed if not line.startswith(" ")] == [
        ["1.2.0", "rolled_back"],
        ["1.1.0", "live"],
        ["1.0.0", "superseded"],
    ]
    shown = project.cli("release", "show", "1.2.0", check=True).stdout
    assert shown.startswith("1.2.0: rolled_back — ") and "rolled_back  on prod" in shown
    assert "runs on   dev: 1 host(s) (dev-1)" in shown
    assert project.cli("release", "show", "9.9.9").returncode == 2

    # rollback --dry-run: the plan from asking the hosts, and nothing changed
    events = len(json.loads(project.cli("history", "--json", check=True).stdout)["events"])
    plan = project.cli("rollback", "prod", "--dry-run", check=True)
    assert f"prod: {len(HOSTS['prod'])} of {len(HOSTS['prod'])} host(s) would be switched back" in plan.stdout
    assert "1.1.0          -> 1.0.0" in plan.stdout  # not to 1.2.0, which the hosts were rolled back from
    document = json.loads(project.cli("rollback", "prod", "--dry-run", "--json", check=True).stdout)
    assert document["plan"][HOSTS["prod"][1]] == {"runs": "1.1.0", "to": "1.0.0"}
    assert set(project.env_versions("prod").values()) == {"1.1.0"}
    assert len(json.loads(project.cli("history", "--json", check=True).stdout)["events"]) == events
    assert project.cli("rollback", "prod").returncode == 2  # without --dry-run, a reason is needed


def test_status_tells_whether_a_watch_is_running(project):
    project.register("1.0.0")
    project.cli("run", "1.0.0", check=True)
    project.cli("watch", "--once", check=True)
    once = project.cli("status", check=True).stdout
    assert "watch: NOT running; last look" in once and "(--once)" in once

    daemon = project.spawn("watch", "--interval", "1s")
    try:
        alive = _wait(
            lambda: [w for w in project.status()["watch"]["watchers"] if w["alive"]], "the watch's first look"
        )
        assert alive[0]["pid"] == daemon.pid and alive[0]["mode"] == "daemon"
        assert f"watch: running, pid {daemon.pid}" in project.cli("status", check=True).stdout
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0
    document = project.status()
    assert document["watch"]["running"] is False
    assert "watch: NOT running" in project.cli("status", check=True).stdout


def test_every_command_has_examples_and_exit_codes_in_its_help():
    def commands(group: click.Group, prefix: tuple[str, ...] = ()):
        for name in group.list_commands(click.Context(group)):
            command = group.get_command(click.Context(group), name)
            if isinstance(command, click.Group):
                yield from commands(command, (*prefix, name))
            else:
                yield (*prefix, name), command

    found = list(commands(cli))
    assert len(found) >= 17
    for path, command in found:
        with click.Context(command, info_name=" ".join(path)) as ctx:
            text = command.get_help(ctx)
        examples = text.split("Examples:\n")[1].split("\n\n")[0]
        assert "releaser " + " ".join(path) in examples or "releaser " in examples, path
        assert "Exit codes:\n    0  " in text and "2  usage or configuration error" in text, path
    promote = dict(found)[("promote",)]
    with click.Context(promote, info_name="promote") as ctx:
        assert "5  held: the checks were inconclusive, or the stage awaits approval" in promote.get_help(ctx)


def test_completion_offers_environments_and_release_versions(project):
    for version in ("1.0.0", "1.1.0"):
        project.register(version)

    def complete(args: list[str], incomplete: str) -> list[str]:
        return [
            c.value for c in ShellComplete(cli, {}, "releaser", "_RELEASER_COMPLETE").get_completions(args, incomplete)
        ]

    assert complete(["-C", str(project.dir), "promote"], "1.") == ["1.1.0", "1.0.0"]
    assert complete(["rollback", "-C", str(project.dir)], "p") == ["prod"]
    assert complete(["-C", str(project.dir), "history", "--env"], "") == ["dev", "test", "prod"]
    assert complete(["-C", "/nonexistent", "promote"], "") == []  # never an error
    script = project.cli("completion", "bash", check=True).stdout
    assert "_RELEASER_COMPLETE=bash_complete" in script


def test_identical_progress_lines_collapse():
    lines, now = [], [0.0]

    def write(text, _color, rewrite):
        lines.append(("rewrite " if rewrite else "") + text)

    log = Collapser(write, tty=False, every=300.0, clock=lambda: now[0])
    for second in range(0, 360, 30):  # a 6-minute bake looked at every 30 s
        now[0] = float(second)
        log.line("checks: pass: health: pass (10 hosts healthy)")
    now[0] = 361.0
    log.line("full: 1.1.0 passed", repeatable=False)
    assert lines == [
        "checks: pass: health: pass (10 hosts healthy)",
        "checks: pass: health: pass (10 hosts healthy) x11 over 5m",
        "checks: pass: health: pass (10 hosts healthy) x12 over 6m",
        "full: 1.1.0 passed",
    ]
    lines.clear()
    tty = Collapser(write, tty=True, clock=lambda: now[0])
    for _ in range(3):
        tty.line("checks: pass")
    assert lines == ["checks: pass", "rewrite checks: pass x2 over 0s", "rewrite checks: pass x3 over 0s"]


def test_a_bake_prints_each_look_once_with_its_count(project):
    project.register("1.0.0")
    project.write_config(bake="1s")  # looks 100 ms apart: as many as a busy machine fits in a second

    def looks_journaled(stage: str) -> int:
        events = json.loads(project.cli("history", "--release", "1.0.0", "--json", check=True).stdout)["events"]
        return sum(e["kind"] == "checks.pass" and e["stage"] == stage for e in events)

    proc = project.cli("promote", "1.0.0", check=True)
    looks = [line for line in proc.stderr.splitlines() if "  checks: pass: health: pass" in line]
    assert len(looks) == 2 and " over " in looks[1], proc.stderr  # the first look, then the count
    assert int(looks[1].split(" x")[1].split()[0]) == looks_journaled("selftest") >= 2
    verbose = project.cli("promote", "1.0.0", "--to", "test", "--verbose", check=True)
    shown = [line for line in verbose.stderr.splitlines() if "  checks: pass" in line]
    assert len(shown) == looks_journaled("test") >= 2  # each look on a line of its own


def test_long_verdicts_are_summarised_to_what_was_measured_and_concluded():
    verdict = (
        "canary: error ratio: cohort 23.810% (5/21) vs baseline 0.000% (0/197), events only in the cohort: "
        "worse than x1.2 the baseline, shown with evidence 594 >= 200 => regression; requests slower than "
        "0.005s: cohort 38.095% (8/21) vs baseline 59.898% (118/197), x0.64: not decided yet; about 13 more "
        "cohort requests (~1s at the current rate) would show it no worse than x1.5 the baseline"
    )
    short = summarised(verdict)
    assert len(short) <= 160
    assert short.startswith("canary: error ratio: cohort 23.810% (5/21) vs baseline 0.000% (0/197) … => regression")
    assert summarised("checks: pass") == "checks: pass"


def test_a_live_promotion_is_in_progress_not_interrupted(project):
    """A stage whose process is alive and at work is listed as running; only runs whose process
    is gone are `interrupted` (those are what `resume` is for)."""
    entered, gate = project.dir / "entered", project.dir / "gate"
    playbook = project.dir / "playbooks" / "app.yaml"
    playbook.write_text(
        playbook.read_text().replace(
            '    if [ -n "${RESTART_DELAY:-}" ]; then sleep "$RESTART_DELAY"; fi\n',
            f"    touch {entered}; while [ ! -e {gate} ]; do sleep 0.05; done\n",
        )
    )
    project.register("1.0.0")
    runner = project.spawn("promote", "1.0.0")
    try:
        _wait(entered.exists, "the restart hook to start")
        dev = project.status()["environments"]["dev"]
        assert dev["interrupted"] == [] and [r["release"] for r in dev["running"]] == ["1.0.0"]
        assert dev["running"][0]["pid"] == runner.pid
        assert "in progress: selftest of 1.0.0" in project.cli("status", check=True).stdout
    finally:
        gate.touch()
        runner.communicate(timeout=120)
    assert runner.returncode == 0
    gate.unlink()
    entered.unlink()
    runner = project.spawn("promote", "1.0.0")
    _wait(entered.exists, "the test stage's restart hook to start")
    runner.kill()
    runner.communicate()
    gate.touch()  # the detached phase finishes on its own
    test_env = project.status()["environments"]["test"]
    assert test_env["running"] == [] and [r["release"] for r in test_env["interrupted"]] == ["1.0.0"]


def test_a_rollback_by_hand_passes_over_releases_known_bad_and_overtaken_ones_read_abandoned(project):
    project.register("1.0.0")
    project.cli("run", "1.0.0", check=True)
    project.register("1.1.0", fail_on=(HOSTS["prod"][0],))
    assert project.cli("run", "1.1.0").returncode == 1  # passes selftest and test, rolled back at gray
    project.register("1.2.0")
    project.cli("promote", "1.2.0", check=True)  # dev: 1.0.0 -> 1.1.0 -> 1.2.0
    planned = json.loads(project.cli("rollback", "dev", "--dry-run", "--json", check=True).stdout)
    assert planned["plan"]["dev-1"] == {"runs": "1.2.0", "to": "1.0.0"}  # not 1.1.0, which was rolled back
    assert planned["passed_over"] == ["1.1.0"]  # and it says so
    named = json.loads(project.cli("rollback", "dev", "--dry-run", "--to", "1.1.0", "--json", check=True).stdout)
    assert named["plan"]["dev-1"]["to"] == "1.1.0"  # unless it is named

    releases = {r["version"]: r["status"] for r in project.status()["releases"]}
    assert releases["1.2.0"] == "promoting"
    project.register("1.3.0")
    project.cli("run", "1.3.0", "--to", "test", check=True)  # a newer release went at least as far
    releases = {r["version"]: r["status"] for r in project.status()["releases"]}
    assert releases["1.2.0"] == "abandoned" and releases["1.3.0"] == "promoting"
