"""ledger: a sample app whose releases carry a real schema history (Alembic with SQLAlchemy and
psycopg 3, on PostgreSQL), for the tests of database migrations.

Each release tarball (`ledger_artifact`) holds `app.py`, `VERSION`, `alembic.ini` and
`migrations/` with every revision up to the release's own (`STEPS`):

    1.0  0001  items (id, name) with three rows; down drops the table
    1.1  0002  expand: a nullable column title; down drops it
    1.2  0003  expand: a data backfill, title = name where title is null; down does nothing
    1.3  0004  contract: drops name, title becomes not null; down fails (irreversible)
    1.4  0005  fails half-way: creates table audit, then a statement fails; PostgreSQL rolls
               the whole transaction back, so the database stays at 0004 without audit

Migrations run in the release's directory with the database in `DATABASE_URL` (a
`postgresql://` URL). Alembic logs to stderr only, so on stdout `alembic current` prints the
revision alone: `0003 (head)` when it is the release's newest, `0003` when the release knows
later ones, nothing at all on a database without a schema (exit status 0 each time). A release
does not know the revisions of later ones: in an older release's directory `alembic current`,
`upgrade` and `downgrade` exit 255 on a newer database, printing on stdout `FAILED: Can't locate
revision identified by '0004'`; so a downgrade runs with the scripts of the release being left,
and stdout is a revision only when the exit status is 0. A failed migration exits 1 with
Python's traceback on stderr.

`app.py` serves `GET /version` and `GET /health` on 127.0.0.1:`LEDGER_PORT`. /health runs the
query the release's code depends on and answers 200, or 503 with the database's error: a
release on a schema it cannot use is visibly unhealthy (`RUNS_ON`)."""

from __future__ import annotations

from typing import NamedTuple

from tests.harness.postgres import _binaries
from tests.harness.tarballs import tar_gz


class Step(NamedTuple):
    """A release's schema change: its kind, the revision it brings, and whether it can be undone."""

    kind: str  # "expand" (old code still runs after it) or "contract" (old code breaks)
    revision: str
    reversible: bool


STEPS: dict[str, Step] = {
    "1.0": Step("expand", "0001", True),
    "1.1": Step("expand", "0002", True),
    "1.2": Step("expand", "0003", True),
    "1.3": Step("contract", "0004", False),
    "1.4": Step("expand", "0005", True),
}
VERSIONS = tuple(STEPS)
FAILS = "1.4"  # its migration fails half-way and is rolled back
SEEDED = ("alpha", "beta", "gamma")  # the rows 0001 inserts

# the query each release's /health runs: the columns its code reads and writes
HEALTH_QUERIES = {
    "1.0": "select id, name from items limit 1",
    "1.1": "select id, name, title from items limit 1",
    "1.2": "select id, name, title from items limit 1",
    "1.3": "select id, title from items limit 1",
    "1.4": "select id, title from items limit 1",
}
# the schema revisions each release's code serves on (/health 200); on any other it answers 503
RUNS_ON: dict[str, frozenset[str]] = {
    "1.0": frozenset({"0001", "0002", "0003"}),
    "1.1": frozenset({"0002", "0003"}),
    "1.2": frozenset({"0002", "0003"}),
    "1.3": frozenset({"0002", "0003", "0004"}),
    "1.4": frozenset({"0002", "0003", "0004"}),
}

# The service: the host vars LEDGER_PORT and DATABASE_URL; `ready` fills {address} and host vars.
PLAYBOOK = """\
description: ledger, items over HTTP on PostgreSQL, its schema migrated by Alembic.
keep_releases: 3
service:
  command: exec python3 app.py
  ready: "http://{address}:{LEDGER_PORT}/health"
  ready_timeout: 30s
  stop_timeout: 10s
"""

# What releaser runs to migrate, in the release's directory with the host's vars (DATABASE_URL,
# and SCRATCH_URL: a database that restore drills may overwrite). Its own variables:
# RELEASER_SCHEMA_TARGET (a revision) and RELEASER_BACKUP (a file).
MIGRATE_PLAYBOOK_PART = """\
migrate:
  current: alembic current
  up: alembic upgrade "$RELEASER_SCHEMA_TARGET"
  down: alembic downgrade "$RELEASER_SCHEMA_TARGET"
  backup: pg_dump --format=custom --file="$RELEASER_BACKUP" "$DATABASE_URL"
  restore: pg_restore --clean --if-exists --no-owner --single-transaction --dbname="$SCRATCH_URL" "$RELEASER_BACKUP"
  verify: |
    rows=$(psql "$SCRATCH_URL" --no-psqlrc --tuples-only --no-align --command="select count(*) from items") || exit 1
    if [ "$rows" -eq 0 ]; then
      echo "the restored database has no rows in items" >&2
      exit 1
    fi
"""


