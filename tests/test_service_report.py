"""The monthly service report: its figures on a fixed month of journal and samples, checked number
by number in English and Chinese; a month without data; bad configuration and a bad --month; the
commit a release records for its lead time."""

from __future__ import annotations

import json
import subprocess

import pytest
from click.testing import CliRunner

from releaser.cli import cli
from releaser.store import SqliteStore
from tests.harness.configs import write_project
from tests.harness.months import SERVICE_CONFIG, TIERS, configure, november
from tests.harness.tarballs import tar_gz


def invoke(*args: str):
    return CliRunner(env={"NO_COLOR": "1"}).invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def project(tmp_path, monkeypatch):
    root = write_project(tmp_path / "project")
    monkeypatch.chdir(root)
    (root / "app.tgz").write_bytes(tar_gz({"app.py": "print(1)\n"}))
    return root


def release_json(project, *args: str) -> dict:
    done = invoke("--json", "release", "create", "2.4.0", "--artifact", "app.tgz", *args)
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout)["release"]


def test_commit_time_stated_is_recorded_in_utc(project):
    rel = release_json(project, "--commit", "9f3c2e1", "--commit-time", "2026-11-03T10:15:00+08:00")
    assert (rel["commit_id"], rel["committed_at"]) == ("9f3c2e1", "2026-11-03T02:15:00+00:00")
    stored = SqliteStore(project / ".releaser" / "state.db").get_release("2.4.0")
    assert stored.committed_at == "2026-11-03T02:15:00+00:00"


def test_commit_read_from_git(project):
    git = {"GIT_COMMITTER_DATE": "2026-11-02T09:00:00+01:00", "GIT_AUTHOR_DATE": "2026-11-01T09:00:00+01:00"}
    run = {
        "cwd": project,
        "check": True,
        "capture_output": True,
        "text": True,
        "env": {**git, "PATH": "/usr/bin:/bin", "HOME": str(project)},
    }
    subprocess.run(["git", "init", "-q"], **run)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "--allow-empty", "-m", "x"],
        **run,
    )
    head = subprocess.run(["git", "rev-parse", "HEAD"], **run).stdout.strip()
    rel = release_json(project, "--commit", "HEAD")
    assert (rel["commit_id"], rel["committed_at"]) == (
        head,
        "2026-11-02T08:00:00+00:00",
    )  # the commit's, not the author's


def test_neither_records_no_commit_and_bad_ones_are_refused(project):
    assert release_json(project)["committed_at"] is None
    for args, said in (
        (("--commit-time", "2026-11-03 10:15"), "UTC offset"),
        (("--commit-time", "2999-01-01T00:00:00Z"), "in the future"),
        (("--commit", "--all"), "expected a revision"),
        (("--commit", "no-such-rev"), "git log"),
    ):
        done = invoke("release", "create", "2.5.0", "--artifact", "app.tgz", *args)
        assert done.exit_code == 2 and said in done.output, (args, done.output)
    assert SqliteStore(project / ".releaser" / "state.db").get_release("2.5.0") is None


# -- the service report of November 2026 on prod, in Asia/Shanghai (UTC+8) --


