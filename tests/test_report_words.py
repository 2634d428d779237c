"""What the effect report says, on fixed datasets built step by step: windows seconds long, changes
that are only noise, an error rate rising from zero, a rolled-back release; Chinese typography and
the report's time zone."""

from __future__ import annotations

import random
import re
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from releaser.config import load_config
from releaser.journal import Journal
from releaser.model import Event, Release, RunStatus, Sample
from releaser.report.charts import DPI, HEIGHT_INCHES, WIDTH_INCHES
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
    hosts: [a]
pipeline:
  - {{stage: full, environment: prod}}
report:
{spans}  language: {language}
{timezone}  metrics:
    requests: http_requests_total
    errors: 'http_requests_total{{code=~"5.."}}'
    latency: http_request_duration_seconds
    cpu: process_cpu_seconds_total
  features:
    batch-order: 'feature_used_total{{feature="batch-order"}}'
"""


def step(requests: float = 100, errors: float = 0, fast: float = 90, cpu: float = 0.5, feature: float = 3) -> dict:
    """One step's increments on the one host: requests, errors, requests under 100 ms, CPU seconds, uses."""
    return {"requests": requests, "errors": errors, "fast": fast, "cpu": cpu, "feature": feature}


def samples(start: float, seconds: float, steps: list[dict]) -> list[Sample]:
    """Cumulative counters sampled once a step: the first sample at `start`, the counters grow
    by each step's increments."""
    totals = {"requests": 0.0, "errors": 0.0, "fast": 0.0, "cpu": 0.0, "feature": 0.0}
    result = []
    for index in range(len(steps) + 1):
        if index:
            for key in totals:
                totals[key] += steps[index - 1][key]
        values = {
            "requests": totals["requests"],
            "errors": totals["errors"],
            "cpu": totals["cpu"],
            "le:0.1": totals["fast"],
            "le:1.0": totals["requests"],
            "le:inf": totals["requests"],
            "feature:batch-order": totals["feature"],
        }
        result.append(Sample("prod", "a", start + index * seconds, values))
    return result


def dataset(
    tmp_path: Path,
    before: list[dict],
    after: list[dict],
    step_seconds: float,
    language: str = "en",
    timezone: str | None = None,
    configured: bool = False,
):
    """A release 2.0.0 that passed its one stage, with `before` and `after` recorded a step
    apart on either side of its rollout. The report's window and step are as long as the data
    (or, `configured`, left to the defaults: 3 days, an hour). Returns (config, store, live_at, now)."""
    window = step_seconds * max(len(before), len(after))
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "app.yaml").write_text("hooks: {}\n")
    (tmp_path / "environments.yaml").write_text(
        CONFIG.format(
            spans="" if configured else f"  window: {window:g}s\n  step: {step_seconds:g}s\n",
            language=language,
            timezone=f"  timezone: {timezone}\n" if timezone else "",
        )
    )
    config = load_config(tmp_path / "environments.yaml")
    store = SqliteStore(config.state_path)
    store.add_release(Release("2.0.0", "/a.tgz", "ff", 1, features=["batch-order"], created_by="ci"))
    run = store.start_stage_run("2.0.0", "full", "prod", "alice")
    store.set_stage_run_status(run.id, RunStatus.PASSED)
    report = schedule(config, store, Journal(store), "2.0.0", "prod")
    rollout_start = datetime.fromisoformat(store.stage_runs("2.0.0")[0].started_at).timestamp()
    live_at = datetime.fromisoformat(report.live_at).timestamp()
    store.add_samples(
        (samples(rollout_start - len(before) * step_seconds, step_seconds, before) if before else [])
        + (samples(live_at, step_seconds, after) if after else [])
    )  # none: nothing measured there
    return config, store, live_at, live_at + window + 1


def by_key(document: dict) -> dict:
    return {m["key"]: m for m in document["metrics"]}


def summary_of(markdown: str) -> str:
    return markdown.split("## Summary")[1].split("## ")[0]