def ledger_artifact(version: str) -> bytes:
    """The release tarball of ledger `version` (one of VERSIONS)."""
    newest = STEPS[version].revision
    files = {
        "VERSION": version + "\n",
        "app.py": _APP.format(version=version, query=HEALTH_QUERIES[version]),
        "alembic.ini": _ALEMBIC_INI,
        "migrations/env.py": _ENV,
    }
    for revision, (slug, source) in _REVISIONS.items():
        if revision <= newest:
            files[f"migrations/versions/{revision}_{slug}.py"] = source
    return tar_gz(files)


def pg_bin_path() -> str:
    """The directory of PostgreSQL's client programs (pg_dump, pg_restore, psql) matching the
    server the tests start; Debian keeps them off PATH, in /usr/lib/postgresql/VERSION/bin."""
    found = _binaries()
    if found is None:
        raise RuntimeError("PostgreSQL is not installed: the test command installs Debian's postgresql")
    return str(found)


# alembic's own logging goes to stderr: stdout carries only what a command prints (`current`)
_ALEMBIC_INI = """\
[alembic]
script_location = %(here)s/migrations
path_separator = os
# the database: the environment variable DATABASE_URL (migrations/env.py)

[loggers]
keys = root,sqlalchemy,alembic

[handlers]
keys = stderr

[formatters]
keys = generic

[logger_root]
level = WARNING
handlers = stderr
qualname =

[logger_sqlalchemy]
level = WARNING
handlers =
qualname = sqlalchemy.engine

[logger_alembic]
level = INFO
handlers =
qualname = alembic

[handler_stderr]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic

[formatter_generic]
format = %(levelname)-5.5s [%(name)s] %(message)s
"""

_ENV = '''\
"""Runs ledger's migrations on the database in DATABASE_URL, all in one transaction: on
PostgreSQL a migration that fails half-way leaves nothing behind."""

import os
import sys
from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, pool

if context.config.config_file_name is not None:
    fileConfig(context.config.config_file_name)

url = os.environ.get("DATABASE_URL", "")
if not url.startswith("postgresql://"):
    sys.exit("DATABASE_URL must name the database as postgresql://USER:PASSWORD@HOST:PORT/NAME")
engine = create_engine("postgresql+psycopg://" + url.removeprefix("postgresql://"), poolclass=pool.NullPool)
with engine.connect() as connection:
    context.configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()
'''

_REVISIONS = {
    "0001": (
        "items",
        '''\
"""items, with three rows."""

from alembic import op

revision = "0001"
down_revision = None


def upgrade():
    op.execute("create table items (id serial primary key, name text not null)")
    op.execute("insert into items (name) values ('alpha'), ('beta'), ('gamma')")


def downgrade():
    op.execute("drop table items")
''',
    ),
    "0002": (
        "add_title",
        '''\
"""expand: items.title, nullable while the code of 1.0 still writes name alone."""

from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade():
    op.execute("alter table items add column title text")


def downgrade():
    op.execute("alter table items drop column title")
''',
    ),
    "0003": (
        "backfill_title",
        '''\
"""expand: the titles of the rows written before 1.1, from their names."""

from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade():
    op.execute("update items set title = name where title is null")


def downgrade():
    pass  # the backfilled titles are harmless: 0002's downgrade drops the column
''',
    ),
    "0004": (
        "drop_name",
        '''\
"""contract: items.name goes, title is required."""

from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade():
    op.execute("alter table items drop column name")
    op.execute("alter table items alter column title set not null")


def downgrade():
    raise RuntimeError("0004 is irreversible: it dropped items.name; restore a backup taken before it")
''',
    ),
    "0005": (
        "audit",
        '''\
"""audit, with a note for every item: the notes come from a column that is null, so the insert
fails after the table was created, and the transaction is rolled back whole."""

from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade():
    op.execute("create table audit (id serial primary key, item_id integer not null, note text not null)")
    op.execute("insert into audit (item_id, note) select id, null from items")


def downgrade():
    op.execute("drop table audit")
''',
    ),
}

# app.py of each release; formatted with its version and health query (so no other braces)
_APP = '''\
"""ledger {version}: GET /version, and GET /health, which runs the query this release's code
depends on and answers 200, or 503 with the database's error."""

import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg

VERSION = Path(__file__).with_name("VERSION").read_text().strip()
HEALTH_QUERY = "{query}"
DATABASE_URL = os.environ["DATABASE_URL"]


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/version":
            self.answer(200, VERSION)
        elif self.path == "/health":
            try:
                with psycopg.connect(DATABASE_URL, connect_timeout=5) as conn:
                    conn.execute(HEALTH_QUERY).fetchall()
            except psycopg.Error as exc:
                self.answer(503, str(exc).strip())
            else:
                self.answer(200, "ok")
        else:
            self.answer(404, "not found")

    def answer(self, status, text):
        body = (text + "\\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


ThreadingHTTPServer(("127.0.0.1", int(os.environ["LEDGER_PORT"])), Handler).serve_forever()
'''
