"""What the effect report says, on fixed datasets built step by step: windows seconds long, changes
that are only noise, an error rate rising from zero, a rolled-back release; Chinese typography and
the report's time zone."""

from __future__ import annotations

import random
import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from releaser.model import Event
from releaser.report.charts import DPI, HEIGHT_INCHES, WIDTH_INCHES
from releaser.report.compute import build
from releaser.report.render import render
from tests.harness.reports import by_key, dataset, step, summary_of


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


def test_every_phrase_is_in_both_languages_with_the_same_values():
    import string

    from releaser.report.phrasebook import TEXT

    def values(template: str) -> set[str]:
        return {field for _, field, _, _ in string.Formatter().parse(template) if field}

    english, chinese = TEXT["en"], TEXT["zh-CN"]
    assert set(english) == set(chinese)
    # Chinese has no plural endings ({s}, {were}); it never needs a value English does not get
    extra = {key: values(chinese[key]) - values(english[key]) for key in english}
    assert {key: more for key, more in extra.items() if more} == {}
