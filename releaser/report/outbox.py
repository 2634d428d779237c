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
from ..model import Config, Report, ReportState, utcnow
from ..notify import Refused, deliver, redact, webhook_url
from ..record import Record
from ..store import Store
from .compute import build
from .mail import MailNotSent, MailUncertain, compose, send
from .render import Rendered, render

RETRY_PAUSE, MAX_RETRY_PAUSE = 60.0, 3600.0


def schedule(config: Config, store: Store, journal: Journal, version: str, environment: str) -> Report:
    """Called when `version` passes the last stage: its report is due `report.delay` later."""
    now = datetime.now(UTC)
    sender = config.report.mail.sender if config.report.mail else ""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "releaser.invalid"
    report = store.schedule_report(
        Report(
            release=version,
            environment=environment,
            live_at=now.isoformat(timespec="milliseconds"),
            due_at=(now + timedelta(seconds=config.report.delay)).isoformat(timespec="milliseconds"),
            state=ReportState.SCHEDULED,
            message_id=make_msgid(f"report.{version}", domain=domain),
        )
    )
    if report.state is ReportState.SCHEDULED:
        journal.record(
            Event.REPORT_SCHEDULED,
            f"the effect report of {version} is due {report.due_at}",
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
    release: str
    state: str  # sent | failed | unconfirmed | skipped
    detail: str = ""
    path: str = ""

    @property
    def needs_human(self) -> bool:
        return self.state in ("failed", "unconfirmed")


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, MailNotSent) and not exc.permanent