def test_windows_seconds_long_show_counts_and_the_time_measured_never_a_day(tmp_path):
    # The demo's shape: 7 s of traffic before, 5 s after.
    config, store, _live, now = dataset(tmp_path, [step()] * 7, [step(requests=120, fast=110)] * 5, 1.0)
    document = build(config, store, "2.0.0", now=now)
    markdown = render(document).markdown
    assert "a day" not in markdown.split("## Words used here")[0]
    assert "| Request volume | 700 in 7 s | 600 in 5 s |" in markdown
    assert "| Metric | Before (7 s measured) | After (5 s measured) | Change |" in markdown
    assert "These figures cover only 7 s before and 5 s after the rollout" in summary_of(markdown)
    assert "The feature batch-order was used 15 times in 5 s (21 times in 7 s before)." in markdown
    # Machines get what the words say: the counts, how long, the mean rate a second; no rate a day.
    requests = by_key(document)["requests"]
    assert requests["before"] == pytest.approx(100) and requests["before_total"] == 700
    assert requests["after_seconds"] == pytest.approx(5) and requests["after_per_day"] is None
    assert document["features"][0]["after_total"] == 15 and document["features"][0]["after_per_day"] is None


def test_changes_within_the_noise_are_unchanged(tmp_path):
    # Both windows draw CPU and latency from the same distribution; their averages still differ by
    # more than 2%, which a fixed threshold would call a change.
    draw = random.Random(4)

    def noisy() -> dict:
        return step(cpu=draw.gauss(1.2, 0.25), fast=draw.gauss(90, 4))

    before, after = [noisy() for _ in range(12)], [noisy() for _ in range(12)]
    cpu_before, cpu_after = (sum(s["cpu"] for s in w) / 12 for w in (before, after))
    assert abs(cpu_after - cpu_before) / cpu_before > 0.02  # the dataset is what the test says it is
    config, store, _live, now = dataset(tmp_path, before, after, 60.0)
    document = build(config, store, "2.0.0", now=now)
    cpu = by_key(document)["cpu"]
    assert cpu["direction"] == "same" and cpu["assessment"] is None
    assert (
        cpu["noise"]["why"] == "within_noise" and cpu["noise"]["p_value"] > 0.01 and cpu["noise"]["steps"] == [12, 12]
    )
    markdown = render(document).markdown
    assert re.search(r"\| CPU use per host \| [\d.]+% \| [\d.]+% \| unchanged \|", markdown)
    assert "nothing measured changed beyond its usual noise" in summary_of(markdown)
    assert "Healthy: as fast as before, no more errors, no incidents." in summary_of(markdown)
    told = markdown.split("## Words used here")[0]
    assert "+0.00 pp" not in told and "worse" not in told and "better" not in told


def test_an_error_rate_rising_from_zero_leads_the_summary(tmp_path):
    before = [step(errors=0, fast=50, cpu=2.0)] * 10
    after = [step(errors=5.3, fast=95, cpu=0.5, requests=100)] * 10  # much faster, far less CPU, 5.3% errors
    config, store, _live, now = dataset(tmp_path, before, after, 60.0)
    document = build(config, store, "2.0.0", now=now)
    errors = by_key(document)["error_rate"]
    assert errors["change_percent"] is None and errors["assessment"] == "worse"  # no relative change from 0
    summary = summary_of(render(document).markdown)
    assert "**Needs a look: faster, more errors, no incidents.**" in summary
    compared = summary.split("Compared with the 10 min before it: ")[1]
    assert compared.startswith("error rate rose from 0% to 5.30% (+5.30 pp); ")
    assert "p95 response time fell" in compared and "CPU use per host fell" in compared


def test_a_rolled_back_release_says_so_first_and_in_the_past_tense(tmp_path):
    config, store, live_at, now = dataset(tmp_path, [step()] * 10, [step(errors=20)] * 10, 60.0)
    at = datetime.fromtimestamp(live_at + 300).astimezone().isoformat(timespec="milliseconds")
    store.append_event(
        Event(
            "incident",
            "window: detected",
            environment="prod",
            release="2.0.0",
            stage="full",
            data={"time_to_detect": 30.0, "time_to_rollback": 9.0, "reason": "error ratio 20%"},
            ts=at,
        )
    )
    store.append_event(Event("rollback.done", "rolled back", environment="prod", release="2.0.0", stage="full", ts=at))
    markdown = render(build(config, store, "2.0.0", now=now)).markdown
    summary = summary_of(markdown)
    assert summary.strip().startswith("**Rolled back after 5 min live for all users: error ratio 20%.**")
    assert "reached all users of prod on" in summary and "and was rolled back on" in summary
    assert "has been live" not in markdown and "Healthy" not in markdown


