"""Database migrations end to end: the ledger sample app (tests/harness/ledger.py) deployed by
releaser over real sshd hosts, each environment on a real PostgreSQL database that releaser
migrates with the app's Alembic (tests/harness/migrating.py).

One story walks in order on `test` (1 host) and `prod` (2 hosts, gray + full): releases 1.0 to
1.3 through the pipeline (expand steps before code), 1.3's contract step after its window,
a window rollback on the safe side of it, a rollback by hand refused across it, and 1.4's
failing migration. Small projects of one environment each take the rest: a reversible contract
undone by a rollback, a failed backup, two runners racing, releaser killed at each journal
step of a migration. Validation of bad migration config needs no server and runs in-process.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from datetime import datetime
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from tests.harness.marks import starts
from tests.harness.migrating import Ledgers

STORY_STAGES = [("test", "test"), ("gray", "prod"), ("full", "prod")]


class HealthWatch(threading.Thread):
    """Asks every host's /health until stopped; keeps every answer that was not 200 (a host
    whose app is restarting does not answer at all: that is not an answer)."""

    def __init__(self, project: Ledgers):
        super().__init__(daemon=True)
        self.project, self.stopped = project, threading.Event()
        self.bad: list[tuple[str, int, str]] = []
        self.good: dict[str, int] = {}

    def run(self) -> None:
        while not self.stopped.wait(0.25):
            for env in self.project.envs:
                for host, (status, version) in self.project.health(env).items():
                    if status == 200:
                        self.good[host] = self.good.get(host, 0) + 1
                    elif status is not None:
                        self.bad.append((host, status, version))

    def stop(self) -> None:
        self.stopped.set()
        self.join()


@pytest.fixture(scope="module")
@starts("sshd", "postgres")
def story(tmp_path_factory, ssh_fleet, postgres):
    """The ledger on test (1 host) and prod (2 hosts): test's window is long enough for 1.3 to
    go through prod inside it; prod's outlasts the story (its window rollback is at `watch`)."""
    ssh_fleet.heal()
    project = Ledgers.create(
        tmp_path_factory.mktemp("story") / "ledger", ssh_fleet, postgres, {"test": 1, "prod": 2}, STORY_STAGES
    )
    project.windows = {"test": "14s", "gray": "120s", "full": "120s"}
    project.write()
    yield project
    project.close()


def small(base: Path, fleet, postgres, **options) -> Ledgers:
    """A project of one environment `solo` (one host) and one stage."""
    fleet.heal()
    return Ledgers.create(base / "ledger", fleet, postgres, {"solo": 1}, [("test", "solo")], **options)


@pytest.fixture
@starts("sshd", "postgres")
def solo(tmp_path, ssh_fleet, postgres):
    project = small(tmp_path, ssh_fleet, postgres, window="2s")
    yield project
    project.close()


def index_of(events: list[dict], kind: str, **where) -> int:
    """The position in `events` of the first `kind` event matching `where`."""
    for number, event in enumerate(events):
        if event["kind"] == kind and all(event.get(k) == v for k, v in where.items()):
            return number
    raise AssertionError(f"no {kind} {where} in {[e['kind'] for e in events]}")


