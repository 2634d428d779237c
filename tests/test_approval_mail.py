"""Approval requests by mail, through a real SMTP server (aiosmtpd on loopback): who gets the
signed link (the approvers of the stage's environment with an address; never who asked, a
viewer or another environment's approver), in the dashboard's language, and a server that is
down journaled as a failed notification. The configuration's `email` is checked like any key."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from releaser.cli import cli
from releaser.config import load_config
from releaser.decisions import approved
from releaser.errors import AwaitingApproval
from releaser.events import Event
from releaser.interrupts import Interrupts
from releaser.links import link_for, link_problem
from releaser.model import Release, utcnow
from releaser.notify import open_journal
from releaser.passwords import hash_password
from releaser.processes import acting_as
from releaser.store import Store, open_store
from tests.harness.configs import write_project
from tests.harness.marks import starts
from tests.harness.smtp import SmtpServer

SECRET = "a mailed-link secret of thirty-two characters or more"


def configure(root: Path, smtp_port: int, users: str, language: str = "en", approval: str = "{}") -> Path:
    write_project(root)
    config = (root / "environments.yaml").read_text()
    config = config.replace('    vars: {PORT: "8080"}\n', '    vars: {PORT: "8080"}\n    report_to: [am@example.com]\n')
    config = config.replace(
        "  - stage: full\n    environment: prod\n",
        f"  - stage: full\n    environment: prod\n    approval: {approval}\n",
    )
    config += (
        f"report:\n  language: {language}\n"
        f"  mail: {{smtp: '127.0.0.1:{smtp_port}', security: none, from: 'releaser <releaser@example.com>'}}\n"
        f"dashboard:\n  url: https://releaser.example.com\n  users:\n{users}"
    )
    (root / "environments.yaml").write_text(config)
    return root / "environments.yaml"


FRANK = hash_password("frank signs in with a password")
USERS = (
    "    ci: {approver: [prod], email: ci@example.com}\n"  # the promoter: asked, so not told
    "    bob: {approver: [prod], email: bob@example.com}\n"
    "    erin: {approver: ['*'], email: erin@example.com}\n"
    "    dave: {approver: [dev], email: dave@example.com}\n"  # another environment's approver
    "    carol: {email: carol@example.com}\n"  # a viewer
    f'    frank: {{approver: [prod], password: "{FRANK}"}}\n'  # no address: not mailed
)


@pytest.fixture
@starts("smtp")
def smtp(tmp_path):
    server = SmtpServer(tmp_path / "smtp", security="none")
    yield server
    server.stop()


def ask_for_approval(path: Path, monkeypatch) -> Store:
    """`full` of 2.0.0 asked for by ci, as `releaser promote` asks; the notifier then closed (it
    delivers what is queued)."""
    monkeypatch.setenv("RELEASER_DASHBOARD_SECRET", SECRET)
    config = load_config(path)
    store = open_store(config, create=True)
    journal, notifier = open_journal(store, None, config)
    assert notifier is not None
    store.add_release(
        Release(version="2.0.0", artifact="/a.tgz", sha256="ab" * 32, size=1, created_at=utcnow(), created_by="ci")
    )
    with acting_as("ci"), pytest.raises(AwaitingApproval):
        approved(
            store,
            journal,
            config.stage("full"),
            "2.0.0",
            False,
            Interrupts(),
            lambda request: link_for(config.dashboard, request, "2.0.0", "full"),
        )
    notifier.close()
    return store


def test_the_approvers_of_the_stage_get_its_signed_link_by_mail(tmp_path, smtp, monkeypatch):
    store = ask_for_approval(configure(tmp_path / "p", smtp.port, USERS), monkeypatch)
    (mail,) = smtp.messages
    assert sorted(mail["to"]) == ["bob@example.com", "erin@example.com"]
    message = mail["message"]
    assert message["Subject"] == "[shop] 2.0.0 awaits your approval for full (prod)"
    body = message.get_content()
    assert "ci asks to promote 2.0.0 of shop to full on prod." in body
    link = body.split("(you sign in first): ", 1)[1].split()[0]
    (requested,) = store.find_events(kind=Event.APPROVAL_REQUESTED)
    assert link == requested.data["link"]  # the very link the chat gets
    assert requested.environment == "prod"  # the journal filtered by environment shows it
    assert f"full: ci asks to promote 2.0.0; awaiting approval by anyone; decide at {link}" == requested.message
    query = dict(part.split("=", 1) for part in link.split("?", 1)[1].split("&"))
    request = int(link.split("/approvals/", 1)[1].split("?")[0])
    assert link_problem(SECRET, request, "2.0.0", "full", query["until"], query["sig"]) is None
    assert "The link expires at " in body and "releaser approve 2.0.0 --stage full --reason TEXT" in body
    assert not store.find_events(kind=Event.NOTIFY_FAILED)


def test_a_stage_naming_its_approvers_mails_only_them_in_chinese(tmp_path, smtp, monkeypatch):
    path = configure(tmp_path / "p", smtp.port, USERS, language="zh-CN", approval="{approvers: [erin]}")
    ask_for_approval(path, monkeypatch)
    (mail,) = smtp.messages
    assert mail["to"] == ["erin@example.com"]
    assert mail["message"]["Subject"] == "【shop】版本2.0.0的full阶段（prod）等待您审批"
    body = mail["message"].get_content()
    assert "ci请求将shop的版本2.0.0发布到prod的full阶段。" in body and "打开此链接审批（需先登录）：https://" in body


def test_a_mail_server_that_is_down_is_journaled_as_a_failed_notification(tmp_path, smtp, monkeypatch):
    smtp.stop()  # nothing listens on its port now
    store = ask_for_approval(configure(tmp_path / "p", smtp.port, USERS), monkeypatch)
    (failed,) = store.find_events(kind=Event.NOTIFY_FAILED)
    assert "notification of approval.requested to bob@example.com, erin@example.com by mail failed" in failed.message
    assert "MailNotSent" in failed.message and failed.data["kind"] == "approval.requested"


@pytest.mark.parametrize(
    ("user", "mail", "expected"),
    [
        ("bob: {approver: [prod], email: not-an-address}", True, "expected an e-mail address, got 'not-an-address'"),
        ("bob: {approver: [prod], email: bob@example.com}", False, "approval links are mailed through report.mail"),
    ],
)
def test_a_wrong_email_is_refused_at_its_line(tmp_path, user, mail, expected):
    write_project(tmp_path)
    config = (tmp_path / "environments.yaml").read_text()
    if mail:
        config += "report:\n  mail: {smtp: '127.0.0.1:25', from: releaser@example.com}\n"
    config += f"dashboard:\n  users:\n    alice: {{password: 'scrypt$x'}}\n    {user}\n"
    (tmp_path / "environments.yaml").write_text(config)
    result = CliRunner().invoke(cli, ["-C", str(tmp_path), "status"])
    assert result.exit_code == 2, result.output
    line = config.splitlines().index(f"    {user}") + 1
    assert f"environments.yaml:{line}" in result.output and "dashboard.users.bob.email" in result.output
    assert expected in result.output