def test_the_month_number_by_number_in_english(tmp_path):
    from datetime import UTC, datetime

    from releaser.report.service import build_service
    from releaser.report.service_render import render_service

    config, store = november(tmp_path)
    doc = build_service(config, store, "2026-11", now=datetime(2026, 12, 6, tzinfo=UTC))
    assert doc["preview"] is False and doc["start"] == "2026-10-31T16:00:00+00:00"
    assert [r["version"] for r in doc["shipped"]["releases"]] == ["2.0.0", "2.1.0", "3.0.0"]
    assert doc["shipped"]["count"] == doc["shipped"]["per_month"] == 3
    assert doc["shipped"]["per_week"] == pytest.approx(3 / (30 / 7))
    assert [r["lead_time"] for r in doc["shipped"]["releases"]] == [6 * 3600, 24 * 3600, None]
    assert doc["lead_time"]["median"] == 15 * 3600 and doc["lead_time"]["p90"] == pytest.approx(22.2 * 3600)
    assert doc["lead_time"]["without_commit"] == ["3.0.0"]
    cfr = doc["change_failure"]
    assert cfr["reached"] == ["2.0.0", "2.1.0", "2.2.0", "3.0.0"] and cfr["failed"] == ["2.2.0", "3.0.0"]
    assert cfr["rate"] == 0.5
    assert doc["restore"]["median"] == 2600 and doc["restore"]["max"] == 4000
    avail = doc["availability"]
    assert avail["value"] == pytest.approx(0.9995) and avail["met"] is True and avail["measured_seconds"] == 3600
    assert avail["allowed_downtime"] == pytest.approx(0.001 * 30 * 86400) and avail["budget_left"] == pytest.approx(0.5)
    assert [(i["tier"], i["within_sla"]) for i in doc["incidents"]] == [("P2", True), ("P1", False)]
    assert doc["tiers"]["counts"] == {"P1": 1, "P2": 1, "P3": 0, "untiered": 0}
    [weekend] = doc["freezes"]
    assert weekend["times"] == 5 and weekend["hours"] == 24 + 4 * 48
    assert [(o["release"], o["by"], o["reason"]) for o in doc["overrides"]] == [("3.0.0", "alice", "hotfix INC-7")]
    assert [(d["status"], d["rollback_seconds"], d["within_sla"]) for d in doc["drills"]] == [("passed", 42.0, True)]

    markdown = render_service(doc).markdown
    for row in (
        "| Releases shipped | 3 |",
        "| Deployment frequency (a week) | 0.7 |",
        "| Lead time for changes (median) | 15 h |",
        "| Lead time for changes (p90) | 22 h 12 min |",
        "| Change failure rate | 50.00% (2 of 4) |",
        "| Time to restore (median) | 43 min 20 s |",
        "| Time to restore (longest) | 1 h 6 min |",
        "| Availability | 99.95% (target 99.9%: met) |",
        "| Allowed downtime | 43 min 12 s |",
        "| Error budget left | 50.00% |",
    ):
        assert row in markdown, row
    assert "1 − errors / requests from scrape: 50 failed of 100,000 requests, over 1 h with data" in markdown
    assert "2 of 3 releases recorded one" in markdown
    assert "By tier: P1 1, P2 1, P3 0, untiered 0." in markdown
    assert "| 2026-11-26 08:00 UTC+8 | P1 | 3.0.0 | alert (full) | checkout alert | — | 1 h 6 min | no |" in markdown
    assert "every week, Sat 00:00 to Mon 00:00 (Asia/Shanghai) | held 5×, 9 days in the month |" in markdown
    assert "3.0.0 (gray) through weekend, by alice: hotfix INC-7" in markdown
    assert "| passed | 42 s | 5 min |" in markdown
    assert "3 release(s) shipped to prod (0.7 a week)." in markdown
    assert "2 incident(s), 1 rolled back later than the 1 h SLA." in markdown
    assert "| 3.0.0 | not recorded | not recorded |" in markdown
    rendered = render_service(doc)
    assert "chart-availability" in rendered.charts and "<table" in rendered.html


def test_the_month_in_chinese(tmp_path):
    from datetime import UTC, datetime

    from releaser.report.service import build_service
    from releaser.report.service_render import render_service

    config, store = november(tmp_path, "zh-CN")
    rendered = render_service(build_service(config, store, "2026-11", now=datetime(2026, 12, 6, tzinfo=UTC)))
    markdown = rendered.markdown
    assert markdown.startswith("# shop（prod）2026-11月度服务报告")
    for row in (
        "| 已上线发布数 | 3 |",
        "| 变更前置时间（中位数） | 15小时 |",
        "| 变更前置时间（p90） | 22小时12分钟 |",
        "| 变更失败率 | 50.00%（4个中2个） |",
        "| 恢复时间（最长） | 1小时6分钟 |",
        "| 可用性 | 99.95%（目标99.9%：达成） |",
        "| 剩余错误预算 | 50.00% |",
    ):
        assert row in markdown, row
    assert "按级别：P1：1起、P2：1起、P3：0起、未分级：0起。" in markdown  # never "P11起"
    assert "本月向prod上线3个发布（每周0.7个）。" in markdown
    assert "2起事故，其中1起回滚超过1小时SLA。" in markdown
    assert rendered.subject == "[shop] 2026-11月度服务报告（prod）"
    words = markdown.split("## ")[1]
    assert not __import__("re").search(r"[\u4e00-\u9fff] | [\u4e00-\u9fff]", words)  # no spaces around Chinese


