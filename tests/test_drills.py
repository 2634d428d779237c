"""Drills (`releaser drill`): the rollback rehearsed through the real rollback path on local hosts,
timed against the rollback SLA, and a restore of the newest backup checked and verified. The
app's database is a file the playbook's migration tool writes (`$DB/version`); restores go to a
scratch directory (`$SCRATCH`). In-process (CliRunner, local transport, no server), but for one
drill killed at a journal step, which runs releaser as a process."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from releaser.events import Event
from releaser.model import Webhook
from releaser.names import DEFAULT_EVENTS
from releaser.notify import event_text
from releaser.report.compute import build
from releaser.report.words import Words
from releaser.status import print_status, status_document
from releaser.store import memory_store
from tests.harness.filedb import HOSTS, Shop


@pytest.fixture
def shop(tmp_path) -> Shop:
    """1.0.0 then 1.1.0 live on every host, each with an expand step (so two backups exist)."""
    shop = Shop(tmp_path / "shop", drills="    drills: {every: 1d, hosts: [web-3, web-4]}\n")
    shop.live("1.0.0", "--expand", "0001")
    shop.live("1.1.0", "--expand", "0002")
    return shop


def test_a_drill_rolls_back_and_forward_through_the_rollback_path_and_restores(shop):
    result = shop.ok("drill", "prod", "--hosts", ",".join(HOSTS), "--reason", "quarterly")
    assert "drill 1 of prod passed: rolled back from 1.1.0 to 1.0.0 in" in result.stdout
    assert "backup B-2 restored in" in result.stdout and "within the rollback SLA of 5m" in result.stdout
    assert shop.runs() == dict.fromkeys(HOSTS, "1.1.0")
    started = shop.events("rollback.started")
    assert [e["data"]["cause"] for e in started] == ["drill", "drill"]
    assert [(e["data"]["releases"], e["data"]["target"]) for e in started] == [
        (["1.1.0"], "1.0.0"),
        (["1.0.0"], "1.1.0"),
    ]
    assert shop.events("incident") == []
    done = shop.events("drill.done")[0]["data"]
    assert done["status"] == "passed" and done["within_sla"] is True and done["sla_seconds"] == 300
    assert done["rollback_seconds"] > 0 and done["forward_seconds"] > 0 and done["restore_seconds"] >= 0
    assert (done["backup"], done["previous"], done["release"], done["reason"]) == (2, "1.0.0", "1.1.0", "quarterly")
    assert (shop.scratch / "version").read_text() == "db at 0001\n"  # B-2: taken before 1.1.0's expand
    assert (shop.db / "version").read_text() == "0002\n"  # the app's database is not touched
    drill = shop.store().drills("prod")[-1]
    assert (drill.status, drill.backup_id, drill.rollback_seconds) == ("passed", 2, done["rollback_seconds"])
    # the releases keep their status and their stages: a drill is no verdict on them
    document = json.loads(shop.ok("status", "--json").stdout)
    assert {r["version"]: r["status"] for r in document["releases"]} == {"1.0.0": "superseded", "1.1.0": "live"}
    assert "1.1.0 has passed every stage; nothing to do" in shop.ok("promote", "1.1.0").output


def test_a_cohort_drill_touches_only_its_hosts(shop):
    others = {h: (shop.dir / "hosts" / h / ".releaser" / "record.jsonl").read_text() for h in ("web-1", "web-2")}
    result = shop.ok("drill", "prod", "--no-restore")  # the env's `drills.hosts`: web-3, web-4
    assert "restored" not in result.stdout
    for host, record in others.items():
        assert (shop.dir / "hosts" / host / ".releaser" / "record.jsonl").read_text() == record, host
    planned = [e["data"]["targets"] for e in shop.events("rollback.planned")]
    assert planned == [{"web-3": "1.0.0", "web-4": "1.0.0"}, {"web-3": "1.1.0", "web-4": "1.1.0"}]
    assert shop.events("drill.done")[0]["data"]["hosts"] == ["web-3", "web-4"]
    assert shop.runs() == dict.fromkeys(HOSTS, "1.1.0")


def test_a_first_install_has_nothing_to_rehearse(tmp_path):
    shop = Shop(tmp_path / "shop")
    shop.live("1.0.0")
    result = shop.cli("drill", "prod")
    assert result.exit_code == 2
    assert "no earlier release on record (a first install)" in result.output
    assert shop.store().drills() == [] and shop.events("drill.started") == []


def test_a_drill_is_refused_when_the_previous_release_cannot_run_on_the_schema(shop):
    shop.live("1.2.0", "--contract", "0003")
    shop.ok("migrate", "prod", "--to", "0003", "--reason", "its contract step, by hand")
    assert (shop.db / "version").read_text() == "0003\n"
    result = shop.cli("drill", "prod")
    assert result.exit_code == 4
    assert "cannot rehearse the rollback of prod to 1.1.0: 1.1.0 needs schema 0002 at most" in result.output
    assert "irreversible" in result.output and "nothing was changed" in result.output
    assert shop.store().drills() == [] and [e["data"]["cause"] for e in shop.events("rollback.started")] == []


def test_a_tampered_backup_fails_the_drill_with_the_hosts_back_on_their_release(shop):
    backup = shop.store().backups("prod")[-1]
    Path(backup.path).write_text("db at 9999\n")
    result = shop.cli("drill", "prod")
    assert result.exit_code == 1
    assert f"the backup {backup.path} changed after it was written" in result.output
    drill = shop.store().drills("prod")[-1]
    assert drill.status == "failed" and "changed after it was written" in drill.detail
    assert drill.rollback_seconds is not None and drill.restore_seconds is None
    assert shop.runs() == dict.fromkeys(HOSTS, "1.1.0")
    assert shop.events("drill.done")[0]["data"]["within_sla"] is False


def test_a_failing_verify_fails_the_drill(shop):
    shop.scratch.mkdir()
    (shop.scratch / "UNSOUND").touch()
    result = shop.cli("drill", "prod")
    assert result.exit_code == 1
    assert "the verify command failed (exit 1): the restored database is not sound" in result.output
    assert shop.store().drills("prod")[-1].status == "failed"


def test_a_rollback_that_cannot_finish_is_left_to_resume_and_the_next_drill_goes_forward(shop):
    (shop.dir / "hosts" / "web-4" / "FAIL_RESTART").touch()
    result = shop.cli("drill", "prod", "--no-restore")
    assert result.exit_code == 4
    assert "web-4" in result.output and "`releaser resume`" in result.output
    drill = shop.store().drills("prod")[-1]
    assert drill.status == "failed" and "the rollback to 1.0.0 could not finish" in drill.detail
    document = json.loads(shop.ok("status", "--json").stdout)
    assert [r["cause"] for r in document["environments"]["prod"]["rollbacks"]] == ["drill"]
    (shop.dir / "hosts" / "web-4" / "FAIL_RESTART").unlink()
    shop.ok("resume")  # finishes the open rollback: the cohort runs 1.0.0
    assert shop.runs() == {"web-1": "1.1.0", "web-2": "1.1.0", "web-3": "1.0.0", "web-4": "1.0.0"}
    assert shop.events("incident") == []
    result = shop.ok("drill", "prod", "--no-restore")  # forward to 1.1.0 first, then a new rehearsal
    assert "drill 2 of prod passed" in result.stdout
    assert shop.runs() == dict.fromkeys(HOSTS, "1.1.0")


@pytest.mark.real  # releaser runs as a process, killed at a journal step
def test_a_drill_killed_mid_rollback_is_finished_by_resume_and_the_next_drill(shop):
    killed = subprocess.run(
        [sys.executable, "-m", "releaser.cli", "-C", str(shop.dir), "drill", "prod", "--no-restore"],
        env={**os.environ, "NO_COLOR": "1", "RELEASER_FAILPOINT": "rollback.planned:KILL"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert killed.returncode == -9, killed.stderr
    assert shop.store().drills("prod")[-1].status == "running"
    refused = shop.cli("drill", "prod")
    assert refused.exit_code == 4 and "run `releaser resume` to finish it first" in refused.output
    shop.ok("resume")  # holds every host of prod; the drill's rollback stays on its cohort
    assert shop.runs() == {"web-1": "1.1.0", "web-2": "1.1.0", "web-3": "1.0.0", "web-4": "1.0.0"}
    result = shop.ok("drill", "prod", "--no-restore")
    assert "drill 2 of prod passed" in result.stdout
    assert shop.runs() == dict.fromkeys(HOSTS, "1.1.0")
    old = shop.store().drills("prod")[0]
    assert old.status == "failed"
    assert old.detail == "interrupted: its process ended before it did; web-3, web-4 rolled forward to 1.1.0 again"
    assert shop.events("incident") == []


def test_status_shows_the_last_drill_and_warns_when_one_is_overdue(shop):
    document = json.loads(shop.ok("status", "--json").stdout)
    drills = document["environments"]["prod"]["drills"]
    assert drills["last"] is None and drills["overdue"] is True and "no drill has ever passed" in drills["warning"]
    shop.ok("drill", "prod")
    document = json.loads(shop.ok("status", "--json").stdout)
    drills = document["environments"]["prod"]["drills"]
    assert drills["overdue"] is False and drills["warning"] is None
    assert drills["last"]["status"] == "passed" and drills["last"]["within_sla"] is True
    text = shop.ok("status").stdout
    assert "last drill: passed" in text and "rolled back 1.1.0 -> 1.0.0 in" in text
    with sqlite3.connect(shop.dir / ".releaser" / "state.db") as db:  # two days pass
        db.execute(
            "UPDATE drills SET started_at = '2020-01-01T00:00:00+00:00', finished_at = '2020-01-01T00:01:00+00:00'"
        )
    document = json.loads(shop.ok("status", "--json").stdout)
    drills = document["environments"]["prod"]["drills"]
    assert drills["overdue"] is True and "`releaser drill prod`" in drills["warning"]
    lines: list[str] = []
    print_status(document, lambda line, *_: lines.append(line))
    assert any(line.startswith("  DRILL OVERDUE") for line in lines)


def test_the_effect_report_and_a_notification_carry_the_drill(shop):
    shop.ok("drill", "prod")
    config, store = shop.config(), shop.store()
    report = build(config, store, "1.1.0")
    assert report["drill"]["status"] == "passed" and report["drill"]["within_sla"] is True
    assert report["drill"]["sla_seconds"] == 300 and report["drill"]["restore_seconds"] is not None
    english = " ".join(Words("en").summary(report))
    assert "The last rollback drill of prod" in english and "within the 5 min SLA" in english
    chinese = " ".join(Words("zh-CN").summary(report))
    assert "回滚演练" in chinese
    assert Event.DRILL_DONE in DEFAULT_EVENTS
    event = next(e for e in store.events() if e.kind == Event.DRILL_DONE)
    text = event_text("shop", Webhook(url="http://chat.example", url_env=None, format="slack"), event)
    assert text.startswith(":fire_drill:") and "drill 1 of prod passed" in text


def test_status_document_without_drills_has_none(tmp_path):
    shop = Shop(tmp_path / "shop")
    document = status_document(shop.config(), memory_store())
    assert document["environments"]["prod"]["drills"] is None


def test_the_migration_tool_may_run_on_the_controller(tmp_path):
    """`migrate_on: controller`: the release is unpacked under the state's directory on this
    machine and the tool runs there (no host sees a step); drills restore there too."""
    shop = Shop(tmp_path / "shop", drills="    migrate_on: controller\n")
    shop.live("1.0.0", "--expand", "0001")
    shop.live("1.1.0", "--expand", "0002")
    assert (shop.db / "version").read_text() == "0002\n"
    here = shop.config().state_path.parent / "controller" / "prod"
    assert (here / "releases" / "1.1.0" / "app.txt").read_text() == "app 1.1.0\n"
    assert {b.host for b in shop.store().backups("prod")} == {"controller"}
    for host in HOSTS:  # the hosts prepared and switched; none ran a schema step
        record = (shop.dir / "hosts" / host / ".releaser" / "record.jsonl").read_text()
        assert '"action": "migrate"' not in record, host
    assert '"action": "migrate"' in (here / ".releaser" / "record.jsonl").read_text()
    assert "the database is at 0002 (asked on controller)" in shop.ok("migrate", "prod").stdout
    shop.ok("drill", "prod")
    assert (shop.scratch / "version").read_text() == "db at 0001\n"
