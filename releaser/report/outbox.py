"""When reports are due, and their delivery exactly once.

A report is scheduled in the same transaction that records the last stage's pass. Sending
takes a lock in the store (`report:VERSION`, the same lock as environments: owner, pid,
lease), so two `report due --send` at once never both send. The record walks
scheduled -> sending -> committing -> sent:

- dead while `sending`: the server certainly has nothing; the next run sends it.
- dead while `committing` (the final round trip of the mail, see report.mail): the server
  may have it. The next run marks it `unconfirmed` and does not send it again on its own:
  a duplicate to a customer's account manager is worse than a question to the operator,
  who checks the mailbox for its Message-ID and, if it is missing, sends it with
  `releaser report VERSION --send --force` (same Message-ID, so mail clients fold a
  duplicate away).
- a delivery that fails is retried (tenacity) and then stays due, the reason in `status`;
  `report due` tries it again after a pause that doubles from a minute up to an hour.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import make_msgid, parseaddr
from pathlib import Path

import requests
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_random_exponential

from .. import secrets
from ..errors import BusyError, UsageError
from ..events import Event
from ..journal import Journal
from ..locks import EnvironmentLock
from ..mailer import MailNotSent, MailUncertain, send
from ..model import Config, Report, ReportState, ServiceReport, utcnow
from ..notify import Refused, deliver, shown_hook
from ..record import Record
from ..store import Store
from ..terminal import shown_time
from .compute import build
from .mail import compose
from .render import Rendered, render

RETRY_PAUSE, MAX_RETRY_PAUSE = 60.0, 3600.0


def ready(report: Report | ServiceReport, now: datetime | None = None) -> bool:
    """Whether a report is due now: its time has come, and its last failed attempt was long enough
    ago (the pause doubles from a minute up to an hour, so that a mail server that is down does not
    hold up `watch`, which also minds the rollback windows)."""
    if report.state not in (ReportState.SCHEDULED, ReportState.SENDING, ReportState.COMMITTING):
        return False
    now = now or datetime.now(UTC)
    moment = datetime.fromisoformat(report.due_at)
    if report.last_error and report.attempts:
        pause = min(RETRY_PAUSE * 2 ** (report.attempts - 1), MAX_RETRY_PAUSE)
        moment = max(moment, datetime.fromisoformat(report.updated_at) + timedelta(seconds=pause))
    return moment <= now


def message_id(config: Config, name: str) -> str:
    """A report's Message-ID, fixed when it is scheduled (a resend keeps it), in the sender's domain."""
    sender = config.report.mail.sender if config.report.mail else ""
    return make_msgid(name, domain=parseaddr(sender)[1].rpartition("@")[2] or "releaser.invalid")


def schedule(config: Config, store: Store, journal: Journal, version: str, environment: str) -> Report:
    """Called when `version` passes the last stage: its report is due `report.delay` later."""
    now = datetime.now(UTC)
    report = store.schedule_report(
        Report(
            release=version,
            environment=environment,
            live_at=now.isoformat(timespec="milliseconds"),
            due_at=(now + timedelta(seconds=config.report.delay)).isoformat(timespec="milliseconds"),
            state=ReportState.SCHEDULED,
            message_id=message_id(config, f"report.{version}"),
        )
    )
    if report.state is ReportState.SCHEDULED:
        journal.record(
            Event.REPORT_SCHEDULED,
            f"the effect report of {version} is due {shown_time(report.due_at)}",
            release=version,
            environment=environment,
            data={"due_at": report.due_at},
        )
    return report


def write_copies(config: Config, version: str, rendered: Rendered) -> Path:
    """report.html (charts inside), report.md and report.json under .releaser/reports/VERSION/."""
    directory = config.reports_dir / version
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in (
        ("report.html", rendered.html),
        ("report.md", rendered.markdown),
        ("report.json", rendered.json),
    ):
        temporary = directory / f".{name}.tmp"
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(directory / name)
    return directory / "report.html"


def produce(config: Config, store: Store, version: str) -> tuple[dict, Rendered]:
    """The report's document (what the JSON copy and the webhook carry) and its renderings;
    reasons, incidents and metric errors may quote a server that echoed a secret: scrubbed."""
    document = secrets.scrub_data(build(config, store, version))
    return document, render(document)


class Outcome(Record):
    release: str  # the effect report's release ("" for a service report)
    state: str  # sent | written (no mail configured) | failed | unconfirmed | skipped
    detail: str = ""
    path: str = ""
    environment: str = ""  # a service report's environment and month
    month: str = ""

    @property
    def needs_human(self) -> bool:
        return self.state in ("failed", "unconfirmed")

    @property
    def name(self) -> str:
        return self.release or f"service report of {self.environment} for {self.month}"


class Parcel:
    """One report as the outbox delivers it: an effect report (below) or a month's service
    report (report.monthly). Its record is a Report or a ServiceReport: the same delivery fields."""

    key: str  # its lock is report:KEY
    environment: str
    what: str  # "the effect report of 2.4.0", in the journal
    resend: str  # the command that sends an unconfirmed one again
    stem: str  # the attachments' names: report-STEM.md, report-STEM.json
    tags: dict  # the journal events' release / environment
    kinds: tuple[Event, Event, Event, Event]  # sending, sent, failed, unconfirmed

    def record(self) -> Report | ServiceReport | None:
        raise NotImplementedError

    def update(self, **changes: object) -> None:
        raise NotImplementedError

    def produce(self) -> tuple[dict, Rendered]:
        raise NotImplementedError

    def copy(self, rendered: Rendered) -> Path:
        raise NotImplementedError

    def outcome(self, state: str, detail: str = "", path: str = "") -> Outcome:
        return Outcome("", state, detail, path)

    def missing(self) -> str:
        return f"{self.what} is not scheduled"


class EffectParcel(Parcel):
    kinds = (Event.REPORT_SENDING, Event.REPORT_SENT, Event.REPORT_FAILED, Event.REPORT_UNCONFIRMED)

    def __init__(self, config: Config, store: Store, version: str):
        self.config, self.store, self.version = config, store, version
        self.key = self.stem = version
        self.what = f"the effect report of {version}"
        self.resend = f"releaser report {version} --send --force"
        self.tags = {"release": version}
        report = store.get_report(version)
        self.environment = report.environment if report else ""

    def record(self) -> Report | None:
        return self.store.get_report(self.version)

    def update(self, **changes: object) -> None:
        self.store.update_report(self.version, **changes)

    def produce(self) -> tuple[dict, Rendered]:
        return produce(self.config, self.store, self.version)

    def copy(self, rendered: Rendered) -> Path:
        return write_copies(self.config, self.version, rendered)

    def outcome(self, state: str, detail: str = "", path: str = "") -> Outcome:
        return Outcome(self.version, state, detail, path)

    def missing(self) -> str:
        return (
            f"{self.version} has no scheduled report: it has not passed the last stage "
            f"({self.config.pipeline[-1].name}); `releaser report {self.version}` previews it"
        )


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, MailNotSent) and not exc.permanent


class Outbox:
    def __init__(self, config: Config, store: Store, journal: Journal):
        self.config, self.store, self.journal = config, store, journal

    def due(self, now: datetime | None = None) -> list[Report]:
        """Reports whose time has come, and whose last failed attempt was long enough ago."""
        return [report for report in self.store.reports() if ready(report, now)]

    def send_due(self) -> list[Outcome]:
        """Every effect report due, then every service report due (report.monthly)."""
        from .monthly import due_months

        outcomes = [self.send(report.release) for report in self.due()]
        return outcomes + [self.deliver(parcel) for parcel in due_months(self)]

    def send(self, version: str, force: bool = False) -> Outcome:
        """Deliver one effect report, unless it went out already or another sender holds it."""
        return self.deliver(EffectParcel(self.config, self.store, version), force)

    def deliver(self, parcel: Parcel, force: bool = False) -> Outcome:
        """Deliver one report exactly once: a lock keeps two senders apart."""
        self._scheduled(parcel)
        try:
            with EnvironmentLock(self.store, self.journal, f"report:{parcel.key}", f"report {parcel.key} --send"):
                return self._send_locked(parcel, force)
        except BusyError:
            return parcel.outcome("skipped", "another releaser is sending it")

    def _scheduled(self, parcel: Parcel) -> Report | ServiceReport:
        """The report as stored now; UsageError when none is scheduled."""
        report = parcel.record()
        if report is None:
            raise UsageError(parcel.missing())
        return report

    def _send_locked(self, parcel: Parcel, force: bool) -> Outcome:
        report = self._scheduled(parcel)
        sending, sent, failed, _unconfirmed = parcel.kinds
        if report.state is ReportState.SENT:
            return parcel.outcome("skipped", f"already sent at {report.sent_at}", report.path)
        if report.state is ReportState.COMMITTING:
            self._unconfirmed(parcel, report, "the sender stopped while the mail server was accepting the message")
            report.state = ReportState.UNCONFIRMED
        if report.state is ReportState.UNCONFIRMED and not force:
            return parcel.outcome("unconfirmed", self._scheduled(parcel).last_error, report.path)
        recipients = self._recipients(parcel) if self.config.report.mail else ()
        with self.store.transaction():
            parcel.update(state=ReportState.SENDING, attempts=report.attempts + 1)
            self.journal.record(
                sending,
                f"writing {parcel.what}" + (f" and mailing it to {', '.join(recipients)}" if recipients else ""),
                **parcel.tags,
                data={"attempt": report.attempts + 1, "recipients": list(recipients)},
            )
        document, rendered = parcel.produce()
        path = str(parcel.copy(rendered))
        parcel.update(path=path)
        try:
            refused = self._mail(parcel, report, rendered)
        except MailUncertain as exc:
            return parcel.outcome("unconfirmed", self._unconfirmed(parcel, report, str(exc)), path)
        except MailNotSent as exc:
            parcel.update(state=ReportState.SCHEDULED, last_error=str(exc))
            self.journal.record(
                failed,
                f"{parcel.what} could not be mailed (it stays due): {exc}",
                **parcel.tags,
                data={"error": str(exc), "attempts": report.attempts + 1},
            )
            return parcel.outcome("failed", str(exc), path)
        detail = "; ".join(f"refused {r}: {why}" for r, why in refused.items())
        with self.store.transaction():
            parcel.update(
                state=ReportState.SENT,
                sent_at=utcnow(),
                last_error=detail,
                delivered_to=len([r for r in recipients if r not in refused]),
            )
            self.journal.record(
                sent,
                f"{parcel.what} was "
                + (f"mailed to {', '.join(r for r in recipients if r not in refused)}" if recipients else "written")
                + f" ({path})"
                + (f"; {detail}" if detail else ""),
                **parcel.tags,
                data={
                    "path": path,
                    "recipients": list(recipients),
                    "refused": refused,
                    "message_id": report.message_id,
                },
            )
        self._post_webhook(parcel, report, rendered.subject, document, path)
        if not recipients:  # delivered as a copy on disk: never say "sent" of a mail nobody got
            return parcel.outcome("written", "not mailed: report.mail is not configured", path)
        return parcel.outcome("sent", detail, path)

    def _unconfirmed(self, parcel: Parcel, report: Report | ServiceReport, cause: str) -> str:
        """The mail may have arrived: say so, and how to check and resend; never guess."""
        why = (
            f"{cause}; it may have arrived. Look for Message-ID {report.message_id} in the recipients' mail; "
            f"if it is missing, run `{parcel.resend}`"
        )
        parcel.update(state=ReportState.UNCONFIRMED, last_error=why)
        self.journal.record(
            parcel.kinds[3], f"{parcel.what}: {why}", **parcel.tags, data={"message_id": report.message_id}
        )
        return why

    def _recipients(self, parcel: Parcel) -> tuple[str, ...]:
        env = self.config.environments.get(parcel.environment)
        return env.report_to if env else ()

    def _mail(self, parcel: Parcel, report: Report | ServiceReport, rendered: Rendered) -> dict[str, str]:
        spec = self.config.report.mail
        if spec is None:
            return {}
        recipients = self._recipients(parcel)
        if not recipients:
            raise MailNotSent(f"environment {parcel.environment} names no report_to recipients", permanent=True)
        message = compose(rendered, spec, recipients, report.message_id, parcel.stem)

        def commit() -> None:
            parcel.update(state=ReportState.COMMITTING)

        @retry(
            retry=retry_if_exception(_transient),
            stop=stop_after_attempt(3),
            wait=wait_random_exponential(multiplier=0.5, max=5),
            reraise=True,
        )
        def attempt() -> dict[str, str]:
            try:
                return send(spec, message, recipients, commit)
            except MailNotSent:
                parcel.update(state=ReportState.SENDING)
                raise

        return attempt()

    def _post_webhook(
        self, parcel: Parcel, report: Report | ServiceReport, subject: str, document: dict, path: str
    ) -> None:
        """At least once, best effort: the mail is the delivery of record."""
        hook = self.config.report.webhook
        if hook is None:
            return
        body = {
            "project": self.config.project,
            **parcel.tags,
            "path": path,
            "message_id": report.message_id,
            "report": document,
        }
        try:
            deliver(hook, f"{subject}: {path}", body, headers={"Idempotency-Key": report.message_id.strip("<>")})
        except (requests.RequestException, Refused) as exc:
            self.journal.record(
                Event.REPORT_WEBHOOK_FAILED,
                f"{parcel.what}: webhook "
                f"{shown_hook(hook)} failed: "
                f"{exc if isinstance(exc, Refused) else type(exc).__name__}",
                **parcel.tags,
            )
