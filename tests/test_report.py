"""The effect report: numbers over a fixed dataset checked by hand, both languages, escaping,
"no data", and the schedule."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import pytest

from releaser.config import load_config
from releaser.journal import Journal
from releaser.metrics.histogram import Histogram
from releaser.model import Event, Release, RunStatus, Sample, utcnow
from releaser.report.compute import build
from releaser.report.outbox import schedule
from releaser.report.render import render
from releaser.store import SqliteStore

CONFIG = """\
project: shop
environments:
  prod:
    transport: local
    playbook: app
    metrics: {{source: scrape, scrape_url: "http://127.0.0.1:9/metrics"}}
    hosts: [a, b]
pipeline:
  - {{stage: gray, environment: prod, cohort: 50%}}
  - {{stage: full, environment: prod}}
report:
  delay: 3d
  window: 1h
  step: 10m
  language: {language}
  metrics:
    requests: 'http_requests_total'
    errors: 'http_requests_total{{code=~"5.."}}'
    latency: http_request_duration_seconds
    cpu: process_cpu_seconds_total
  features:
    batch-order: 'feature_used_total{{feature="batch-order"}}'
"""
WINDOW = 3600.0

# Per host and minute: requests, errors, latency buckets (cumulative), CPU seconds, feature uses.
BEFORE = {"requests": 600, "errors": 6, "buckets": {0.1: 300, 0.5: 540, 1.0: 600}, "cpu": 6.0, "feature": None}
AFTER = {"requests": 600, "errors": 3, "buckets": {0.1: 480, 0.5: 594, 1.0: 600}, "cpu": 3.0, "feature": 30}


def samples_for(
    host: str, start: float, shape: dict, missing: set[int] = frozenset(), drop: tuple[str, ...] = ()
) -> list[Sample]:
    """61 samples a minute apart over an hour; counters grow by `shape` every minute (the host
    restarts halfway: its counters fall back to zero and count again)."""
    samples = []
    for minute in range(61):
        count = minute if minute <= 30 else minute - 30  # a restart at minute 30: counters reset
        values = {"requests": count * shape["requests"], "errors": count * shape["errors"], "cpu": count * shape["cpu"]}
        values.update({f"le:{bound!r}": count * n for bound, n in shape["buckets"].items()})
        values["le:inf"] = count * shape["requests"]
        if shape["feature"] is not None:
            values["feature:batch-order"] = count * shape["feature"]
        for key in drop:
            values.pop(key)
        samples.append(Sample("prod", host, start + 60 * minute, None if minute in missing else values))
    return samples


def fixed_store(
    tmp_path: Path,
    language: str = "en",
    notes: str = "Adds batch orders.",
    features: tuple[str, ...] = ("batch-order",),
    drop: tuple[str, ...] = (),
):
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "app.yaml").write_text("hooks: {}\n")
    (tmp_path / "environments.yaml").write_text(CONFIG.format(language=language))
    config = load_config(tmp_path / "environments.yaml")
    store = SqliteStore(config.state_path)
    journal = Journal(store)
    store.add_release(Release("2.0.0", "/a.tgz", "ff", 1, notes=notes, features=list(features), created_by="ci"))
    for stage in ("gray", "full"):
        run = store.start_stage_run("2.0.0", stage, "prod", "alice")
        store.set_stage_run_status(run.id, RunStatus.PASSED)
    # the release goes live after its rollout began, if only by a millisecond (the timestamps' unit):
    # in the same millisecond, the after window's first looks would also end the window before
    while utcnow() <= store.stage_runs("2.0.0")[0].started_at:
        pass
    report = schedule(config, store, journal, "2.0.0", "prod")
    rollout_start = datetime.fromisoformat(store.stage_runs("2.0.0")[0].started_at).timestamp()
    live_at = datetime.fromisoformat(report.live_at).timestamp()
    before, after = rollout_start - WINDOW, live_at
    # Host b did not answer three times before the release; its counters went on growing.
    store.add_samples(
        samples_for("a", before, BEFORE, drop=drop)
        + samples_for("b", before, BEFORE, missing={10, 11, 12}, drop=drop)
        + samples_for("a", after, AFTER, drop=drop)
        + samples_for("b", after, AFTER, drop=drop)
    )
    store.append_event(
        Event(
            "incident",
            "gray: detected",
            environment="prod",
            release="2.0.0",
            stage="gray",
            data={
                "time_to_detect": 42.0,
                "time_to_rollback": 12.5,
                "within_window": True,
                "reason": "checks failed: error ratio",
            },
        )
    )
    return config, store, live_at + WINDOW + 60


def by_key(document: dict) -> dict:
    return {m["key"]: m for m in document["metrics"]}


def test_quantile_interpolates_like_histogram_quantile():
    latency = Histogram({0.1: 50.0, 0.5: 90.0, 1.0: 100.0, float("inf"): 100.0})
    assert latency.quantile(0.5) == pytest.approx(0.1)
    assert latency.quantile(0.95) == pytest.approx(0.75)
    assert latency.quantile(0.25) == pytest.approx(0.05)
    assert Histogram({0.1: 0.0, float("inf"): 10.0}).quantile(0.5) == 0.1  # beyond the last bound: that bound
    assert Histogram().quantile(0.5) is None and Histogram({0.1: 0.0}).quantile(0.5) is None
    assert Histogram.from_counters(latency.counters()).buckets == latency.buckets
    assert latency.above(0.1) == 50.0 and latency.bound_exceeded_by(0.05) == 0.5


def test_a_quantile_beyond_the_buckets_is_a_bound_not_a_number():
    from releaser.report.compute import METRICS, change, quantile
    from releaser.report.words import Words

    latency = Histogram({0.1: 80.0, 0.5: 99.0, 1.0: 99.0, float("inf"): 100.0})
    assert latency.quantile(0.5) == pytest.approx(0.0625)  # what interpolating inside the first bucket makes up
    assert quantile(latency, 0.5) == (0.1, "under")
    assert quantile(latency, 0.95) == (pytest.approx(0.1 + 0.4 * 15 / 19), None)
    assert quantile(latency, 0.995) == (1.0, "over")
    assert quantile(Histogram(), 0.5) == (None, None)

    p95 = next(m for m in METRICS if m.key == "p95")
    slower = change(p95, 0.1, 0.3, [0.1] * 6, [0.3] * 6, bounds=("under", None))
    assert slower["change"] is None and slower["change_percent"] is None  # no difference from a bound
    assert slower["direction"] == "up" and slower["assessment"] == "worse"
    assert slower["before_bound"] == "under" and slower["after_bound"] is None
    for language, delta, told in (
        ("en", "p95 response time rose from under 100 ms to 300 ms", "higher"),
        ("zh-CN", "p95响应时间从低于100毫秒升至300毫秒", "升高"),
    ):
        words = Words(language)
        assert (words.delta(slower), words.change(slower)) == (delta, told)
    both = change(p95, 0.1, 0.1, [0.1] * 6, [0.1] * 6, bounds=("under", "under"))
    assert both["direction"] is None and both["noise"]["why"] == "both_under" and both["change"] is None
    assert Words("en").change(both) == "both under 100 ms" and Words("zh-CN").change(both) == "均低于100毫秒"


def test_report_numbers_match_the_hand_computed_values(tmp_path):
    config, store, now = fixed_store(tmp_path)
    document = build(config, store, "2.0.0", now=now)
    metrics = by_key(document)

    # Both hosts serve 10 requests a second in both windows: 20/s, 72,000 in the hour. The restart
    # at minute 30 and host b's three silent minutes lose nothing: counters are cumulative.
    assert metrics["requests"]["unit"] == "per_second"
    assert metrics["requests"]["before"] == pytest.approx(20) and metrics["requests"]["after"] == pytest.approx(20)
    assert metrics["requests"]["before_total"] == pytest.approx(72_000)
    assert metrics["requests"]["before_per_day"] is None  # an hour is not a day: no rate a day
    assert metrics["requests"]["direction"] == "same"
    # 6 of 600 failed, then 3 of 600.
    assert metrics["error_rate"]["before"] == pytest.approx(0.01)
    assert metrics["error_rate"]["after"] == pytest.approx(0.005)
    assert metrics["error_rate"]["assessment"] == "better"
    # 3 of 122 looks found host b silent; afterwards every look was answered.
    assert metrics["availability"]["before"] == pytest.approx(119 / 122)
    assert metrics["availability"]["after"] == 1.0
    # Before: half the requests under 0.1 s, 90% under 0.5 s: p50 in the first bucket (under 0.1 s: no
    # number is made up inside it), p95 = 0.5 + 0.5 * 0.05/0.1 = 0.75 s.
    # After: 80% under 0.1 s, 99% under 0.5 s: p50 under 0.1 s again, p95 = 0.1 + 0.4 * 0.15/0.19.
    assert (metrics["p50"]["before"], metrics["p50"]["before_bound"]) == (pytest.approx(0.1), "under")
    assert (metrics["p50"]["after"], metrics["p50"]["after_bound"]) == (pytest.approx(0.1), "under")
    assert metrics["p50"]["direction"] is None and metrics["p50"]["noise"]["why"] == "both_under"
    assert metrics["p95"]["before"] == pytest.approx(0.75) and metrics["p95"]["before_bound"] is None
    assert metrics["p95"]["after"] == pytest.approx(0.1 + 0.4 * 0.15 / 0.19)
    assert metrics["p95"]["change_percent"] == pytest.approx((0.1 + 0.4 * 0.15 / 0.19 - 0.75) / 0.75 * 100)
    # 6 CPU seconds a minute per host = 10% of a core; then 5%.
    assert metrics["cpu"]["before"] == pytest.approx(0.10)
    assert metrics["cpu"]["after"] == pytest.approx(0.05)
    # 30 batch orders a minute per host, 3,600 in the hour (no rate a day from an hour); none
    # recorded before: no data, not 0.
    feature = document["features"][0]
    assert feature["name"] == "batch-order" and feature["before_total"] is None
    assert feature["after_total"] == pytest.approx(3600) and feature["after_seconds"] == pytest.approx(3600)
    assert feature["after_per_day"] is None and document["format"] == 3
    # Each window is an hour of observations per host.
    assert document["windows"]["before"]["observed_seconds"] == pytest.approx(3600)
    assert document["windows"]["after"]["observed_seconds"] == pytest.approx(3600)
    incident = document["incidents"][0]
    assert incident["time_to_rollback"] == 12.5 and incident["within_sla"] and document["sla"]["met"] is True
    assert [s["stage"] for s in document["stages"]] == ["gray", "full"] and document["stages"][0]["by"] == "alice"
    assert document["preview"] is True and document["due_at"]  # 3d delay: not yet due at `now`

    rendered = render(document)
    assert "p95 response time fell from 750 ms to 416 ms (-45%)" in rendered.markdown
    assert "error rate fell from 1.00% to 0.50% (-0.50 pp)" in rendered.markdown
    # An hour measured is not a day: the counts and how long they were measured, never "a day".
    assert "The new feature batch-order was used 3,600 times in 1 h." in rendered.markdown
    assert "| batch-order | no data | 3,600 times in 1 h |" in rendered.markdown
    assert "| Request volume | 72,000 in 1 h | 72,000 in 1 h | unchanged |" in rendered.markdown
    assert "| Median response time (p50) | under 100 ms | under 100 ms | both under 100 ms |" in rendered.markdown
    assert "a day" not in rendered.markdown.split("## Words used here")[0]
    assert "each was rolled back automatically within the 1 h SLA (the slowest took 12.5 s)" in rendered.markdown
    assert "Preview: this report is due on" in rendered.markdown
    as_json = json.loads(rendered.json)
    assert as_json["metrics"] == document["metrics"] and as_json["summary"][0].startswith(
        "Healthy: faster, fewer errors"
    )
    assert as_json["summary"][1].startswith("Release 2.0.0 of shop has been live")
    assert len(rendered.charts) == 7  # six metrics and the feature
    assert all(png.startswith(b"\x89PNG") for png in rendered.charts.values())
    assert rendered.html.count("data:image/png;base64,") == 7
    assert rendered.mail_html.count('src="cid:chart-') == 7


def test_the_whole_report_in_simplified_chinese(tmp_path):
    config, store, now = fixed_store(tmp_path, language="zh-CN")
    rendered = render(build(config, store, "2.0.0", now=now))
    assert "p95响应时间从750毫秒降至416毫秒（-45%）" in rendered.markdown
    assert "错误率从1.00%降至0.50%（-0.50个百分点）" in rendered.markdown
    assert "| 响应时间中位数（p50） | 低于100毫秒 | 低于100毫秒 | 均低于100毫秒 |" in rendered.markdown
    assert "响应时间中位数（p50）在发布前后均低于100毫秒（延迟直方图无法区分更细的差别）。" in rendered.markdown
    assert "新功能batch-order在1小时内被使用3,600次。" in rendered.markdown
    assert "| batch-order | 无数据 | 在1小时内被使用3,600次 |" in rendered.markdown
    assert rendered.subject == "【shop】版本2.0.0发布效果报告"
    assert '<html lang="zh-CN">' in rendered.html
    words_of_html = re.sub(r"data:image/png;base64,[^\"]+", "", rendered.html)  # charts may spell anything
    for english in ("fell", "rose", "no data", "Summary", "Incidents", "Before and after", "a day"):
        assert english not in rendered.markdown and english not in words_of_html, english


def test_a_metric_without_data_says_no_data_never_zero(tmp_path):
    config, store, now = fixed_store(tmp_path, drop=("cpu",))  # configured, but no host exports it
    document = build(config, store, "2.0.0", now=now)
    cpu = by_key(document)["cpu"]
    assert cpu["before"] is None and cpu["after"] is None and cpu["change"] is None
    rendered = render(document)
    assert "| CPU use per host | no data | no data | — |" in rendered.markdown
    assert "No data for: CPU use per host." in rendered.markdown
    assert json.loads(rendered.json)["metrics"][5]["after"] is None
    assert "chart-cpu" not in rendered.charts


def test_no_samples_at_all_is_no_data_everywhere(tmp_path):
    config, store, now = fixed_store(tmp_path)
    store.prune_samples("prod", now + 1)
    document = build(config, store, "2.0.0", now=now)
    assert all(m["before"] is None and m["after"] is None for m in document["metrics"])
    rendered = render(document)
    assert "There are no measurements to compare" in rendered.markdown
    assert "0%" not in rendered.markdown.split("## Before and after")[1].split("##")[0]
    assert rendered.charts == {}


def test_release_notes_and_feature_names_are_escaped(tmp_path):
    hostile = '<script>alert("x")</script> & [link](http://evil.example) | *bold*'
    config, store, now = fixed_store(tmp_path, notes=hostile, features=("<img src=x onerror=alert(1)>",))
    rendered = render(build(config, store, "2.0.0", now=now))
    assert "<script>" not in rendered.html and "<img src=x" not in rendered.html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; [link](http://evil.example)" in rendered.html
    assert "&lt;img src=x onerror=alert(1)&gt;" in rendered.html
    assert not re.search(r"(?<!\\)<(script|img)", rendered.markdown)
    assert r"\<script\>" in rendered.markdown and r"\[link\](http://evil.example) \| \*bold\*" in rendered.markdown
    assert json.loads(rendered.json)["release"]["notes"] == hostile  # JSON keeps the text as it is


def test_the_after_window_ends_when_the_next_release_starts_rolling_out(tmp_path):
    config, store, now = fixed_store(tmp_path)
    store.add_release(Release("2.1.0", "/b.tgz", "ee", 1))
    store.start_stage_run("2.1.0", "gray", "prod", "bob")
    document = build(config, store, "2.0.0", now=now)
    assert document["windows"]["after"]["cut_short_by"] == {
        "by": "release",
        "release": "2.1.0",
        "at": store.stage_runs("2.1.0")[0].started_at,
    }
    markdown = render(document).markdown
    assert "the window after ends early, when 2.1.0 started rolling out" in markdown
    assert "Release 2.0.0 of shop was live for all users of prod from" in markdown  # no longer "has been"
    assert "when 2.1.0 started rolling out." in markdown and "has been live" not in markdown


def test_the_after_window_ends_when_the_release_is_rolled_back(tmp_path):
    config, store, now = fixed_store(tmp_path)
    rolled = store.append_event(
        Event("rollback.done", "rolled back", environment="prod", release="2.0.0", stage="full")
    )
    document = build(config, store, "2.0.0", now=now)
    assert document["windows"]["after"]["cut_short_by"] == {"by": "rollback", "at": rolled.ts}
    markdown = render(document).markdown
    assert "and was rolled back on" in markdown and "the release was rolled back on" in markdown
    assert "has been live" not in markdown


def test_report_is_scheduled_when_the_last_stage_passes(project):
    with (project.dir / "environments.yaml").open("a") as config:
        config.write("report:\n  delay: 2h\n")
    project.register("1.0.0")
    project.cli("run", "1.0.0", "--to", "gray", check=True)
    assert project.status()["reports"] == []
    project.cli("run", "1.0.0", check=True)
    [report] = project.status()["reports"]
    live_at = next(r for r in project.status()["releases"][0]["stages"] if r["stage"] == "full")["finished_at"]
    delay = datetime.fromisoformat(report["due_at"]) - datetime.fromisoformat(live_at)
    assert report["state"] == "scheduled" and abs(delay.total_seconds() - 7200) < 5
    due = json.loads(project.cli("report", "due", "--json", check=True).stdout)
    assert due["due"] == []
    preview = project.cli("report", "1.0.0", "--format", "md", check=True)  # to stdout
    assert "Preview: this report is due on" in preview.stdout and "a preview; the report is due" in preview.stderr
    written = json.loads(project.cli("report", "1.0.0", "--json", check=True).stdout)
    assert Path(written["path"]).is_file() and written["preview"] is True
    assert (Path(written["path"]).parent / "report.md").is_file()
    unknown = project.cli("report", "9.9.9")
    assert unknown.returncode == 2 and "unknown release" in unknown.stderr
    early = project.cli("report", "1.0.0", "--force")
    assert early.returncode == 2


def test_report_config_errors_name_file_line_and_key(tmp_path):
    from releaser.errors import ConfigError

    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "app.yaml").write_text("hooks: {}\n")
    (tmp_path / "environments.yaml").write_text(
        "project: shop\n"
        "environments:\n"
        "  prod:\n"
        "    playbook: app\n"
        "    report_to: [not-an-address]\n"
        "    hosts: [a]\n"
        "pipeline:\n"
        "  - {stage: full, environment: prod}\n"
        "report:\n"
        "  language: fr\n"
        "  delay: soon\n"
        "  metrics:\n"
        "    latency: http_request_duration_seconds\n"
        "    requests: 'http_requests_total{code='\n"
        "  mail:\n"
        "    smtp: mail.example.com:99999\n"
        "    from: nobody\n"
        "    username_env: SMTP_USER\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "environments.yaml")
    found = {(p.line, p.key) for p in caught.value.problems}
    for expected in (
        (5, "environments.prod.report_to[0]"),
        (10, "report.language"),
        (11, "report.delay"),
        (12, "report.metrics"),
        (14, "report.metrics.requests"),
        (15, "report.mail"),
        (16, "report.mail.smtp"),
        (17, "report.mail.from"),
        (18, "report.mail.username_env"),
    ):
        assert expected in found, (expected, sorted(found))


def test_samples_a_pending_report_needs_are_kept_however_long_the_rollout(tmp_path):
    from releaser.model import ReportState
    from releaser.report.timeline import _still_needed_from

    config, store, _now = fixed_store(tmp_path)
    rollout = datetime.fromisoformat(store.stage_runs("2.0.0")[0].started_at).timestamp()
    ten_days_later = rollout + 10 * 86400
    kept_from = _still_needed_from(store, "prod", config.report, ten_days_later)
    assert kept_from == pytest.approx(rollout - WINDOW - 86400)  # its before window, and a day
    store.update_report("2.0.0", state=ReportState.SENT)
    assert _still_needed_from(store, "prod", config.report, ten_days_later) == pytest.approx(
        ten_days_later - 2 * WINDOW - 3 * 86400 - 86400
    )


def test_a_rollback_a_person_asked_for_is_said_so_and_has_no_time_to_detect(tmp_path):
    config, store, now = fixed_store(tmp_path)
    store.append_event(
        Event(
            "incident",
            "abort",
            environment="prod",
            release="2.0.0",
            stage=None,  # a rollback by hand names no stage
            data={"cause": "abort", "time_to_detect": 91.1, "time_to_rollback": 1.2, "reason": "alice: config typo"},
        )
    )
    document = build(config, store, "2.0.0", now=now)
    asked = next(i for i in document["incidents"] if i["reason"] == "alice: config typo")
    assert asked["asked"] and asked["time_to_detect"] is None  # nothing detected it: a person asked
    markdown = render(document).markdown
    assert (
        "There were 2 incidents; each was rolled back within the 1 h SLA (the slowest took 12.5 s), 1 of them at "
        "a person's request" in markdown
    )
    assert "rolled back automatically" not in markdown
    row = next(line for line in markdown.splitlines() if "alice: config typo" in line)
    assert row.split("|")[2].strip() == "—" and row.split("|")[4].strip() == "—"  # no stage, no time to detect
    assert "None" not in markdown
