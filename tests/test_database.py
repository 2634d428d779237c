"""Schema steps in-process, on local hosts whose database is a file (tests/harness/filedb.py): the
messages a person reads when a step cannot go on, and the records a cut-short step leaves."""

from __future__ import annotations

import json

import pytest

from tests.harness.filedb import Shop
from tests.harness.tarballs import tar_gz


@pytest.fixture
def shop(tmp_path) -> Shop:
    shop = Shop(tmp_path / "shop")
    shop.live("1.0.0", "--expand", "0001")
    return shop


def edit_playbook(shop: Shop, old: str, new: str) -> None:
    playbook = shop.dir / "playbooks" / "app.yaml"
    assert old in playbook.read_text()
    playbook.write_text(playbook.read_text().replace(old, new))


def break_the_backup(shop: Shop) -> None:
    """The playbook's backup command fails from now on (exit 1)."""
    edit_playbook(shop, "backup: '", "backup: 'false && ")


def register(shop: Shop, version: str, *steps: str) -> None:
    """Register `version` without running it (Shop.live runs it, and it must succeed)."""
    artifact = shop.dir / f"{version}.tar.gz"
    artifact.write_bytes(tar_gz({"app.txt": f"app {version}\n"}))
    shop.ok("release", "create", version, "--artifact", str(artifact), *steps)


def test_a_database_at_a_version_no_release_declares_stops_the_step_with_the_way_on(shop):
    (shop.db / "version").write_text("0001b\n")  # a migration stopped between two versions
    register(shop, "1.1.0", "--expand", "0002")
    failed = shop.cli("promote", "1.1.0")
    assert failed.exit_code == 1, failed.output
    said = failed.output
    assert "the database is at 0001b, where 1.1.0's expand step neither starts (empty, 0001) nor ends (0002)" in said
    assert "`releaser migrate prod --to 0002 --reason TEXT`" in said and "`releaser backups prod`" in said
    assert shop.runs() == dict.fromkeys(shop.runs(), "1.0.0")  # no host switched
    assert (shop.db / "version").read_text() == "0001b\n"  # and the database is as it was
    repaired = shop.cli("migrate", "prod", "--to", "0002", "--reason", "finished by hand")
    assert repaired.exit_code == 0, repaired.output
    assert (shop.db / "version").read_text() == "0002\n"
    assert shop.cli("promote", "1.1.0").exit_code == 0
    [started] = [e for e in shop.events("migration.started") if "by hand" in e["message"]]
    assert "by hand: finished by hand" in started["message"]


def test_a_failed_backup_says_so_and_the_schema_is_untouched(shop):
    break_the_backup(shop)
    register(shop, "1.1.0", "--expand", "0002")
    failed = shop.cli("promote", "1.1.0")
    assert failed.exit_code == 1
    assert "the backup command failed (exit 1); the migration did not run" in failed.output
    assert (shop.db / "version").read_text() == "0001\n"
    [event] = shop.events("migration.failed")
    assert event["data"]["from"] == "0001" and event["data"]["backup"] is None
    status = json.loads(shop.ok("status", "--json").stdout)
    database = status["environments"]["prod"]["database"]
    assert database["version"] == "0001" and database["last_step"]["status"] == "failed"
    # the environment failed, not the release: no incident, and 1.1.0 is not condemned
    assert shop.events("incident") == [] and shop.events("rollback.started")[-1]["data"]["cause"] == "setup"
    assert {r["version"]: r["status"] for r in status["releases"]}["1.1.0"] != "rolled_back"


def test_an_expand_step_past_a_contract_step_still_in_its_window_is_refused(shop):
    shop.live("1.1.0", "--contract", "0002")  # its window (the stage's default, 1h) is open
    register(shop, "1.2.0", "--expand", "0003")
    refused = shop.cli("promote", "1.2.0")
    assert refused.exit_code == 3, refused.output
    assert "1.2.0's expand step to 0003 would run 1.1.0's contract step 0002 on the way" in refused.output
    assert "`releaser migrate prod --contract --force --reason TEXT`" in refused.output
    assert (shop.db / "version").read_text() == "0001\n" and shop.events("stage.started")[-1]["release"] == "1.1.0"
    shop.ok("migrate", "prod", "--contract", "--force", "--reason", "verified")
    assert (shop.db / "version").read_text() == "0002\n"
    shop.ok("promote", "1.2.0")
    assert (shop.db / "version").read_text() == "0003\n"


