"""The store: releases, stage runs, host deployments, host state, the journal, locks, approvals,
alerts, the report outbox, heartbeats, routes, metric samples, and the app database's migrations,
backups and drills, and the dashboard's sessions.

Every query is written once, in SQL that SQLite and PostgreSQL both speak (`?` parameters), in the
table group that owns its tables (store.promotion, store.watching, store.database) over the shared plumbing
(store.plumbing). A backend brings its connections, how a write transaction begins, how an insert
returns its id and how the schema's column types are spelled (store.sqlite, store.postgresql).
Every write is durable when the method returns; `transaction()` groups several writes.
"""

from __future__ import annotations

from .database import DatabaseTables
from .promotion import PromotionTables
from .watching import WatchingTables
from .web import WebTables


class Store(PromotionTables, WatchingTables, DatabaseTables, WebTables):
    """One connection per thread; `transaction()` nests; a database already current is only read."""
