"""The versioned schema both backends share, written in the SQL they both speak.

Each entry upgrades the schema by one version; never edit an entry once released. A backend
may translate column types (see PostgresStore._ddl), nothing else.
"""

from .base import SCHEMA_VERSION

MIGRATIONS: list[str] = [
    """
    CREATE TABLE releases (
        version TEXT PRIMARY KEY,
        artifact TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        size INTEGER NOT NULL,
        notes TEXT NOT NULL DEFAULT '',
        features TEXT NOT NULL DEFAULT '[]',
        status TEXT NOT NULL,
        created_at TEXT NOT NULL,
        created_by TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE stage_runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        release TEXT NOT NULL REFERENCES releases(version),
        stage TEXT NOT NULL,
        environment TEXT NOT NULL,
        status TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        reason TEXT NOT NULL DEFAULT '',
        forced INTEGER NOT NULL DEFAULT 0,
        owner TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX stage_runs_release ON stage_runs(release);
    CREATE TABLE deployments (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        stage_run_id INTEGER REFERENCES stage_runs(id),
        environment TEXT NOT NULL,
        host TEXT NOT NULL,
        action TEXT NOT NULL,
        from_version TEXT,
        to_version TEXT NOT NULL,
        status TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '',
        updated_at TEXT NOT NULL
    );
    CREATE INDEX deployments_run ON deployments(stage_run_id);
    CREATE INDEX deployments_host ON deployments(environment, host);
    CREATE TABLE host_state (
        environment TEXT NOT NULL,
        host TEXT NOT NULL,
        version TEXT,
        previous TEXT,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (environment, host)
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts TEXT NOT NULL,
        kind TEXT NOT NULL,
        environment TEXT,
        release TEXT,
        stage TEXT,
        host TEXT,
        message TEXT NOT NULL,
        data TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX events_release ON events(release);
    CREATE TABLE locks (
        environment TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        pid INTEGER NOT NULL,
        hostname TEXT NOT NULL,
        command TEXT NOT NULL,
        acquired_at TEXT NOT NULL,
        lease_until TEXT NOT NULL,
        token TEXT NOT NULL
    );
    """,
    # 2: pull mode: hosts fetch the artifact from a URL
    "ALTER TABLE releases ADD COLUMN url TEXT",
    # 3: effect reports (the outbox) and the metric samples releaser records itself
    """
    CREATE TABLE reports (
        release TEXT PRIMARY KEY REFERENCES releases(version),
        environment TEXT NOT NULL,
        live_at TEXT NOT NULL,
        due_at TEXT NOT NULL,
        state TEXT NOT NULL,
        message_id TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT NOT NULL DEFAULT '',
        sent_at TEXT,
        path TEXT NOT NULL DEFAULT '',
        updated_at TEXT NOT NULL
    );
    CREATE TABLE samples (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        environment TEXT NOT NULL,
        host TEXT NOT NULL,
        ts REAL NOT NULL,
        metric_values TEXT
    );
    CREATE INDEX samples_environment_ts ON samples(environment, ts);
    """,
    # 4: hosts' own records (phase ids), who works on a run, rollbacks as runs of their own
    """
    ALTER TABLE stage_runs ADD COLUMN pid INTEGER;
    ALTER TABLE stage_runs ADD COLUMN hostname TEXT;
    ALTER TABLE stage_runs ADD COLUMN lease_until TEXT;
    ALTER TABLE stage_runs ADD COLUMN lock_token TEXT;
    ALTER TABLE stage_runs ADD COLUMN last_look_at TEXT;
    ALTER TABLE deployments ADD COLUMN op TEXT NOT NULL DEFAULT '';
    ALTER TABLE host_state ADD COLUMN doubt TEXT NOT NULL DEFAULT '';
    CREATE TABLE rollbacks (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        environment TEXT NOT NULL,
        cause TEXT NOT NULL,
        releases TEXT NOT NULL,
        reason TEXT NOT NULL,
        status TEXT NOT NULL,
        started_at TEXT NOT NULL,
        stage_run_id INTEGER REFERENCES stage_runs(id),
        target TEXT,
        plan TEXT NOT NULL DEFAULT '{}',
        left_hosts TEXT NOT NULL DEFAULT '{}',
        fault_at TEXT,
        detected_at TEXT,
        finished_at TEXT,
        owner TEXT NOT NULL DEFAULT '',
        pid INTEGER,
        hostname TEXT,
        lease_until TEXT,
        lock_token TEXT
    );
    CREATE INDEX rollbacks_environment ON rollbacks(environment);
    """,
    # 5: what checks have seen, kept between looks and processes; rollback windows that were closed
    """
    CREATE TABLE check_memory (
        stage_run_id INTEGER PRIMARY KEY REFERENCES stage_runs(id),
        memory TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    ALTER TABLE stage_runs ADD COLUMN window_closed_at TEXT;
    ALTER TABLE stage_runs ADD COLUMN window_closed_why TEXT;
    """,
    # 6: to how many recipients a report was mailed (0: written only)
    "ALTER TABLE reports ADD COLUMN delivered_to INTEGER",
    # 7: the route each environment's router is told
    """
    CREATE TABLE routes (
        environment TEXT PRIMARY KEY,
        route TEXT NOT NULL,
        applied INTEGER NOT NULL,
        why TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    """,
    # 8: approvals asked for and given, and aborts asked of a running stage from any runner
    """
    CREATE TABLE approvals (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        release TEXT NOT NULL REFERENCES releases(version),
        stage TEXT NOT NULL,
        state TEXT NOT NULL,
        requested_by TEXT NOT NULL,
        requested_at TEXT NOT NULL,
        approvers TEXT NOT NULL DEFAULT '[]',
        not_by_promoter INTEGER NOT NULL DEFAULT 0,
        decided_by TEXT,
        decided_at TEXT,
        reason TEXT NOT NULL DEFAULT '',
        stage_run_id INTEGER REFERENCES stage_runs(id)
    );
    CREATE INDEX approvals_release ON approvals(release, stage);
    ALTER TABLE stage_runs ADD COLUMN abort_by TEXT;
    ALTER TABLE stage_runs ADD COLUMN abort_reason TEXT;
    """,
    # 9: alerts received from Alertmanager, one row per firing episode of a group and environment
    """
    CREATE TABLE alerts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        group_key TEXT NOT NULL,
        environment TEXT NOT NULL,
        starts_at TEXT NOT NULL,
        received_at TEXT NOT NULL,
        alertname TEXT NOT NULL,
        labels TEXT NOT NULL,
        summary TEXT NOT NULL DEFAULT '',
        state TEXT NOT NULL,
        outcome TEXT NOT NULL DEFAULT '',
        UNIQUE (group_key, environment, starts_at)
    );
    """,
    # 10: image releases: the pinned reference (registry/name@sha256:...) hosts pull and run
    "ALTER TABLE releases ADD COLUMN image TEXT",
    # 11: the database: releases' schema steps, the migrations run, backups written, drills rehearsed
    """
    ALTER TABLE releases ADD COLUMN schema_change TEXT NOT NULL DEFAULT '{}';
    CREATE TABLE migrations (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        environment TEXT NOT NULL,
        release TEXT NOT NULL,
        phase TEXT NOT NULL,
        target TEXT NOT NULL,
        status TEXT NOT NULL,
        started_at TEXT NOT NULL,
        from_version TEXT,
        to_version TEXT,
        finished_at TEXT,
        backup_id INTEGER,
        rollback_id INTEGER,
        detail TEXT NOT NULL DEFAULT '',
        backup_path TEXT
    );
    CREATE INDEX migrations_environment ON migrations(environment);
    CREATE TABLE backups (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        environment TEXT NOT NULL,
        host TEXT NOT NULL,
        path TEXT NOT NULL,
        size INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        schema_version TEXT NOT NULL,
        created_at TEXT NOT NULL,
        release TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE drills (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        environment TEXT NOT NULL,
        started_at TEXT NOT NULL,
        status TEXT NOT NULL,
        finished_at TEXT,
        release TEXT,
        previous TEXT,
        rollback_seconds REAL,
        forward_seconds REAL,
        restore_seconds REAL,
        backup_id INTEGER,
        detail TEXT NOT NULL DEFAULT ''
    );
    """,
    # 12: the commit each release was built from (lead time), the monthly service reports' outbox;
    # the dashboard's sign-ins: sessions (by the hash of their cookie's token), attempts (for
    # throttling), the one-time tokens of its forms already used; the journal read by environment
    """
    ALTER TABLE releases ADD COLUMN commit_id TEXT;
    ALTER TABLE releases ADD COLUMN committed_at TEXT;
    CREATE TABLE service_reports (
        environment TEXT NOT NULL,
        month TEXT NOT NULL,
        due_at TEXT NOT NULL,
        state TEXT NOT NULL,
        message_id TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT NOT NULL DEFAULT '',
        sent_at TEXT,
        path TEXT NOT NULL DEFAULT '',
        delivered_to INTEGER,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (environment, month)
    );
    CREATE TABLE web_sessions (
        id TEXT PRIMARY KEY,
        username TEXT NOT NULL,
        via TEXT NOT NULL,
        address TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        ended_at TEXT
    );
    CREATE TABLE web_signins (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        username TEXT NOT NULL,
        address TEXT NOT NULL,
        at TEXT NOT NULL,
        ok INTEGER NOT NULL
    );
    CREATE INDEX web_signins_at ON web_signins(at);
    CREATE TABLE web_forms (
        nonce TEXT PRIMARY KEY,
        session TEXT NOT NULL,
        used_at TEXT NOT NULL
    );
    CREATE INDEX events_environment ON events(environment, id);
    """,
]
if len(MIGRATIONS) != SCHEMA_VERSION:
    raise RuntimeError(f"{len(MIGRATIONS)} migrations for schema version {SCHEMA_VERSION}")