def test_a_backup_restored_by_hand_is_found_and_the_rollback_goes_on(shop):
    shop.live("1.1.0", "--contract", "0002")  # irreversible: 1.0.0 does not run after it
    shop.ok("migrate", "prod", "--contract", "--force", "--reason", "verified")
    refused = shop.cli("rollback", "prod", "--reason", "customer report")
    assert refused.exit_code == 4
    assert "then `releaser migrate prod` records where it stands and the rollback can go on" in refused.output
    (shop.db / "version").write_text("0001\n")  # the backup restored with the database's own tool
    rolled = shop.cli("rollback", "prod", "--reason", "customer report")
    assert rolled.exit_code == 0, rolled.output
    [found] = shop.events("migration.found")
    assert found["data"]["found"] == "0001" and found["data"]["recorded"] == "0002"
    assert shop.runs() == dict.fromkeys(shop.runs(), "1.0.0")
    assert "the database is at 0001" in shop.ok("migrate", "prod").stdout
    assert len(shop.events("migration.found")) == 1  # found once: recorded, then where it stands


def test_a_migration_that_never_returns_is_stopped_at_migrate_timeout_and_said_so(shop):
    edit_playbook(shop, "  up: '", '  timeout: 1s\n  up: \'test -n "$RELEASER_SCHEMA_TARGET" && exec sleep 60; ')
    register(shop, "1.1.0", "--expand", "0002")
    failed = shop.cli("promote", "1.1.0")
    assert failed.exit_code == 1, failed.output
    assert "the migration tool's up command did not return within 1s (migrate.timeout)" in failed.output
    assert "nohup" not in failed.output  # a hook's advice, not a migration's
    assert (shop.db / "version").read_text() == "0001\n"


def test_a_current_that_prints_noise_is_quoted_where_it_stops_the_step(shop):
    edit_playbook(
        shop,
        "current: 'cat \"$DB/version\" 2>/dev/null || true'",
        "current: 'cat \"$DB/version\"; echo pool warming up'",
    )
    register(shop, "1.1.0", "--expand", "0002")
    failed = shop.cli("promote", "1.1.0")
    assert failed.exit_code == 1, failed.output
    assert "the database is at pool" in failed.output
    assert "(the current command's last line: pool warming up)" in failed.output
    assert shop.events("incident") == []  # the tool's setup, not the release


def test_a_release_without_an_expand_step_gets_the_one_it_was_built_on(shop):
    """1.1.0 (expand 0002) was never promoted; 1.2.0, built on it, declares no step of its own:
    the database is taken to 0002 before 1.2.0's code reaches a host."""
    register(shop, "1.1.0", "--expand", "0002")
    shop.live("1.2.0")
    assert (shop.db / "version").read_text() == "0002\n"
    [started] = [e for e in shop.events("migration.started") if e["release"] == "1.2.0"]
    assert "1.1.0's expand step, which 1.2.0 was built on" in started["message"]


def test_a_contract_step_of_a_release_rolled_back_runs_once_a_fixed_release_is_live(shop):
    shop.live("1.1.0", "--contract", "0002")
    shop.ok("rollback", "prod", "--reason", "bad release")  # 1.1.0 rolled back inside its window
    register(shop, "1.1.1")  # the fixed release, built on 1.1.0's schema
    register(shop, "1.2.0", "--expand", "0003")
    refused = shop.cli("promote", "1.2.0")
    assert refused.exit_code == 3, refused.output
    assert "neither 1.1.0 nor a later release has passed prod's last stage" in refused.output
    assert "or pass --force --reason TEXT" in refused.output
    shop.ok("run", "1.1.1")
    shop.ok("migrate", "prod", "--contract", "--force", "--reason", "1.1.1 verified")
    assert (shop.db / "version").read_text() == "0002\n"  # 1.1.0's contract step, carried by 1.1.1
    shop.ok("promote", "1.2.0")
    assert (shop.db / "version").read_text() == "0003\n"


def test_a_setup_failure_says_the_release_was_not_tried(shop):
    break_the_backup(shop)
    register(shop, "1.1.0", "--expand", "0002")
    failed = shop.cli("-q", "promote", "1.1.0")
    assert failed.exit_code == 1
    assert "could not start on prod: the environment failed before any host changed (cause setup:" in failed.output
    assert "promote 1.1.0 again" in failed.output


def test_noise_from_current_is_not_recorded_as_a_version(shop):
    edit_playbook(
        shop,
        "current: 'cat \"$DB/version\" 2>/dev/null || true'",
        "current: 'cat \"$DB/version\"; echo INFO pool closed'",
    )
    shown = shop.ok("migrate", "prod")
    assert "no release declares INFO" in shown.stdout and "'INFO pool closed'" in shown.stdout
    assert "not recorded" in shown.stderr
    assert shop.events("migration.found") == []


def test_a_promotion_forced_past_a_waiting_contract_step_is_journaled(shop):
    shop.live("1.1.0", "--contract", "0002")
    register(shop, "1.2.0", "--expand", "0003")
    forced = shop.cli("promote", "1.2.0", "--force", "--reason", "1.0.0 is gone everywhere")
    assert forced.exit_code == 0, forced.output
    [event] = shop.events("migration.forced")
    assert event["data"]["reason"] == "1.0.0 is gone everywhere" and "1.1.0's contract step 0002" in event["message"]
    assert (shop.db / "version").read_text() == "0003\n"