def test_a_month_before_the_journal_says_no_data_for_each_figure_with_why(tmp_path):
    from datetime import UTC, datetime

    from releaser.report.service import build_service
    from releaser.report.service_render import render_service

    config, store = november(tmp_path)
    doc = build_service(config, store, "2026-09", now=datetime(2026, 12, 6, tzinfo=UTC))
    assert doc["shipped"]["count"] is None and doc["change_failure"]["rate"] is None
    assert doc["availability"]["value"] is None and doc["availability"]["why"] == "no_requests"
    markdown = render_service(doc).markdown
    journal = "no data: the journal begins on 2026-10-20 08:00 UTC+8, after this month"
    for name in (
        "Releases shipped",
        "Deployment frequency (a week)",
        "Lead time for changes (median)",
        "Change failure rate",
        "Time to restore (median)",
    ):
        assert f"| {name} | {journal} |" in markdown, name
    assert "| Availability | no data: no request was counted on prod this month" in markdown
    assert "| Error budget left | no data: no request was counted on prod this month" in markdown
    assert "| 0 |" not in markdown and "| 0% |" not in markdown and "100%" not in markdown
    assert "No rollback drill on prod this month." in markdown


def test_a_month_the_journal_began_in_counts_frequency_over_the_days_it_saw(tmp_path):
    from datetime import UTC, datetime

    from releaser.report.service import build_service

    config, store = november(tmp_path)
    doc = build_service(config, store, "2026-10", now=datetime(2026, 12, 6, tzinfo=UTC))
    seen = (datetime(2026, 10, 31, 16, tzinfo=UTC) - datetime(2026, 10, 20, tzinfo=UTC)).total_seconds() / 86400
    assert doc["shipped"]["days"] == pytest.approx(seen)  # from 2026-10-20 08:00 UTC+8, not from the 1st


def test_a_quiet_month_says_why_each_figure_is_missing(tmp_path):
    from datetime import UTC, datetime

    from releaser.report.service import build_service
    from releaser.report.service_render import render_service

    config, store = november(tmp_path)
    markdown = render_service(build_service(config, store, "2026-12", now=datetime(2026, 12, 6, tzinfo=UTC))).markdown
    assert "Preview: 2026-12 is not over" in markdown
    assert "| Releases shipped | 1 |" in markdown  # 3.1.0, on December 1 at 01:00 in Shanghai
    # six days of the month seen: a count, but no weekly rate (one release in hours is not 1,000 a week)
    assert "**1 release(s) shipped to prod.**" in markdown
    assert (
        "| Deployment frequency (a week) | no data: the journal saw 5.33 days of this month; a weekly rate needs a "
        "week | Releases shipped over the days of the month the journal saw, times 7. |"
    ) in markdown
    assert "| Lead time for changes (median) | no data: none of the 1 releases shipped recorded its commit" in markdown
    assert "| Change failure rate | no data: no release reached prod this month |" in markdown
    assert "| Time to restore (longest) | no data: no incident this month, nothing to restore |" in markdown


