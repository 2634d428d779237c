"""Monthly service reports through the outbox: the report of month M is due on `report.service.day`
of M+1 in the report's time zone, and is delivered exactly once, as effect reports are.

Each look of `watch` (and `report due --send`) schedules the last month that has ended once its
day has come, then sends every service report due. A month missed entirely (nothing looked
between its day and the next month's) is sent by hand: `releaser report service --month M --send`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from .. import secrets
from ..events import Event
from ..model import Config, ReportState, ServiceReport, parse_ts
from ..store import Store
from .outbox import Outbox, Outcome, Parcel, message_id, ready, write_copies
from .render import Rendered
from .service import build_service, due_at, last_month, month_bounds, service_spec, zone_of
from .service_render import render_service


def produce_service(
    config: Config, store: Store, month: str, environment: str, now: datetime | None = None
) -> tuple[dict, Rendered]:
    """The service report's document and renderings; reasons may quote a server that echoed a secret."""
    document = secrets.scrub_data(build_service(config, store, month, environment, now))
    return document, render_service(document)


def copies_name(environment: str, month: str) -> str:
    """Where its copies go under .releaser/reports/."""
    return f"service/{environment}/{month}"


class ServiceParcel(Parcel):
    kinds = (
        Event.SERVICE_REPORT_SENDING,
        Event.SERVICE_REPORT_SENT,
        Event.SERVICE_REPORT_FAILED,
        Event.SERVICE_REPORT_UNCONFIRMED,
    )

    def __init__(self, config: Config, store: Store, environment: str, month: str):
        self.config, self.store, self.environment, self.month = config, store, environment, month
        self.key = f"service:{environment}:{month}"
        self.stem = f"service-{environment}-{month}"
        self.what = f"the service report of {environment} for {month}"
        self.resend = f"releaser report service --month {month} --env {environment} --send --force"
        self.tags = {"environment": environment}

    def record(self) -> ServiceReport | None:
        return self.store.get_service_report(self.environment, self.month)

    def update(self, **changes: object) -> None:
        self.store.update_service_report(self.environment, self.month, **changes)

    def produce(self) -> tuple[dict, Rendered]:
        return produce_service(self.config, self.store, self.month, self.environment)

    def copy(self, rendered: Rendered) -> Path:
        return write_copies(self.config, copies_name(self.environment, self.month), rendered)

    def outcome(self, state: str, detail: str = "", path: str = "") -> Outcome:
        return Outcome("", state, detail, path, self.environment, self.month)


def schedule_month(config: Config, store: Store, environment: str, month: str) -> ServiceReport:
    """Record the month's report to send (once: a month already recorded is left as it is)."""
    return store.schedule_service_report(
        ServiceReport(
            environment=environment,
            month=month,
            due_at=due_at(month, service_spec(config).day, zone_of(config)).astimezone(UTC).isoformat(),
            state=ReportState.SCHEDULED,
            message_id=message_id(config, f"service.{environment}.{month}"),
        )
    )


def month_come_due(config: Config, store: Store, now: datetime | None = None) -> tuple[str, str] | None:
    """With `report.service.send`: (environment, month) of the last month that has ended once its
    day has come, unless the journal began after it (a report of a month releaser never saw would
    say only 'no data'); None otherwise. Scheduling it is `due_months`'s."""
    spec, env = config.report.service, config.report_environment
    if spec is None or not spec.send or env is None:
        return None
    now = now or datetime.now(UTC)
    zone = zone_of(config)
    month = last_month(now, zone)
    begun = store.journal_begins()
    if due_at(month, spec.day, zone) > now or begun is None or parse_ts(begun) >= month_bounds(month, zone)[1]:
        return None
    return env.name, month


def due_months(outbox: Outbox, now: datetime | None = None) -> list[ServiceParcel]:
    """The month come due scheduled (once), and every service report due now (retries after a
    failure pause as effect reports do)."""
    config, store = outbox.config, outbox.store
    come = month_come_due(config, store, now)
    if come is not None:
        schedule_month(config, store, *come)
    return [ServiceParcel(config, store, r.environment, r.month) for r in due_service_reports(store, now)]


def due_service_reports(store: Store, now: datetime | None = None) -> list[ServiceReport]:
    """The service reports scheduled whose time has come (and whose last failure was long enough ago)."""
    return [r for r in store.service_reports() if ready(r, now)]
