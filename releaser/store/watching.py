"""The tables of watching and reporting: the journal, approvals and aborts, alerts, effect reports,
heartbeats, routes and metric samples."""

from __future__ import annotations

import json

from ..model import (
    AlertRecord,
    AlertState,
    ApprovalRequest,
    Event,
    Report,
    ReportState,
    Sample,
    ServiceReport,
    utcnow,
)
from .plumbing import Plumbing
from .rows import _approval, _event, _report, _service_report, _where, _written


class WatchingTables(Plumbing):
    """What is appended and decided around the promotions: by people, daemons and the metric sources."""

    # -- the journal --

    def append_event(self, event: Event) -> Event:
        """Append to the journal; stamps ts (UTC) and id."""
        event.ts = event.ts or utcnow()
        event.id = self._insert(
            "INSERT INTO events(ts, kind, environment, release, stage, host, message, data)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                event.ts,
                event.kind,
                event.environment,
                event.release,
                event.stage,
                event.host,
                event.message,
                json.dumps(event.data, default=str),
            ),
        )
        return event

    def events(
        self, release: str | None = None, environment: str | None = None, limit: int | None = None
    ) -> list[Event]:
        """Oldest first; with `limit`, the newest `limit` events."""
        where, args = _where(release=release, environment=environment)
        sql = f"SELECT * FROM events {where} ORDER BY id DESC"  # noqa: S608 - fixed columns
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        rows = list(self._db.execute(sql, args))
        rows.reverse()
        return [_event(r) for r in rows]

    def last_event_id(self) -> int:
        row = self._db.execute("SELECT MAX(id) AS last FROM events").fetchone()
        return int(row["last"] or 0)

    def find_events(
        self,
        release: str | None = None,
        environment: str | None = None,
        kind: str | None = None,
        text: str | None = None,
        after: int | None = None,
        before: int | None = None,
        limit: int = 200,
    ) -> list[Event]:
        """Newest first: the journal filtered by release, environment, a kind or its family
        (`stage` matches `stage.started`), words in the message, and an id range."""
        clauses: list[str] = ["1 = 1"]
        args: list[object] = []
        for column, value in (("release", release), ("environment", environment)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        if kind:
            clauses.append("(kind = ? OR kind LIKE ?)")
            args += [kind, kind.replace("%", "").replace("_", "") + ".%"]
        if text:
            clauses.append("LOWER(message) LIKE ?")
            args.append("%" + text.lower().replace("%", "").replace("_", "") + "%")
        if after is not None:
            clauses.append("id > ?")
            args.append(after)
        if before is not None:
            clauses.append("id < ?")
            args.append(before)
        sql = f"SELECT * FROM events WHERE {' AND '.join(clauses)} ORDER BY id DESC LIMIT ?"  # noqa: S608 - fixed columns
        return [_event(r) for r in self._db.execute(sql, [*args, limit])]

    def journal_begins(self) -> str | None:
        """When the journal's first event was written (None: empty): what came before is unknown."""
        return self._db.execute("SELECT MIN(ts) AS ts FROM events").fetchone()["ts"]

    # -- approvals and aborts --

    def request_approval(
        self, release: str, stage: str, by: str, approvers: list[str], not_by_promoter: bool
    ) -> tuple[ApprovalRequest, bool]:
        """The open request (awaiting or approved) for the stage, or a new awaiting one; True when new."""
        with self.transaction():
            row = self._db.execute(
                "SELECT * FROM approvals WHERE release = ? AND stage = ? AND state IN ('awaiting', 'approved')"
                " ORDER BY id DESC LIMIT 1",
                (release, stage),
            ).fetchone()
            if row is not None:
                return _approval(row), False
            request_id = self._insert(
                "INSERT INTO approvals(release, stage, state, requested_by, requested_at, approvers, not_by_promoter)"
                " VALUES (?, ?, 'awaiting', ?, ?, ?, ?)",
                (release, stage, by, utcnow(), json.dumps(approvers), int(not_by_promoter)),
            )
            return _written(self.approval(request_id)), True

    def approval(self, request_id: int) -> ApprovalRequest | None:
        row = self._db.execute("SELECT * FROM approvals WHERE id = ?", (request_id,)).fetchone()
        return _approval(row) if row else None

    def approvals(self, release: str | None = None, state: str | None = None) -> list[ApprovalRequest]:
        """Oldest first."""
        where, args = _where(release=release, state=state)
        return [_approval(r) for r in self._db.execute(f"SELECT * FROM approvals {where} ORDER BY id", args)]  # noqa: S608 - fixed columns

    def decide_approval(self, request_id: int, state: str, by: str, reason: str, expect: str) -> bool:
        """Move the request from `expect` to `state` (approved, rejected, used, cancelled); False when
        it was no longer in `expect` (another runner decided first)."""
        cursor = self._db.execute(
            "UPDATE approvals SET state = ?, decided_by = ?, decided_at = ?, reason = ? WHERE id = ? AND state = ?",
            (state, by, utcnow(), reason, request_id, expect),
        )
        return cursor.rowcount == 1

    def use_approval(self, request_id: int, stage_run_id: int) -> bool:
        """Spend an approved request on the stage run it started; False when it was not approved."""
        cursor = self._db.execute(
            "UPDATE approvals SET state = 'used', stage_run_id = ? WHERE id = ? AND state = 'approved'",
            (stage_run_id, request_id),
        )
        return cursor.rowcount == 1

    def request_abort(self, run_id: int, by: str, reason: str) -> bool:
        """Ask the open run to roll back; False when it is no longer open or was asked already."""
        cursor = self._db.execute(
            "UPDATE stage_runs SET abort_by = ?, abort_reason = ? WHERE id = ? AND abort_by IS NULL"
            " AND finished_at IS NULL",
            (by, reason, run_id),
        )
        return cursor.rowcount == 1

    # -- alerts --

    def record_alert(self, alert: AlertRecord) -> bool:
        """Keep a firing alert group for an environment; False when that episode (group, environment,
        start) was recorded already (Alertmanager repeats its notifications)."""
        with self.transaction():
            known = self._db.execute(
                "SELECT 1 FROM alerts WHERE group_key = ? AND environment = ? AND starts_at = ?",
                (alert.group_key, alert.environment, alert.starts_at),
            ).fetchone()
            if known:
                return False
            alert.received_at = alert.received_at or utcnow()
            alert.id = self._insert(
                "INSERT INTO alerts(group_key, environment, starts_at, received_at, alertname, labels, summary, state,"
                " outcome) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    alert.group_key,
                    alert.environment,
                    alert.starts_at,
                    alert.received_at,
                    alert.alertname,
                    json.dumps(alert.labels, sort_keys=True),
                    alert.summary,
                    alert.state,
                    alert.outcome,
                ),
            )
            return True

    def alerts(self, state: str | None = None) -> list[AlertRecord]:
        """Oldest first; `pending` ones are still to be acted on."""
        if state is None:
            rows = self._db.execute("SELECT * FROM alerts ORDER BY id")
        else:
            rows = self._db.execute("SELECT * FROM alerts WHERE state = ? ORDER BY id", (state,))
        return [
            AlertRecord(**{**dict(r), "labels": json.loads(r["labels"]), "state": AlertState(r["state"])}) for r in rows
        ]

    def settle_alert(self, alert_id: int, outcome: str) -> bool:
        """Mark a pending alert acted on; False when another process did first."""
        cursor = self._db.execute(
            "UPDATE alerts SET state = 'done', outcome = ? WHERE id = ? AND state = 'pending'", (outcome, alert_id)
        )
        return cursor.rowcount == 1

    # -- effect reports --

    def schedule_report(self, report: Report) -> Report:
        """Record a report to send; a release that passes its last stage again is rescheduled,
        unless its report was already sent. Returns the record as stored."""
        with self.transaction():
            self._db.execute(
                "INSERT INTO reports(release, environment, live_at, due_at, state, message_id, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(release) DO UPDATE SET environment = excluded.environment,"
                " live_at = excluded.live_at, due_at = excluded.due_at, state = excluded.state,"
                " updated_at = excluded.updated_at WHERE reports.state != 'sent'",
                (
                    report.release,
                    report.environment,
                    report.live_at,
                    report.due_at,
                    str(report.state),
                    report.message_id,
                    utcnow(),
                ),
            )
            return _written(self.get_report(report.release))

    def get_report(self, release: str) -> Report | None:
        row = self._db.execute("SELECT * FROM reports WHERE release = ?", (release,)).fetchone()
        return _report(row) if row else None

    def reports(self) -> list[Report]:
        """Soonest due first."""
        return [_report(r) for r in self._db.execute("SELECT * FROM reports ORDER BY due_at, release")]

    def update_report(self, release: str, **changes: object) -> None:
        """Set the given fields (state, attempts, last_error, sent_at, path, delivered_to); stamps
        updated_at."""
        self._update_delivery("reports", "release = ?", (release,), changes)

    def _update_delivery(self, table: str, where: str, keys: tuple, changes: dict[str, object]) -> None:
        """Set the delivery fields of an outbox row (reports, service_reports); stamps updated_at."""
        allowed = {"state", "attempts", "last_error", "sent_at", "path", "delivered_to"}
        if not changes or set(changes) - allowed:
            raise ValueError(f"cannot update report fields {sorted(set(changes) - allowed)}")
        columns = ", ".join(f"{name} = ?" for name in changes)
        values = [str(v) if isinstance(v, ReportState) else v for v in changes.values()]
        self._db.execute(
            f"UPDATE {table} SET {columns}, updated_at = ? WHERE {where}",  # noqa: S608 - checked names
            (*values, utcnow(), *keys),
        )

    # -- monthly service reports --

    def schedule_service_report(self, report: ServiceReport) -> ServiceReport:
        """Record a month's service report to send, unless it is recorded already (a month is
        reported once). Returns the record as stored."""
        with self.transaction():
            self._db.execute(
                "INSERT INTO service_reports(environment, month, due_at, state, message_id, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(environment, month) DO NOTHING",
                (report.environment, report.month, report.due_at, str(report.state), report.message_id, utcnow()),
            )
            return _written(self.get_service_report(report.environment, report.month))

    def get_service_report(self, environment: str, month: str) -> ServiceReport | None:
        row = self._db.execute(
            "SELECT * FROM service_reports WHERE environment = ? AND month = ?", (environment, month)
        ).fetchone()
        return _service_report(row) if row else None

    def service_reports(self) -> list[ServiceReport]:
        """Soonest due first."""
        rows = self._db.execute("SELECT * FROM service_reports ORDER BY due_at, environment")
        return [_service_report(r) for r in rows]

    def update_service_report(self, environment: str, month: str, **changes: object) -> None:
        """As update_report, for a month's service report."""
        self._update_delivery("service_reports", "environment = ? AND month = ?", (environment, month), changes)

    # -- heartbeats --

    def beat(self, name: str, data: dict) -> None:
        """Record that the process `name` is alive now, with what it says of itself."""
        with self.transaction():
            self._db.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (f"heartbeat:{name}", json.dumps({**data, "at": utcnow()})),
            )

    def heartbeats(self) -> dict[str, dict]:
        """name -> the last data each beat with, plus `at` (when)."""
        rows = self._db.execute("SELECT key, value FROM meta WHERE key LIKE 'heartbeat:%' ORDER BY key")
        return {row["key"].removeprefix("heartbeat:"): json.loads(row["value"]) for row in rows}

    # -- routes --

    def save_route(self, environment: str, route: dict, applied: bool, why: str) -> None:
        """Store the route meant for the router (applied False: being put live, or refused)."""
        with self.transaction():
            self._db.execute(
                "INSERT INTO routes(environment, route, applied, why, updated_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(environment) DO UPDATE SET route = excluded.route, applied = excluded.applied, "
                "why = excluded.why, updated_at = excluded.updated_at",
                (environment, json.dumps(route), int(applied), why, utcnow()),
            )

    def get_route(self, environment: str) -> dict | None:
        """{"route": dict, "applied": bool, "why": str, "updated_at": str}, or None before any."""
        row = self._db.execute(
            "SELECT route, applied, why, updated_at FROM routes WHERE environment = ?", (environment,)
        ).fetchone()
        if row is None:
            return None
        return {
            "route": json.loads(row["route"]),
            "applied": bool(row["applied"]),
            "why": row["why"],
            "updated_at": row["updated_at"],
        }

    # -- samples --

    def add_samples(self, samples: list[Sample]) -> None:
        with self.transaction():
            self._db.executemany(
                "INSERT INTO samples(environment, host, ts, metric_values) VALUES (?, ?, ?, ?)",
                [(s.environment, s.host, s.ts, None if s.values is None else json.dumps(s.values)) for s in samples],
            )

    def samples(self, environment: str, start: float, end: float) -> list[Sample]:
        """Samples with start <= ts <= end, oldest first."""
        rows = self._db.execute(
            "SELECT * FROM samples WHERE environment = ? AND ts >= ? AND ts <= ? ORDER BY ts, id",
            (environment, start, end),
        )
        return [
            Sample(
                r["environment"],
                r["host"],
                r["ts"],
                None if r["metric_values"] is None else json.loads(r["metric_values"]),
            )
            for r in rows
        ]

    def last_sample_ts(self, environment: str) -> float | None:
        row = self._db.execute("SELECT MAX(ts) AS ts FROM samples WHERE environment = ?", (environment,)).fetchone()
        return row["ts"]

    def prune_samples(self, environment: str, before: float) -> int:
        """Forget samples older than `before`; returns how many."""
        return self._db.execute("DELETE FROM samples WHERE environment = ? AND ts < ?", (environment, before)).rowcount