@pytest.mark.parametrize(
    ("service", "line", "said"),
    [
        ("    availability_target: 100%\n", 28, "must be below 100%"),
        ("    availability_target: 120%\n", 28, "at most 100"),
        ("    tiers:\n      P5: {}\n", 29, "expected a tier P1, P2, P3, P4"),
        ("    tiers:\n      P1: {causes: [drill]}\n", 29, "expected a rollback's cause"),
        ("    tiers:\n      P1: {stages: [canary]}\n", 29, "expected a stage"),
        ("    tiers:\n      P1: {longer_than: soon}\n", 29, "expected a duration"),
        ("    day: 31\n", 28, "at most 28"),
        ("    sent: true\n", 28, "unknown key"),
    ],
)
def test_bad_service_configuration_exits_2_with_file_and_line(tmp_path, service, line, said):
    configure(tmp_path, service="    send: false\n")  # a valid one first
    (tmp_path / "environments.yaml").write_text(SERVICE_CONFIG.format(language="en", service=service))
    done = invoke("-C", str(tmp_path), "validate")
    assert done.exit_code == 2
    assert f"environments.yaml:{line}:" in done.output and said in done.output, done.output


def test_report_service_on_the_command_line(tmp_path):
    _config, store = november(tmp_path)
    store.close()
    for bad in ("2026-13", "November", "26-11"):
        done = invoke("-C", str(tmp_path), "report", "service", "--month", bad)
        assert done.exit_code == 2 and "expected a month as YYYY-MM" in done.output
    assert invoke("-C", str(tmp_path), "report", "2.0.0", "--month", "2026-11").exit_code == 2
    done = invoke("-C", str(tmp_path), "report", "service", "--month", "2026-11", "--format", "json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["shipped"]["count"] == 3
    done = invoke("-C", str(tmp_path), "report", "service", "--month", "2026-11")
    assert (tmp_path / ".releaser" / "reports" / "service" / "prod" / "2026-11" / "report.html").is_file()
    done = invoke("-C", str(tmp_path), "report", "service", "--release")  # a release called service
    assert done.exit_code == 2 and "unknown release 'service'" in done.output


@pytest.mark.smtp
def test_a_month_is_mailed_once_on_its_day_retried_after_a_failure(tmp_path, monkeypatch):
    from datetime import UTC, datetime

    from releaser.journal import Journal
    from releaser.report.monthly import due_months
    from releaser.report.outbox import Outbox
    from tests.harness.smtp import SmtpServer

    server = SmtpServer(tmp_path / "smtp", users={"releaser": "pw-1234"})
    try:
        mail = (
            f"    send: true\n    day: 2\n  mail:\n    smtp: 127.0.0.1:{server.port}\n"
            f"    from: releases@example.com\n    username_env: SMTP_USER\n    password_env: SMTP_PASSWORD\n"
            f"    ca_file: {server.cert}\n"
        )
        _config, store = november(tmp_path)
        text = (tmp_path / "environments.yaml").read_text().replace(TIERS, mail)
        text = text.replace("    hosts: [web-1]", "    report_to: [am@example.com]\n    hosts: [web-1]")
        (tmp_path / "environments.yaml").write_text(text)
        from releaser.config import load_config

        config = load_config(tmp_path / "environments.yaml")
        outbox = Outbox(config, store, Journal(store))
        assert due_months(outbox, datetime(2026, 12, 1, 15, tzinfo=UTC)) == []  # Dec 1, 23:00 in Shanghai
        monkeypatch.setenv("SMTP_USER", "releaser")
        monkeypatch.setenv(
            "SMTP_PASSWORD", "not-the-mail-password"
        )  # a value found nowhere else: it is registered as a secret
        [parcel] = due_months(outbox, datetime(2026, 12, 1, 16, tzinfo=UTC))  # Dec 2, 00:00: due
        failed = outbox.deliver(parcel)
        assert failed.state == "failed" and "login refused" in failed.detail
        record = store.get_service_report("prod", "2026-11")
        assert record.state == "scheduled" and record.attempts == 1 and server.messages == []
        assert due_months(outbox, datetime.now(UTC)) == []  # the retry waits a minute
        monkeypatch.setenv("SMTP_PASSWORD", "pw-1234")
        sent = outbox.deliver(parcel)
        assert sent.state == "sent" and sent.month == "2026-11"
        assert outbox.deliver(parcel).state == "skipped" and due_months(outbox, datetime.now(UTC)) == []
        [message] = server.messages
        assert message["to"] == ["am@example.com"]
        assert message["message"]["Subject"] == "[shop] Service report for 2026-11 (prod)"
        kinds = [e.kind for e in store.events(environment="prod")]
        assert kinds.count("service_report.sent") == 1 and "service_report.failed" in kinds
    finally:
        server.stop()


@pytest.mark.smtp
def test_report_due_lists_then_sends_a_due_month_and_status_says_so(tmp_path):
    from releaser.report.monthly import schedule_month
    from tests.harness.smtp import SmtpServer

    server = SmtpServer(tmp_path / "smtp", security="none")
    try:
        mail = f"    send: true\n  mail: {{smtp: '127.0.0.1:{server.port}', security: none, from: r@example.com}}\n"
        config, store = november(tmp_path)
        text = (tmp_path / "environments.yaml").read_text().replace(TIERS, mail)
        text = text.replace("    hosts: [web-1]", "    report_to: [am@example.com]\n    hosts: [web-1]")
        (tmp_path / "environments.yaml").write_text(text)
        schedule_month(config, store, "prod", "2026-11")  # due on Dec 1, long past
        store.close()
        listed = invoke("-C", str(tmp_path), "report", "due")
        assert listed.exit_code == 0, listed.output
        assert "the service report of prod for 2026-11: due since" in listed.output and "add --send" in listed.output
        status = invoke("-C", str(tmp_path), "status")
        assert "service report of prod for 2026-11: due " in status.output
        assert server.messages == []
        sent = invoke("-C", str(tmp_path), "--json", "report", "due", "--send")
        assert sent.exit_code == 0, sent.output
        assert "service:prod:2026-11" in json.loads(sent.stdout)["due"]
        [message] = server.messages
        assert message["message"]["Subject"] == "[shop] Service report for 2026-11 (prod)"
        status = invoke("-C", str(tmp_path), "--json", "status")
        [record] = json.loads(status.stdout)["service_reports"]
        assert record["state"] == "sent" and record["delivered_to"] == 1
        assert "service report of prod for 2026-11: sent to 1" in invoke("-C", str(tmp_path), "status").output
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("environment", "said"),
    [
        ("dev", "dev has no metrics source (\\`metrics:\\` under the environment)"),
        ("prod", "report.metrics names no errors counter to measure it with"),
    ],
)
def test_availability_without_data_says_which_part_is_missing(tmp_path, environment, said):
    from releaser.config import load_config
    from releaser.report.service import build_service
    from releaser.report.service_render import render_service

    _config, store = november(tmp_path)
    text = (tmp_path / "environments.yaml").read_text()
    (tmp_path / "environments.yaml").write_text(text.replace("    errors: 'http_requests_total{code=~\"5..\"}'\n", ""))
    document = build_service(load_config(tmp_path / "environments.yaml"), store, "2026-11", environment)
    assert document["availability"]["value"] is None
    row = f"| Availability | no data: {said} | 1 − errors / requests over the month, from the environment's metrics. |"
    assert row in render_service(document).markdown


def test_a_month_comes_due_on_its_day_unless_the_journal_began_after_it(tmp_path):
    from datetime import UTC, datetime

    from releaser.config import load_config
    from releaser.report.monthly import month_come_due

    _config, store = november(tmp_path)
    text = (tmp_path / "environments.yaml").read_text().replace(TIERS, "    send: true\n    day: 2\n")
    (tmp_path / "environments.yaml").write_text(text)
    config = load_config(tmp_path / "environments.yaml")
    assert month_come_due(config, store, datetime(2026, 12, 1, 15, tzinfo=UTC)) is None  # Dec 1, 23:00 +8
    assert month_come_due(config, store, datetime(2026, 12, 1, 16, tzinfo=UTC)) == ("prod", "2026-11")
    # the journal begins in October: September's report, due on October 2, would say only "no data"
    assert month_come_due(config, store, datetime(2026, 10, 2, 16, tzinfo=UTC)) is None
