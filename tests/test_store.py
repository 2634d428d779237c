"""The store on both backends (SQLite, and a real PostgreSQL): round trips, the versioned schema,
transactions and the lock semantics; and each backend's own faults, through the CLI."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest

from releaser.errors import BusyError, NeedsHuman
from releaser.journal import Journal
from releaser.locks import EnvironmentLock
from releaser.model import Deployment, Event, Lock, Release, ReleaseStatus, RunStatus
from releaser.processes import is_stale
from releaser.store import SCHEMA_VERSION, SqliteStore
from releaser.store.postgresql import PostgresStore


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request, tmp_path):
    s = new_store(request.param, tmp_path, request)
    yield s
    s.close()


def new_store(backend: str, tmp_path, request):
    if backend == "sqlite":
        return SqliteStore(tmp_path / "state.db")
    return PostgresStore(request.getfixturevalue("postgres").database())


def test_release_round_trip(store):
    rel = Release("2.4.0", "/a/app.tar.gz", "ab" * 32, 1234, "notes <b>", ["batch-order", "search"])
    store.add_release(rel)
    got = store.get_release("2.4.0")
    assert (got.version, got.sha256, got.size, got.notes, got.features, got.status) == (
        "2.4.0",
        "ab" * 32,
        1234,
        "notes <b>",
        ["batch-order", "search"],
        ReleaseStatus.REGISTERED,
    )
    assert got.created_at.endswith("+00:00")
    store.set_release_status("2.4.0", ReleaseStatus.LIVE)
    assert store.get_release("2.4.0").status is ReleaseStatus.LIVE
    import psycopg

    with pytest.raises((sqlite3.IntegrityError, psycopg.errors.UniqueViolation)):
        store.add_release(rel)


def test_stage_runs_deployments_host_state_and_events(store):
    store.add_release(Release("1.0", "/a", "0" * 64, 1))
    run = store.start_stage_run("1.0", "gray", "prod", "alice")
    assert run.status is RunStatus.RUNNING and run.finished_at is None
    store.set_stage_run_status(run.id, RunStatus.PASSED, "fine")
    run = store.get_stage_run(run.id)
    assert run.status is RunStatus.PASSED and run.finished_at and run.reason == "fine"

    deps = store.add_deployments([Deployment(None, run.id, "prod", "web-1", "deploy", None, "1.0", "switching")])
    store.update_deployment(deps[0].id, "switched")
    assert [d.status for d in store.deployments(stage_run_id=run.id)] == ["switched"]

    store.set_host_state("prod", "web-1", "1.0", None)
    store.set_host_state("prod", "web-1", "1.1", "1.0")
    state = store.host_states("prod")["web-1"]
    assert (state.version, state.previous) == ("1.1", "1.0")

    for i in range(5):
        store.append_event(Event(kind="k", message=f"m{i}", release="1.0", data={"i": i}))
    store.append_event(Event(kind="k", message="other", release="2.0"))
    assert [e.message for e in store.events(release="1.0", limit=2)] == ["m3", "m4"]
    assert store.events()[0].data == {"i": 0}
    ids = [e.id for e in store.events()]
    assert ids == sorted(ids)


def test_transaction_rolls_back_everything(store):
    with pytest.raises(RuntimeError), store.transaction():
        store.append_event(Event(kind="k", message="lost"))
        raise RuntimeError("boom")
    assert store.events() == []


def test_schema_is_versioned_wal_and_reopens(tmp_path):
    path = tmp_path / "state.db"
    first = SqliteStore(path)
    first.append_event(Event(kind="k", message="kept"))
    first.close()
    again = SqliteStore(path)
    assert again.schema_version() == SCHEMA_VERSION
    assert [e.message for e in again.events()] == ["kept"]
    assert again._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    again.close()


def test_postgres_schema_reopens_and_a_newer_one_is_refused(postgres):
    import psycopg

    url = postgres.database()
    first = PostgresStore(url)
    first.append_event(Event(kind="k", message="kept", data={"n": 1}))
    first.close()
    again = PostgresStore(url)
    assert again.schema_version() == SCHEMA_VERSION and [e.data for e in again.events()] == [{"n": 1}]
    again.close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE meta SET value = %s WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(NeedsHuman, match="newer than this releaser"):
        PostgresStore(url)


def test_postgres_types_hold_what_sqlite_holds(postgres):
    """Sizes past 2 GiB, sample times to the microsecond, a read-only open of an empty database."""
    from releaser.model import Sample
    from releaser.store import StoreMissing

    url = postgres.database()
    with pytest.raises(StoreMissing):
        PostgresStore(url, create=False)
    store = PostgresStore(url)
    store.add_release(Release("big", "/a", "ff", 5 * 2**30))
    store.add_samples([Sample("prod", "a", 1764740000.123456, {"requests": 1.5})])
    assert store.get_release("big").size == 5 * 2**30
    assert store.samples("prod", 0, 2e9)[0].ts == 1764740000.123456
    store.close()


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "state.db"
    SqliteStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    conn.commit()
    conn.close()
    with pytest.raises(NeedsHuman, match="newer than this releaser"):
        SqliteStore(path)


def test_lock_refuses_a_live_holder_and_takes_over_a_dead_one(store, tmp_path):
    journal = Journal(store)
    with EnvironmentLock(store, journal, "prod", "promote 1.0"):
        held = store.get_lock("prod")
        assert held.command == "promote 1.0" and not is_stale(held)
        with pytest.raises(BusyError, match="locked by"), EnvironmentLock(store, journal, "prod", "promote 2.0"):
            pass
        with EnvironmentLock(store, journal, "dev", "promote 1.0"):  # other environments are free
            pass
    assert store.get_lock("prod") is None

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock = Lock(
        "prod",
        "bob",
        int(dead.stdout),
        __import__("socket").gethostname(),
        "promote 0.9",
        "2026-01-01T00:00:00+00:00",
        "2999-01-01T00:00:00+00:00",
        "t",
    )
    store.acquire_lock(lock, lambda _: False)
    with EnvironmentLock(store, journal, "prod", "resume"):
        assert store.get_lock("prod").command == "resume"
    assert any(e.kind == "lock.taken_over" for e in store.events())


def test_an_older_schema_is_upgraded_in_place(tmp_path):
    from releaser.store.migrations import MIGRATIONS
    from releaser.store.rows import _statements

    path = tmp_path / "state.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    for statement in _statements(MIGRATIONS[0]):
        conn.execute(statement)
    conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    conn.execute(
        "INSERT INTO releases(version, artifact, sha256, size, status, created_at)"
        " VALUES ('0.9', '/a', 'ff', 1, 'live', '2026-01-01T00:00:00+00:00')"
    )
    conn.commit()
    conn.close()
    store = SqliteStore(path)
    assert store.schema_version() == SCHEMA_VERSION == 12
    old = store.get_release("0.9")
    assert old.status is ReleaseStatus.LIVE and old.url is None and not old.schema
    assert store.reports() == [] and store.samples("prod", 0, 2e9) == [] and store.get_route("prod") is None
    store.close()


def test_reports_outbox_and_samples(store):
    from releaser.model import Report, ReportState, Sample

    store.add_release(Release("1.0", "/a", "ff", 1))
    first = store.schedule_report(
        Report("1.0", "prod", "2026-01-01T00:00:00+00:00", "2026-01-04T00:00:00+00:00", ReportState.SCHEDULED, "<m1@x>")
    )
    assert first.state is ReportState.SCHEDULED and first.message_id == "<m1@x>"
    store.update_report("1.0", state=ReportState.SENT, sent_at="2026-01-04T00:01:00+00:00")
    # passing the last stage again does not schedule a report that went out
    again = store.schedule_report(
        Report("1.0", "prod", "2026-02-01T00:00:00+00:00", "2026-02-04T00:00:00+00:00", ReportState.SCHEDULED, "<m2@x>")
    )
    assert again.state is ReportState.SENT and again.due_at.startswith("2026-01-04") and again.message_id == "<m1@x>"
    with pytest.raises(ValueError):
        store.update_report("1.0", environment="test")

    store.add_samples(
        [
            Sample("prod", "a", 10.0, {"requests": 1.0}),
            Sample("prod", "b", 10.0, None),
            Sample("prod", "a", 20.0, {"requests": 5.0}),
            Sample("test", "a", 15.0, {}),
        ]
    )
    assert [(s.host, s.ts, s.values) for s in store.samples("prod", 0, 15)] == [
        ("a", 10.0, {"requests": 1.0}),
        ("b", 10.0, None),
    ]
    assert store.last_sample_ts("prod") == 20.0 and store.last_sample_ts("dev") is None
    assert store.prune_samples("prod", 15.0) == 2 and len(store.samples("prod", 0, 100)) == 1


# -- the store's faults, through the CLI: one sentence, exit 4, nothing changed on hosts --


def _state_db(project):
    return project.dir / ".releaser" / "state.db"


def test_a_locked_database_refuses_writers_and_lets_readers_read(project):
    config = project.dir / "environments.yaml"
    config.write_text(config.read_text().replace("project: shop\n", "project: shop\nstate: {wait: 1s}\n"))
    project.register("1.0.0")
    holder = sqlite3.connect(_state_db(project))
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        assert project.cli("status", "--json").returncode == 0  # reading needs no write lock
        refused = project.cli("promote", "1.0.0")
        assert refused.returncode == 4, refused.stderr
        assert "is locked by another process (waited 1s)" in refused.stderr and "Traceback" not in refused.stderr
        assert project.current("dev-1") is None
    finally:
        holder.rollback()
        holder.close()
    project.cli("promote", "1.0.0", check=True)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "newer"])
def test_a_damaged_or_newer_database_is_one_sentence(project, damage):
    project.register("1.0.0")
    project.cli("promote", "1.0.0", check=True)
    db = _state_db(project)
    if damage == "newer":
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    else:
        for extra in (db.with_name("state.db-wal"), db.with_name("state.db-shm")):
            extra.unlink(missing_ok=True)
        db.write_bytes(db.read_bytes()[:1000] if damage == "truncated" else b"not a database at all" * 100)
    for args in (("status",), ("promote", "1.0.0"), ("rollback", "dev", "--reason", "x")):
        proc = project.cli(*args)
        assert proc.returncode == 4, (args, proc.stderr)
        assert "Traceback" not in proc.stderr and "state database" in proc.stderr
        assert ("newer than this releaser" if damage == "newer" else "damaged") in proc.stderr
    assert project.current("dev-1") == "1.0.0" and project.current("test-1") is None


def test_a_lost_database_beside_hosts_with_records_is_refused_then_rebuilt(project):
    project.register("1.0.0")
    project.cli("run", "1.0.0", "--to", "test", check=True)
    for path in _state_db(project).parent.glob("state.db*"):
        path.unlink()
    looked = project.cli("status")
    assert looked.returncode == 0 and "state rebuild" in looked.stderr
    assert not _state_db(project).exists()  # looking creates nothing
    project.register("1.1.0")
    refused = project.cli("promote", "1.1.0")
    assert refused.returncode == 4, refused.stderr
    assert "carry releaser's records" in refused.stderr and "`releaser state rebuild`" in refused.stderr
    assert project.current("dev-1") == "1.0.0"
    project.cli("state", "rebuild", check=True)
    hosts = project.status()["environments"]
    assert hosts["dev"]["hosts"]["dev-1"]["version"] == "1.0.0"
    assert hosts["test"]["hosts"]["test-2"]["version"] == "1.0.0"
    project.cli("promote", "1.1.0", check=True)
    assert project.current("dev-1") == "1.1.0"


def test_a_release_rolled_back_in_full_starts_again_at_gray(tmp_path):
    """gray passed, full failed and rolled prod back: the next promotion is gray again (the
    cohort no longer runs the release), never straight to full; selftest stays passed."""
    from releaser.config import load_config
    from releaser.journal import Journal
    from releaser.model import Cause, Release, RunStatus
    from releaser.pipeline import Pipeline
    from tests.harness.configs import write_project

    config = load_config(write_project(tmp_path / "project") / "environments.yaml")
    store = SqliteStore(tmp_path / "state.db")
    pipeline = Pipeline(config, store, Journal(store))
    store.add_release(Release("2.0", "a.tar.gz", "0" * 64, 1))
    store.start_stage_run("2.0", "selftest", "dev", "me", RunStatus.PASSED)
    store.start_stage_run("2.0", "gray", "prod", "me", RunStatus.PASSED)
    assert pipeline.next_stage("2.0") == "full"
    full = store.start_stage_run("2.0", "full", "prod", "me")
    store.start_rollback("prod", Cause.STAGE, ["2.0"], "checks failed", full.id)
    store.set_stage_run_status(full.id, RunStatus.ROLLED_BACK, "checks failed")
    assert pipeline.passed_stages("2.0") == {"selftest"}
    assert pipeline.next_stage("2.0") == "gray"


# -- PostgreSQL's own faults, through the CLI --


def _on_postgres(project, url):
    project.state_url = url
    project.write_config()


def test_postgres_locked_refuses_writers_lets_readers_read_and_never_shows_the_password(project, postgres):
    import psycopg

    from releaser.store.postgresql import WRITER_LOCK
    from tests.harness.postgres import PASSWORD

    _on_postgres(project, postgres.database())
    config = project.dir / "environments.yaml"
    config.write_text(
        config.read_text().replace("state: {backend: postgresql}", "state: {backend: postgresql, wait: 1s}")
    )
    project.register("1.0.0")
    with psycopg.connect(project.state_url, autocommit=True) as holder:
        holder.execute("BEGIN")
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (WRITER_LOCK,))  # another runner is writing
        assert project.cli("status", "--json").returncode == 0
        refused = project.cli("promote", "1.0.0")
        assert refused.returncode == 4, refused.stderr
        assert "is locked by another process (waited 1s)" in refused.stderr and "Traceback" not in refused.stderr
        assert project.current("dev-1") is None
        holder.execute("ROLLBACK")
    project.cli("promote", "1.0.0", check=True)
    assert project.current("dev-1") == "1.0.0"

    for url, words in (
        (postgres.url("nosuchdb"), "nosuchdb"),
        (postgres.url("postgres", "wrong-Pw-123"), "password"),
        (f"postgresql://releaser:{PASSWORD}@127.0.0.1:1/x", "127.0.0.1:1/x"),
    ):
        project.state_url = url
        proc = project.cli("promote", "1.0.0")
        assert proc.returncode == 4 and words in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert PASSWORD not in proc.stderr + proc.stdout and "wrong-Pw-123" not in proc.stderr + proc.stdout
    project.state_url = None
    proc = project.cli("status")  # the variable is not set
    assert proc.returncode == 4 and "$RELEASER_DATABASE_URL is not set" in proc.stderr, proc.stderr


def test_state_migrate_moves_every_row_and_the_team_goes_on_from_postgres(project, postgres):
    """A populated SQLite state (a full rollout, a failed gray rolled back, reports, check memory,
    samples, heartbeats) moves to PostgreSQL: every row of every table equal, ids kept; the next
    promotion continues from there; the old file refuses use; a second move is refused."""
    import psycopg

    from releaser.store.move import TABLES, _rows

    project.register("1.0.0")
    project.cli("run", "1.0.0", check=True)
    project.register("1.1.0", fail_on=("web-1",))
    project.cli("run", "1.1.0", check=1)
    url = postgres.database()
    before = SqliteStore(project.dir / ".releaser" / "state.db")
    before.beat("watch", {"pid": 1})
    original = {table: _rows(before, table) for table in TABLES}
    before.close()
    assert original["events"] and original["rollbacks"] and original["check_memory"] and original["reports"]

    project.state_url = url  # the variable is set; the configuration still says SQLite
    moved = project.cli("state", "migrate", "--to", "postgresql", "--json", check=True)
    assert json.loads(moved.stdout)["rows"]["events"] == len(original["events"])
    assert "pg-secret" not in moved.stdout + moved.stderr

    target = PostgresStore(url)
    copied = {table: _rows(target, table) for table in TABLES}
    for table in TABLES:
        want = [row for row in original[table] if table != "meta" or row["key"] != "schema_version"]
        got = [row for row in copied[table] if table != "meta" or row["key"] != "schema_version"]
        if table == "events":
            got = got[:-1]  # and one more: state.moved, journaled in the new home
        assert got == want, table
    assert copied["events"][-1]["kind"] == "state.moved"
    target.close()

    old = project.cli("status")
    assert old.returncode == 4 and "was moved to PostgreSQL" in old.stderr, old.stderr
    assert project.cli("state", "migrate", "--to", "postgresql").returncode == 4

    project.write_config()  # now with `state: {backend: postgresql}`
    status = project.status()
    assert [r["version"] for r in status["releases"]] == ["1.0.0", "1.1.0"]
    project.register("1.2.0")
    project.cli("promote", "1.2.0", check=True)
    assert project.current("dev-1") == "1.2.0"
    with psycopg.connect(url) as conn:
        ids = [row[0] for row in conn.execute("SELECT id FROM events ORDER BY id")]
    assert ids == sorted(set(ids)) and len(ids) > len(original["events"]) + 1


def test_state_migrate_refuses_while_an_environment_is_held(project, postgres):
    from tests.harness.shop import wait_for

    project.write_config(bake="120s")
    project.register("1.0.0")
    project.state_url = postgres.database()
    holder = project.spawn("promote", "1.0.0")  # selftest holds dev through its bake
    store = SqliteStore(project.dir / ".releaser" / "state.db")
    try:
        wait_for(store, "stage.started")
        proc = project.cli("state", "migrate", "--to", "postgresql")
        assert proc.returncode == 3 and "holds an environment: dev" in proc.stderr, proc.stderr
    finally:
        holder.terminate()
        holder.wait(timeout=60)
        store.close()
    assert project.cli("state", "migrate", "--to", "postgresql").returncode == 0
