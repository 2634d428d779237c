"""Which schema versions each release runs on, and what a rollback must do to the database first:
the pure logic of dbschema, and the schema steps `release create` records."""

import pytest
from click.testing import CliRunner

from releaser.cli import cli
from releaser.dbschema import History, describe_undo
from releaser.errors import UsageError
from releaser.model import Release, SchemaChange
from releaser.releases import schema_change


def _release(version: str, expand: str | None = None, contract: str | None = None, *reversible: str) -> Release:
    return Release(version, "/a", "ff", 1, schema=SchemaChange(expand, contract, tuple(reversible)))


# the ledger's story: 1.0 creates, 1.1 adds a column, 1.2 backfills it, 1.3 drops the old one
LEDGER = [
    _release("1.0", "0001", None, "expand"),
    _release("1.1", "0002", None, "expand"),
    _release("1.2", "0003", None, "expand"),
    _release("1.3", None, "0004"),
    _release("1.3.1"),  # no migration of its own
]


def test_each_release_runs_from_its_expand_step_to_before_a_later_contract_step():
    history = History(LEDGER)
    assert history.runs_on("1.0") == ("0001", "0003")
    assert history.runs_on("1.1") == ("0002", "0003")
    assert history.runs_on("1.2") == ("0003", "0003")
    assert history.runs_on("1.3") == ("0003", "0004")  # its own contract step is its to run on
    assert history.runs_on("1.3.1") == ("0003", "0004")
    assert history.satisfied("0002") == ["0002", "0003", "0004"]


def test_a_target_that_runs_on_the_database_needs_nothing():
    history = History(LEDGER)
    assert history.plan("1.2", "0003").fits  # inside 1.3's window, before its contract step
    assert history.plan("1.0", "0003").fits  # expand steps keep earlier releases working
    assert history.plan("1.3", "0004").fits


def test_crossing_an_irreversible_contract_step_is_refused_with_why():
    plan = History(LEDGER).plan("1.2", "0004")
    assert not plan.fits and not plan.runs_down
    assert plan.target == "0003" and [s.version for s in plan.undo] == ["0004"]
    assert plan.why == (
        "1.2 needs schema 0003 at most; the database is at 0004 after 1.3's contract step 0004, which is irreversible"
    )


def test_reversible_steps_are_undone_newest_first_down_to_what_the_target_runs_on():
    releases = [
        _release("1.0", "0001"),
        _release("1.1", None, "0002", "contract"),
        _release("1.2", "0003", "0004", "expand", "contract"),
    ]
    history = History(releases)
    plan = history.plan("1.0", "0004")
    assert plan.runs_down and plan.target == "0001"
    assert [s.version for s in plan.undo] == ["0004", "0003", "0002"]
    assert describe_undo(plan) == (
        "down from 0004 to 0001 (undoing 1.2's contract step 0004, 1.2's expand step 0003, 1.1's contract step 0002)"
    )
    assert history.plan("1.1", "0004").target == "0003"  # only 1.2's contract step is in 1.1's way


def test_a_database_behind_the_target_or_at_an_unknown_version():
    history = History(LEDGER)
    behind = history.plan("1.2", "0001")
    assert not behind.fits and "needs schema 0003 or later" in behind.why
    unknown = history.plan("1.2", "0003a")
    assert unknown.fits and unknown.unknown  # nothing proves it wrong: the rollback goes on, said
    assert History([_release("1.0"), _release("1.1")]).plan("1.0", "anything").fits  # no steps at all
    assert history.plan("1.0", "").fits is False  # an empty database: 1.0 needs its table


def test_release_create_checks_the_steps_it_records():
    assert schema_change("0042", None, ("expand",)) == SchemaChange("0042", None, ("expand",))
    with pytest.raises(UsageError, match="no --contract step"):
        schema_change("0042", None, ("contract",))
    with pytest.raises(UsageError, match="both name 0042"):
        schema_change("0042", "0042", ())
    with pytest.raises(UsageError, match="a schema version is what the migration tool's `current` prints"):
        schema_change("42; rm -rf /", None, ())


def test_the_same_release_with_other_steps_is_refused(project):
    artifact = str(project.artifact("1.0"))

    def create(*steps: str):
        return CliRunner(env={"NO_COLOR": "1"}).invoke(
            cli, ["-C", str(project.dir), "release", "create", "1.0", "--artifact", artifact, *steps]
        )

    assert create("--expand", "0001").exit_code == 0
    again = create("--expand", "0002")
    assert again.exit_code == 2 and "already exists with other schema steps" in again.output
    same = create("--expand", "0001")
    assert same.exit_code == 0 and "nothing changed" in same.output


def test_a_version_another_release_declares_is_refused(project):
    def create(version: str, *steps: str):
        artifact = str(project.artifact(version))
        return CliRunner(env={"NO_COLOR": "1"}).invoke(
            cli, ["-C", str(project.dir), "release", "create", version, "--artifact", artifact, *steps]
        )

    assert create("1.0", "--expand", "0001").exit_code == 0
    assert create("1.1", "--expand", "0002", "--contract", "0003").exit_code == 0
    again = create("1.2", "--expand", "0002")
    assert again.exit_code == 2, again.output
    assert "--expand 0002: 1.1 already declares 0002 (its expand step)" in again.output
    assert "nothing was registered" in again.output
    assert create("1.2", "--expand", "0003").exit_code == 2  # 1.1's contract step
    assert create("1.2", "--expand", "0004").exit_code == 0