class Outbox:
    def __init__(self, config: Config, store: Store, journal: Journal):
        self.config, self.store, self.journal = config, store, journal

    def due(self, now: datetime | None = None) -> list[Report]:
        """Reports whose time has come, and whose last failed attempt was long enough ago: the
        pause doubles from a minute up to an hour, so that a mail server that is down does not
        hold up `watch`, which also minds the rollback windows."""
        now = now or datetime.now(UTC)
        result = []
        for report in self.store.reports():
            if report.state not in (ReportState.SCHEDULED, ReportState.SENDING, ReportState.COMMITTING):
                continue
            ready = datetime.fromisoformat(report.due_at)
            if report.last_error and report.attempts:
                pause = min(RETRY_PAUSE * 2 ** (report.attempts - 1), MAX_RETRY_PAUSE)
                ready = max(ready, datetime.fromisoformat(report.updated_at) + timedelta(seconds=pause))
            if ready <= now:
                result.append(report)
        return result

    def send_due(self) -> list[Outcome]:
        return [self.send(report.release) for report in self.due()]

    def send(self, version: str, force: bool = False) -> Outcome:
        """Deliver one report, unless it went out already or another sender holds it."""
        self._scheduled(version)
        try:
            with EnvironmentLock(self.store, self.journal, f"report:{version}", f"report {version} --send"):
                return self._send_locked(version, force)
        except BusyError:
            return Outcome(version, "skipped", "another releaser is sending it")

    def _scheduled(self, version: str) -> Report:
        """The report of `version` as stored now; UsageError when none is scheduled."""
        report = self.store.get_report(version)
        if report is None:
            raise UsageError(
                f"{version} has no scheduled report: it has not passed the last stage "
                f"({self.config.pipeline[-1].name}); `releaser report {version}` previews it"
            )
        return report

    def _send_locked(self, version: str, force: bool) -> Outcome:
        report = self._scheduled(version)
        if report.state is ReportState.SENT:
            return Outcome(version, "skipped", f"already sent at {report.sent_at}", report.path)
        if report.state is ReportState.COMMITTING:
            self._unconfirmed(report, "the sender stopped while the mail server was accepting the message")
            report.state = ReportState.UNCONFIRMED
        if report.state is ReportState.UNCONFIRMED and not force:
            return Outcome(version, "unconfirmed", self._scheduled(version).last_error, report.path)
        recipients = self._recipients(report) if self.config.report.mail else ()
        with self.store.transaction():
            self.store.update_report(version, state=ReportState.SENDING, attempts=report.attempts + 1)
            self.journal.record(
                Event.REPORT_SENDING,
                f"writing the effect report of {version}"
                + (f" and mailing it to {', '.join(recipients)}" if recipients else ""),
                release=version,
                data={"attempt": report.attempts + 1, "recipients": list(recipients)},
            )
        document, rendered = produce(self.config, self.store, version)
        path = str(write_copies(self.config, version, rendered))
        self.store.update_report(version, path=path)
        try:
            refused = self._mail(report, rendered)
        except MailUncertain as exc:
            return Outcome(version, "unconfirmed", self._unconfirmed(report, str(exc)), path)
        except MailNotSent as exc:
            self.store.update_report(version, state=ReportState.SCHEDULED, last_error=str(exc))
            self.journal.record(
                Event.REPORT_FAILED,
                f"the report of {version} could not be mailed (it stays due): {exc}",
                release=version,
                data={"error": str(exc), "attempts": report.attempts + 1},
            )
            return Outcome(version, "failed", str(exc), path)
        detail = "; ".join(f"refused {r}: {why}" for r, why in refused.items())
        with self.store.transaction():
            self.store.update_report(
                version,
                state=ReportState.SENT,
                sent_at=utcnow(),
                last_error=detail,
                delivered_to=len([r for r in recipients if r not in refused]),
            )
            self.journal.record(
                Event.REPORT_SENT,
                f"the effect report of {version} was "
                + (f"mailed to {', '.join(r for r in recipients if r not in refused)}" if recipients else "written")
                + f" ({path})"
                + (f"; {detail}" if detail else ""),
                release=version,
                data={
                    "path": path,
                    "recipients": list(recipients),
                    "refused": refused,
                    "message_id": report.message_id,
                },
            )
        self._post_webhook(report, rendered.subject, document, path)
        return Outcome(version, "sent", detail, path)

    def _unconfirmed(self, report: Report, cause: str) -> str:
        """The mail may have arrived: say so, and how to check and resend; never guess."""
        why = (
            f"{cause}; it may have arrived. Look for Message-ID {report.message_id} in the recipients' mail; "
            f"if it is missing, run `releaser report {report.release} --send --force`"
        )
        self.store.update_report(report.release, state=ReportState.UNCONFIRMED, last_error=why)
        self.journal.record(
            Event.REPORT_UNCONFIRMED,
            f"report of {report.release}: {why}",
            release=report.release,
            data={"message_id": report.message_id},
        )
        return why

    def _recipients(self, report: Report) -> tuple[str, ...]:
        env = self.config.environments.get(report.environment)
        return env.report_to if env else ()

    def _mail(self, report: Report, rendered: Rendered) -> dict[str, str]:
        spec = self.config.report.mail
        if spec is None:
            return {}
        recipients = self._recipients(report)
        if not recipients:
            raise MailNotSent(f"environment {report.environment} names no report_to recipients", permanent=True)
        message = compose(rendered, spec, recipients, report.message_id, report.release)

        def commit() -> None:
            self.store.update_report(report.release, state=ReportState.COMMITTING)

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
                self.store.update_report(report.release, state=ReportState.SENDING)
                raise

        return attempt()

    def _post_webhook(self, report: Report, subject: str, document: dict, path: str) -> None:
        """At least once, best effort: the mail is the delivery of record."""
        hook = self.config.report.webhook
        if hook is None:
            return
        body = {
            "project": self.config.project,
            "release": report.release,
            "path": path,
            "message_id": report.message_id,
            "report": document,
        }
        try:
            deliver(hook, f"{subject}: {path}", body, headers={"Idempotency-Key": report.message_id.strip("<>")})
        except (requests.RequestException, Refused) as exc:
            self.journal.record(
                Event.REPORT_WEBHOOK_FAILED,
                f"report of {report.release}: webhook "
                f"{redact(webhook_url(hook))} failed: "
                f"{exc if isinstance(exc, Refused) else type(exc).__name__}",
                release=report.release,
            )