def stopped(pid: int) -> bool:
    """Whether the process is held by SIGSTOP."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] == "T"


def wait_until(predicate, timeout: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not {what} within {timeout}s"
        time.sleep(0.05)


def until(moment: str) -> None:
    """Wait for a moment the store names (a rollback window's end): a clock, not a race."""
    time.sleep(max(0.0, datetime.fromisoformat(moment).timestamp() - time.time() + 0.1))


# -- the story --


@pytest.mark.xdist_group("ledger-story")  # the story's tests run in order, on one worker
def test_releases_run_their_expand_step_before_their_code_and_health_stays_200(story):
    watch = HealthWatch(story)
    watch.start()
    try:
        for version in ("1.0", "1.1", "1.2", "1.3"):
            story.register(version)
        story.cli("run", "1.0")
        story.cli("run", "1.1")
        story.cli("promote", "1.2")  # test
        # held right after the expand step on prod: the database is at 0003, prod still serves 1.1
        runner = story.spawn("run", "1.2", failpoint="migration.done@gray:STOP")
        try:
            wait_until(lambda: stopped(runner.pid), what="held after 1.2's expand on prod")
            assert story.schema("prod") == "0003"
            assert story.health("prod") == {host: (200, "1.1") for host in story.envs["prod"].hosts}
        finally:
            runner.send_signal(signal.SIGCONT)
        _, err = runner.communicate(timeout=120)
        assert runner.returncode == 0, err
        story.cli("run", "1.3")
    finally:
        watch.stop()
    assert watch.bad == []
    assert set(watch.good) == {host for env in story.envs.values() for host in env.hosts}
    assert story.versions("test") == {"test-1": "1.3"} and set(story.versions("prod").values()) == {"1.3"}
    assert {env: story.schema(env) for env in story.envs} == {"test": "0003", "prod": "0003"}
    events = story.events()
    for version, target in (("1.0", "0001"), ("1.1", "0002"), ("1.2", "0003")):
        for stage, env in (("test", "test"), ("gray", "prod")):
            done = index_of(events, "migration.done", release=version, environment=env)
            assert events[done]["data"]["to"] == target and events[done]["data"]["already"] is False
            assert events[done]["stage"] == stage
            assert done < index_of(events, "switch.started", release=version, stage=stage)
    # 1.3 has no expand step: no migration of it ran yet (its contract waits for its window)
    assert [e for e in events if e["kind"].startswith("migration.") and e["release"] == "1.3"] == []
    assert len(story.events("backup.done")) == 6


@pytest.mark.xdist_group("ledger-story")
def test_the_contract_step_waits_for_its_window_then_watch_runs_it(story):
    shown = json.loads(story.cli("migrate", "test", "--json").stdout)
    assert shown["current"] == "0003"
    [pending] = [p for p in shown["pending"] if p["release"] == "1.3"]
    assert pending["target"] == "0004" and "runs once its rollback window closes" in pending["words"]
    refused = story.cli("migrate", "test", "--contract", check=3)
    assert "pass --force --reason TEXT to close the window now" in refused.stderr
    assert story.schema("test") == "0003"
    assert story.events("migration.started", release="1.3") == []
    until(pending["due_at"])
    story.cli("watch", "--once")
    assert story.schema("test") == "0004" and story.schema("prod") == "0003"
    [done] = story.events("migration.done", release="1.3", environment="test")
    assert done["data"]["phase"] == "contract" and done["data"]["from"] == "0003" and done["data"]["to"] == "0004"
    backup = story.events("backup.done", environment="test")[-1]
    assert done["data"]["backup"] == backup["data"]["backup"] and backup["data"]["schema"] == "0003"
    assert story.health("test") == {"test-1": (200, "1.3")}


@pytest.mark.xdist_group("ledger-story")
def test_a_window_rollback_before_the_contract_goes_back_to_1_2_on_0003(story):
    for host in story.envs["prod"].hosts:
        (story.flags / f"sick-{host}").touch()
    try:
        story.cli("watch", "--once", check=1)
    finally:
        for host in story.envs["prod"].hosts:
            (story.flags / f"sick-{host}").unlink()
    assert set(story.versions("prod").values()) == {"1.2"}
    assert story.schema("prod") == "0003"
    assert story.health("prod") == {host: (200, "1.2") for host in story.envs["prod"].hosts}
    assert story.events("migration.started", environment="prod", release="1.3") == []


@pytest.mark.xdist_group("ledger-story")
def test_a_drill_rehearses_prods_rollback_and_restores_its_newest_backup_into_scratch(story):
    """On prod, back on 1.2 at 0003: the rollback to 1.1 (which runs on 0003) and forward again,
    then the newest pg_dump restored into the scratch database with pg_restore and verified."""
    incidents = len(story.events("incident"))
    story.cli("drill", "prod")
    [done] = story.events("drill.done", environment="prod")
    data = done["data"]
    assert data["status"] == "passed" and (data["release"], data["previous"]) == ("1.2", "1.1"), data
    assert data["rollback_seconds"] > 0 and data["forward_seconds"] > 0 and data["restore_seconds"] > 0
    assert data["within_sla"] is True
    started = story.events("rollback.started", environment="prod")
    assert [e["data"]["cause"] for e in started[-2:]] == ["drill", "drill"]
    assert len(story.events("incident")) == incidents  # a rehearsal is no incident
    newest = json.loads(story.run("backups", "prod", "--json"))["backups"][0]
    assert data["backup"] == newest["id"]
    with psycopg.connect(story.envs["prod"].scratch) as conn:  # what pg_restore put there
        assert conn.execute("select count(*) from items").fetchone()[0] == 3
    assert set(story.versions("prod").values()) == {"1.2"} and story.schema("prod") == "0003"
    assert story.health("prod") == {host: (200, "1.2") for host in story.envs["prod"].hosts}


@pytest.mark.xdist_group("ledger-story")
def test_a_rollback_by_hand_across_the_irreversible_contract_is_refused(story):
    dry = story.cli("rollback", "test", "--reason", "x", "--dry-run", check=4)  # as the rollback would
    assert "the rollback of test would be refused" in dry.stderr and "irreversible" in dry.stderr, dry.stderr
    before = len(story.events())
    refused = story.cli("rollback", "test", "--reason", "x", check=4)
    assert "1.3's contract step 0004, which is irreversible" in refused.stderr, refused.stderr
    [backup] = [
        b for b in json.loads(story.run("backups", "test", "--json"))["backups"] if b["schema_version"] == "0003"
    ]
    assert f"restore backup B-{backup['id']} (schema 0003" in refused.stderr, refused.stderr
    assert len(story.events()) == before and story.events("rollback.started", environment="test") == []
    assert story.versions("test") == {"test-1": "1.3"} and story.schema("test") == "0004"


@pytest.mark.xdist_group("ledger-story")
def test_a_failing_migration_fails_the_stage_and_leaves_hosts_and_schema(story):
    story.register("1.4")
    failed = story.cli("promote", "1.4", check=1)
    assert "expand step for 1.4 failed before any host switched" in failed.stderr, failed.stderr
    assert story.versions("test") == {"test-1": "1.3"} and story.schema("test") == "0004"
    assert story.query("test", "select to_regclass('audit')") == [(None,)]
    [event] = story.events("migration.failed", release="1.4")
    assert event["data"]["from"] == "0004" and event["data"]["to"] == "0004"
    assert "the database is at 0004" in event["message"]
    assert story.health("test") == {"test-1": (200, "1.3")}


# -- small projects --


@pytest.mark.sshd
@pytest.mark.postgres
def test_a_rollback_runs_a_reversible_contract_down_before_the_hosts_go_back(solo):
    solo.register("1.0")
    # ledger 1.2's code, with a contract step that can be undone: 1.0 does not run after it
    solo.register("2.0", ledger="1.2", expand="0002", contract="0003", reversible=("expand", "contract"))
    solo.cli("run", "1.0")
    solo.cli("run", "2.0")
    assert solo.schema("solo") == "0002"
    until(json.loads(solo.cli("migrate", "solo", "--json").stdout)["pending"][0]["due_at"])
    solo.cli("migrate", "solo", "--contract")
    assert solo.schema("solo") == "0003"
    dry = solo.cli("rollback", "solo", "--reason", "x", "--dry-run")
    assert "database: down from 0003 to 0002 (undoing 2.0's contract step 0003)" in dry.stdout, dry.stdout
    solo.cli("rollback", "solo", "--reason", "x")
    events = solo.events()
    started = index_of(events, "rollback.started")
    rollback = events[started]["data"]["rollback"]
    down_started = [e for e in events if e["kind"] == "migration.started" and e["data"]["phase"] == "down"]
    down_done = [e for e in events if e["kind"] == "migration.done" and e["data"]["phase"] == "down"]
    assert [e["data"]["rollback"] for e in down_started + down_done] == [rollback, rollback]
    switch = next(i for i, e in enumerate(events) if e["kind"] == "switch.started" and i > started)
    assert events.index(down_started[0]) < events.index(down_done[0]) < switch
    assert solo.schema("solo") == "0002" and solo.versions("solo") == {"solo-1": "1.0"}
    assert solo.health("solo") == {"solo-1": (200, "1.0")}


@pytest.mark.sshd
@pytest.mark.postgres
def test_a_failed_backup_stops_the_migration_unless_backups_are_optional(solo):
    solo.register("1.0")
    (solo.flags / "fail-backup").touch()
    failed = solo.cli("promote", "1.0", check=1)
    assert "the backup command failed" in failed.stderr and "the migration did not run" in failed.stderr
    assert solo.schema("solo") is None and solo.versions("solo") == {"solo-1": None}
    assert solo.events("migration.failed") and not solo.events("backup.done")
    solo.envs["solo"].backups = "optional"
    solo.write()
    solo.cli("promote", "1.0")
    [skipped] = solo.events("backup.skipped")
    assert "the backup command failed" in skipped["message"]
    assert solo.schema("solo") == "0001" and solo.versions("solo") == {"solo-1": "1.0"}


@pytest.mark.sshd
@pytest.mark.postgres
def test_two_runners_racing_migrate_once(solo):
    solo.register("1.0")
    gate = solo.flags / "hold-up"
    gate.touch()  # the first to migrate waits in `up` while the other tries
    runners = [solo.spawn("promote", "1.0") for _ in range(2)]
    try:
        solo.wait_for("migration.started")
        wait_until(lambda: any(r.poll() is not None for r in runners), what="one runner done")
    finally:
        gate.unlink()
    outputs = [r.communicate(timeout=120) for r in runners]
    codes = sorted(r.returncode for r in runners)
    assert codes == [0, 3], outputs
    [busy] = [err for runner, (_, err) in zip(runners, outputs, strict=True) if runner.returncode]
    assert "environment solo is locked by" in busy, busy
    assert len(solo.events("migration.started")) == 1
    [done] = solo.events("migration.done")
    assert done["data"]["already"] is False
    assert solo.schema("solo") == "0001" and solo.versions("solo") == {"solo-1": "1.0"}


# where releaser is killed, and how many migration.done events then say the step changed the
# database: killed before the step was sent to the host, resume runs it; killed after its
# backup, the step (detached on the host) finishes alone and resume finds the database there
# (`already`); killed after it was journaled done, resume runs no step again
KILLED_AT = {"migration.started": 1, "backup.done": 0, "migration.done": 1}


@pytest.mark.sshd
@pytest.mark.postgres
@pytest.mark.parametrize("kind", list(KILLED_AT))
def test_killed_at_each_step_of_a_migration_then_resumed(solo, kind):
    solo.register("1.0")
    solo.cli("promote", "1.0", failpoint=f"{kind}:KILL", check=-9)
    assert solo.events(kind) and not solo.events("stage.passed")
    solo.cli("resume")
    assert solo.events("stage.passed", release="1.0")
    assert solo.schema("solo") == "0001"
    assert solo.query("solo", "select count(*) from items") == [(3,)]
    assert solo.versions("solo") == {"solo-1": "1.0"} and solo.health("solo") == {"solo-1": (200, "1.0")}
    solo_env = json.loads(solo.run("status", "--json"))["environments"]["solo"]
    assert solo_env["consistent"] and solo_env["hosts"]["solo-1"]["version"] == "1.0", solo_env
    # the host ran `up` once, after one backup; every other attempt found the database there
    record = (solo.dir / "hosts" / "solo-1" / ".releaser" / "record.jsonl").read_text().splitlines()
    assert [line["step"] for line in map(json.loads, record) if line["step"] in ("backed-up", "migrating")] == [
        "backed-up",
        "migrating",
    ]
    assert len(solo.events("backup.done")) == 1
    done = solo.events("migration.done")
    assert len([e for e in done if not e["data"]["already"]]) == KILLED_AT[kind]
    # the step cut short never said how it ended (its record says `interrupted`); every other did
    assert len(solo.events("migration.started")) - len(done) == (kind != "migration.done")
    assert all(e["data"]["to"] == "0001" for e in done)


@pytest.mark.sshd
@pytest.mark.postgres
def test_killed_while_the_tool_runs_the_step_finishes_on_the_host_and_its_backup_is_kept(solo):
    solo.register("1.0")
    gate = solo.flags / "hold-up"
    gate.touch()  # `up` waits, after the backup, while releaser is killed
    runner = solo.spawn("promote", "1.0")
    record = solo.dir / "hosts" / "solo-1" / ".releaser" / "record.jsonl"
    try:
        wait_until(lambda: record.exists() and '"step":"migrating"' in record.read_text(), what="migrating")
        runner.kill()
        runner.wait(timeout=30)
    finally:
        gate.unlink()
    solo.cli("resume")
    assert solo.schema("solo") == "0001" and solo.versions("solo") == {"solo-1": "1.0"}
    [backup] = solo.events("backup.done")
    assert "(cut short)" in backup["message"] and backup["data"]["schema"] == ""
    migrations = json.loads(solo.run("migrate", "solo", "--json"))["migrations"]
    assert [(m["status"], m["backup_id"]) for m in migrations] == [("done", backup["data"]["backup"]), ("done", None)]
    assert "found the database there" in migrations[0]["detail"]


# -- validation, in-process --

ENVS = """\
project: ledger
environments:
  test:
    transport: local
    root: hosts/{{host}}
    playbook: ledger
{extra}    hosts: [one, two]
pipeline:
  - stage: test
    environment: test
"""


@pytest.mark.parametrize(
    ("migrate", "extra", "file", "key", "words"),
    [
        ("  current: alembic current\n", "", "ledger.yaml", "migrate", "up"),
        (
            "  current: c\n  up: u\n  backup: b\n  restore: r\n",
            "",
            "ledger.yaml",
            "verify",
            "a restore drill needs both",
        ),
        ("  current: c\n  up: u\n  backup: b\n", "    migrate_on: three\n", "environments.yaml", "migrate_on", "three"),
        ("  current: c\n  up: u\n", "", "environments.yaml", "playbook", "with no `backup:` command"),
    ],
)
def test_bad_migration_config_is_refused_at_validate_with_file_and_line(tmp_path, migrate, extra, file, key, words):
    from releaser.cli import cli

    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "ledger.yaml").write_text("hooks:\n  restart: 'true'\nmigrate:\n" + migrate)
    (tmp_path / "environments.yaml").write_text(ENVS.format(extra=extra))
    result = CliRunner(env={"NO_COLOR": "1"}).invoke(cli, ["-C", str(tmp_path), "validate"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if file in line and key in line]
    assert lines and words in lines[0], result.stderr
    assert any(f"{file}:" in line and line.split(f"{file}:")[1][:1].isdigit() for line in lines), result.stderr
