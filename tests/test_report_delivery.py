"""Delivery of effect reports to a real SMTP server (aiosmtpd on loopback): STARTTLS and
implicit TLS with a login from the environment, attachments, exactly once when `report due
--send` runs twice, at once, or is killed mid-way, and a failure that stays due."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from tests.harness.marks import starts
from tests.harness.smtp import SmtpServer

PASSWORD = "s3cret-smtp-pw"


def configure(
    project, server: SmtpServer, security: str = "starttls", recipients=("am@example.com",), webhook: str = ""
) -> None:
    config = (project.dir / "environments.yaml").read_text()
    config = config.replace("  prod:\n", f"  prod:\n    report_to: [{', '.join(recipients)}]\n", 1)
    config += (
        "report:\n  delay: 0s\n  language: en\n"
        f"  mail:\n    smtp: 127.0.0.1:{server.port}\n    security: {security}\n"
        "    from: 'Releases <releases@example.com>'\n    username_env: SMTP_USER\n    password_env: SMTP_PASSWORD\n"
        f"    ca_file: {server.cert}\n    timeout: 10s\n" + webhook
    )
    (project.dir / "environments.yaml").write_text(config)
    os.environ["SMTP_USER"], os.environ["SMTP_PASSWORD"] = "releaser", PASSWORD


@pytest.fixture
@starts("smtp")
def smtp(tmp_path):
    server = SmtpServer(tmp_path / "smtp", users={"releaser": PASSWORD})
    yield server
    server.stop()


@pytest.fixture
def live(project, smtp):
    """1.0.0 through every stage: its report is due at once."""
    configure(project, smtp)
    project.register("1.0.0")
    project.cli("run", "1.0.0", check=True)
    return project


def wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_report_due_send_mails_the_report_once_with_its_attachments(live, smtp):
    first = json.loads(live.cli("report", "due", "--send", "--json", check=True).stdout)
    assert [s["state"] for s in first["sent"]] == ["sent"]
    second = json.loads(live.cli("report", "due", "--send", "--json", check=True).stdout)
    assert second["due"] == [] and second["sent"] == []
    again = live.cli("report", "1.0.0", "--send", check=True)
    assert "already sent" in again.stdout
    assert len(smtp.messages) == 1

    mail = smtp.messages[0]
    message = mail["message"]
    assert mail["from"] == "releases@example.com" and mail["to"] == ["am@example.com"]
    assert message["Subject"] == "[shop] Release 1.0.0: effect report"
    [report] = live.status()["reports"]
    assert message["Message-ID"] == report["message_id"] and report["state"] == "sent"
    html = message.get_body(("html",)).get_content()
    assert "Release 1.0.0 of shop: what changed" in html
    attachments = {part.get_filename(): part for part in message.iter_attachments()}
    assert set(attachments) == {"report-1.0.0.md", "report-1.0.0.json"}
    document = json.loads(attachments["report-1.0.0.json"].get_content())
    assert document["release"]["version"] == "1.0.0" and document["preview"] is False
    assert "# Release 1.0.0 of shop" in attachments["report-1.0.0.md"].get_content()
    copy = live.dir / ".releaser" / "reports" / "1.0.0"
    assert {p.name for p in copy.iterdir()} == {"report.html", "report.md", "report.json"}
    assert PASSWORD not in (live.cli("history").stdout + json.dumps(live.status()) + (copy / "report.html").read_text())
    assert any(e["kind"] == "report.sent" for e in json.loads(live.cli("history", "--json").stdout)["events"])


def test_two_senders_at_once_deliver_one_mail(live, smtp):
    smtp.mailbox.data_delay = 1.5  # both run while the first is inside the server
    first, second = live.spawn("report", "due", "--send"), live.spawn("report", "due", "--send")
    for proc in (first, second):
        proc.communicate(timeout=60)
        assert proc.returncode == 0
    wait_for(lambda: live.status()["reports"][0]["state"] == "sent")
    assert len(smtp.messages) == 1


def test_killed_before_the_commit_point_is_sent_by_the_next_run(live, smtp):
    smtp.mailbox.rcpt_delay = 3.0
    sender = live.spawn("report", "due", "--send")
    assert smtp.mailbox.rcpt_reached.wait(30)
    os.kill(sender.pid, signal.SIGKILL)
    sender.communicate()
    assert live.status()["reports"][0]["state"] == "sending"
    smtp.mailbox.rcpt_delay = 0.0
    live.cli("report", "due", "--send", check=True)
    # both sessions' RCPT handlers have ended (the killed one's with its connection): that session
    # has nothing left to deliver, and it must not have delivered anything
    assert all(smtp.mailbox.rcpt_handled.acquire(timeout=30) for _ in range(2))
    assert len(smtp.messages) == 1
    assert live.status()["reports"][0]["state"] == "sent"


def test_killed_at_the_commit_point_is_never_sent_twice(live, smtp):
    smtp.mailbox.data_delay = 2.0  # the server holds the final reply; the sender dies waiting
    sender = live.spawn("report", "due", "--send")
    assert smtp.mailbox.data_reached.wait(30)
    os.kill(sender.pid, signal.SIGKILL)
    sender.communicate()
    assert len(smtp.messages) == 1  # the server took it; the sender never heard
    smtp.mailbox.data_delay = 0.0
    rerun = live.cli("report", "due", "--send", check=4)
    assert "unconfirmed" in rerun.stdout and "Message-ID" in rerun.stdout
    live.cli("report", "due", "--send", check=True)  # no longer due: asked of a human, not guessed
    [report] = live.status()["reports"]
    assert report["state"] == "unconfirmed" and "--send --force" in report["last_error"]
    assert "UNCONFIRMED" in live.cli("status").stdout
    assert len(smtp.messages) == 1
    live.cli("report", "1.0.0", "--send", "--force", check=True)  # the operator decides to resend
    assert len(smtp.messages) == 2
    assert smtp.messages[1]["message"]["Message-ID"] == smtp.messages[0]["message"]["Message-ID"]


def test_a_report_that_cannot_be_sent_stays_due_and_says_why(live, smtp):
    os.environ["SMTP_PASSWORD"] = "wrong"
    failed = live.cli("report", "due", "--send", check=4)
    assert "login refused" in failed.stdout
    [report] = live.status()["reports"]
    assert report["state"] == "scheduled" and "login refused" in report["last_error"] and report["attempts"] == 1
    assert "not sent yet: login refused" in live.cli("status").stdout
    os.environ["SMTP_PASSWORD"] = PASSWORD
    pausing = json.loads(live.cli("report", "due", "--send", "--json", check=True).stdout)
    assert pausing["due"] == []  # the next try waits a minute (then 2, 4 ... up to an hour)
    live.cli("report", "1.0.0", "--send", check=True)  # by hand: at once
    assert len(smtp.messages) == 1 and live.status()["reports"][0]["state"] == "sent"


def test_smtp_down_is_retried_then_stays_due(live, smtp):
    smtp.stop()
    failed = live.cli("report", "due", "--send", check=4)
    assert "ConnectionRefusedError" in failed.stdout
    assert live.status()["reports"][0]["state"] == "scheduled"


@pytest.mark.smtp
def test_implicit_tls_a_refused_recipient_and_a_broken_webhook(project, tmp_path, receiver):
    server = SmtpServer(tmp_path / "smtps", security="ssl", users={"releaser": PASSWORD}, refuse=("gone@example.com",))
    try:
        configure(
            project,
            server,
            security="ssl",
            recipients=("am@example.com", "gone@example.com"),
            webhook=f"  webhook:\n    url: {receiver.url}/broken\n",
        )
        project.register("1.0.0")
        project.cli("run", "1.0.0", check=True)
        project.cli("report", "due", "--send", check=True)
        assert len(server.messages) == 1 and server.messages[0]["to"] == ["am@example.com"]
        [report] = project.status()["reports"]
        assert report["state"] == "sent" and "refused gone@example.com" in report["last_error"]
        # the webhook answers 500: retried, journaled; the mail, the delivery of record, stays sent once
        assert len(receiver.received["/broken"]) == 3
        events = json.loads(project.cli("history", "--json").stdout)["events"]
        assert any(e["kind"] == "report.webhook_failed" for e in events)
    finally:
        server.stop()


def test_watch_sends_due_reports_and_posts_the_webhook(project, smtp, receiver):
    configure(project, smtp, webhook=f"  webhook:\n    url: {receiver.url}/reports\n")
    project.register("1.0.0")
    project.cli("run", "1.0.0", check=True)
    watched = json.loads(project.cli("watch", "--once", "--json").stdout)
    assert [r["state"] for r in watched["reports"]] == ["sent"]
    assert len(smtp.messages) == 1
    [posted] = receiver.received["/reports"]
    assert posted["release"] == "1.0.0" and posted["message_id"] == smtp.messages[0]["message"]["Message-ID"]
    assert posted["report"]["release"]["version"] == "1.0.0" and posted["path"].endswith("report.html")
    again = json.loads(project.cli("watch", "--once", "--json").stdout)
    assert again["reports"] == [] and len(smtp.messages) == 1