def test_chinese_uses_full_width_punctuation_and_no_stray_spaces(tmp_path):
    config, store, _live, now = dataset(tmp_path, [step()] * 7, [step(errors=4, fast=60)] * 5, 1.0, language="zh-CN")
    rendered = render(build(config, store, "2.0.0", now=now))
    han = "\u4e00-\u9fff"
    for line in rendered.markdown.splitlines():
        text = re.sub(r"^(#+ |> |- |\*\*)|\*\*$|_", "", line)
        for cell in (c.strip() for c in text.strip("|").split(" | ")):  # table cells: the pipes are markup
            assert not re.search(f"[{han}] | [{han}]", cell), cell  # a space beside a Chinese character
            assert not re.search(f"[{han}][(),;:!?]|[(),;:!?][{han}]", cell), cell  # half-width punctuation
    assert "（" in rendered.markdown and "：" in rendered.markdown and "；" in rendered.markdown
    assert "健康" in rendered.markdown or "需要关注" in rendered.markdown
    assert "每天被使用" not in rendered.markdown and "在5秒内被使用" in rendered.markdown  # 5 s are not a day


def test_times_are_in_the_reports_time_zone(tmp_path):
    config, store, live_at, now = dataset(tmp_path, [step()] * 6, [step()] * 6, 600.0, timezone="Asia/Shanghai")
    document = build(config, store, "2.0.0", now=now)
    assert document["timezone"] == "Asia/Shanghai"
    markdown = render(document).markdown
    shanghai = datetime.fromtimestamp(live_at, ZoneInfo("Asia/Shanghai"))
    assert f"since {shanghai:%Y-%m-%d %H:%M} UTC+8." in markdown
    assert " UTC." not in markdown and not re.search(r"\d UTC[^+-]", markdown)
    assert shanghai.utcoffset() == timedelta(hours=8)


def test_bad_time_zone_is_a_config_error_at_its_line(tmp_path):
    from releaser.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        dataset(tmp_path, [step()] * 6, [step()] * 6, 600.0, timezone="Mars/Olympus")
    [problem] = caught.value.problems
    assert problem.key == "report.timezone" and problem.line == 14 and "Mars/Olympus" in problem.message


def test_charts_are_sharp_and_share_one_time_axis(tmp_path):
    config, store, _live, now = dataset(tmp_path, [step()] * 10, [step(fast=95)] * 10, 60.0)
    rendered = render(build(config, store, "2.0.0", now=now))
    sizes = {(int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")) for png in rendered.charts.values()}
    assert sizes == {(round(WIDTH_INCHES * DPI), round(HEIGHT_INCHES * DPI))}  # twice the 720 px they are shown at
    assert 'width="720"' in rendered.html
    assert len(rendered.charts) == 7
    from releaser.report.charts import _plain, time_span

    document = build(config, store, "2.0.0", now=now)
    zone = ZoneInfo("UTC")
    start, end = time_span(document, zone)  # every chart's x-axis: what was measured, here all of both windows
    assert start == datetime.fromisoformat(document["windows"]["before"]["measured_from"])
    assert end == datetime.fromisoformat(document["windows"]["after"]["measured_to"])
    assert start == datetime.fromisoformat(document["windows"]["before"]["start"])
    assert end == datetime.fromisoformat(document["windows"]["after"]["end"])
    assert _plain(7_405_571) == "7,405,571" and _plain(0.00053) == "0.00053" and _plain(12.5) == "12.5"


def test_the_rank_test_exact_for_small_windows_and_approximate_for_large():
    from releaser.report.noise import judge, mann_whitney_p

    assert mann_whitney_p([1.0] * 5, [2.0] * 5) == pytest.approx(2 / 252)  # 2 of the C(10,5) arrangements
    assert mann_whitney_p([1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1]) == 1.0
    assert mann_whitney_p([3.0] * 8, [3.0] * 8) == 1.0
    shifted = mann_whitney_p([x % 10 for x in range(60)], [x % 10 + 3 for x in range(60)])  # normal approximation
    assert shifted < 1e-4
    assert judge(1.0, 1.01, [1.0] * 9, [1.01] * 9).why == "too_small"  # 1%: not worth telling
    assert judge(0.0, 0.05, [0.0] * 4, [0.05] * 4).why == "too_few_steps"
    assert judge(0.0, 0.05, [0.0] * 6, [0.05] * 6).changed
    assert judge(0.999, 0.9993, [0.999] * 9, [0.9993] * 9, bad_side=True).changed  # 30% fewer failures
