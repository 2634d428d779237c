"""An effect report on a few minutes of data, as a new user first sees one: the default 3-day
window and hour-long steps around a rollout measured for minutes, a service answering in a few
milliseconds (every request in the latency histogram's first bucket), CPU doubled. The report
must not contradict itself: its summary, tables, charts and JSON tell the same story, and none
of them says more than the data does."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from releaser.config import load_config
from releaser.model import Release
from releaser.report.compute import build
from releaser.report.render import render
from releaser.store import SqliteStore
from tests.harness.reports import CONFIG, by_key, dataset, samples, step, summary_of

LOOK = 30.0  # seconds between two recorded samples
BEFORE = [step(requests=150, fast=150, cpu=0.3, feature=0)] * 13  # 6 min 30 s
AFTER = [step(requests=150, fast=150, cpu=0.6, feature=2)] * 14  # 7 min


def recorded(tmp_path: Path, before: list[dict], after: list[dict], language: str = "en"):
    """Release 2.0.0 under the default 3-day window and hour-long steps, with samples recorded a
    LOOK apart: `before` up to a second before its rollout, `after` from a second after it went
    live (either empty: nothing recorded there). Returns (config, store, live_at, the moment after
    the last sample)."""
    config, store, live, _now = dataset(tmp_path, [], [], LOOK, language=language, configured=True)
    assert config.report.window == 3 * 86400 and config.report.resolution == 3600  # what a new user runs
    rollout = datetime.fromisoformat(store.stage_runs("2.0.0")[0].started_at).timestamp()
    store.add_samples(
        (samples(rollout - 1 - len(before) * LOOK, LOOK, before) if before else [])
        + (samples(live + 1, LOOK, after) if after else [])
    )
    return config, store, live, live + 2 + len(after) * LOOK


def short_report(tmp_path: Path, language: str = "en", before: list[dict] = BEFORE, after: list[dict] = AFTER):
    """(document, rendered) of a release measured for minutes under the default 3-day window."""
    config, store, _live, now = recorded(tmp_path, before, after, language)
    document = build(config, store, "2.0.0", now=now)
    return document, render(document)


def table_of(markdown: str) -> str:
    return markdown.split("## Before and after")[1].split("## ")[0]


def row(markdown: str, name: str) -> str:
    """The line of the before-and-after table that names `name`."""
    return next(line for line in markdown.splitlines() if line.startswith("| ") and name in line)


@pytest.mark.parametrize("language", ["en", "zh-CN"])
def test_a_service_answering_in_milliseconds_is_under_the_first_bucket_never_a_made_up_number(tmp_path, language):
    document, rendered = short_report(tmp_path, language)
    for key in ("p50", "p95"):
        item = by_key(document)[key]
        assert (item["before"], item["before_bound"]) == (item["after"], item["after_bound"]) == (0.1, "under")
        assert item["change"] is None and item["direction"] is None and item["noise"]["why"] == "both_under"
    assert all(
        point["bounds"] == {"p50": "under", "p95": "under"}
        for side in ("before", "after")
        for point in document["series"][side]
        if point["p50"] is not None
    )
    markdown = rendered.markdown
    assert not re.search(r"(?<![\d.])(50|95) ?(ms|毫秒)", markdown)  # what interpolating would have made up
    if language == "en":
        assert row(markdown, "(p50)") == (
            "| Median response time (p50) | under 100 ms | under 100 ms | both under 100 ms |"
        )
        assert row(markdown, "p95") == "| p95 response time | under 100 ms | under 100 ms | both under 100 ms |"
        assert (
            "Median response time (p50) and p95 response time stayed under 100 ms, before and after the release "
            "(the latency histogram tells no finer)."
        ) in summary_of(markdown)
        assert "- under, over (a response time): the latency histogram counts requests in buckets" in markdown
    else:
        assert row(markdown, "（p50）") == "| 响应时间中位数（p50） | 低于100毫秒 | 低于100毫秒 | 均低于100毫秒 |"
        assert "响应时间中位数（p50）和p95响应时间在发布前后均低于100毫秒（延迟直方图无法区分更细的差别）。" in markdown
        assert "- 低于、高于（响应时间）：" in markdown
    assert json.loads(rendered.json)["metrics"][3]["before_bound"] == "under"


@pytest.mark.parametrize("language, told", [("en", "too few measurements to tell"), ("zh-CN", "测量太少，无法判断")])
def test_a_large_change_measured_in_too_few_steps_is_not_called_unchanged(tmp_path, language, told):
    document, rendered = short_report(tmp_path, language)
    cpu = by_key(document)["cpu"]
    assert cpu["after"] == pytest.approx(2 * cpu["before"])  # doubled
    assert cpu["noise"]["why"] == "too_few_steps" and cpu["noise"]["steps"] == [1, 1]
    assert cpu["direction"] is None and cpu["assessment"] is None  # not "same": nothing was told
    assert cpu["change_percent"] == pytest.approx(100)  # the difference itself is still given
    cpu_row = row(rendered.markdown, "CPU")
    assert cpu_row.endswith(f"| {told} |"), cpu_row
    if language == "en":
        assert (
            "Too few measurements to tell whether these changed beyond their usual noise: "
            "CPU use per host (1.00% before, 2.00% after)."
        ) in summary_of(rendered.markdown)
        assert "unchanged" not in cpu_row and "nothing measured changed" not in rendered.markdown
    else:
        assert (
            "测量次数太少，无法判断以下指标的变化是否超出正常波动：单台主机CPU使用率（发布前1.00%，发布后2.00%）。"
            in rendered.markdown
        )
        assert "无明显变化" not in cpu_row and "均未超出正常波动" not in rendered.markdown
    assert json.loads(rendered.json)["metrics"][5]["noise"]["why"] == "too_few_steps"


def test_errors_that_rose_in_too_few_steps_leave_the_verdict_open(tmp_path):
    document, rendered = short_report(tmp_path, after=[step(requests=150, errors=9, fast=150, cpu=0.3)] * 14)
    errors = by_key(document)["error_rate"]
    assert errors["after"] == pytest.approx(0.06) and errors["direction"] is None
    summary = summary_of(rendered.markdown)
    assert "**Too few measurements to judge yet: no incidents.**" in summary
    assert "Healthy" not in summary and "no more errors" not in summary
    assert "error rate (0% before, 6.00% after)" in summary


def test_the_summary_agrees_with_the_table_and_names_the_span_measured(tmp_path):
    _document, rendered = short_report(tmp_path, after=BEFORE)  # the same service on both sides
    summary = summary_of(rendered.markdown)
    assert "| Metric | Before (6 min 30 s measured) | After (6 min 30 s measured) | Change |" in rendered.markdown
    assert "| Request volume | 1,950 in 6 min 30 s | 1,950 in 6 min 30 s | unchanged |" in rendered.markdown
    # the period compared with is the one measured, not the 3-day window configured
    assert (
        "Compared with the 6 min 30 s measured before it, nothing measured changed beyond its usual noise." in summary
    )
    assert "3 days" not in summary
    assert "no metrics were available" not in summary and "no data" not in table_of(rendered.markdown)
    assert "**Healthy: no more errors, no incidents.**" in summary


def test_the_period_compared_with_in_chinese_is_the_one_measured(tmp_path):
    _document, rendered = short_report(tmp_path, "zh-CN", after=BEFORE)
    assert "与发布前实测的6分钟30秒相比，各项指标均未超出正常波动。" in rendered.markdown
    assert "3天" not in rendered.markdown.split("## 发布前后对比")[0]


@pytest.mark.parametrize("language", ["en", "zh-CN"])
def test_nothing_measured_after_the_rollout_is_said_in_words(tmp_path, language):
    config, store, live, _now = recorded(tmp_path, BEFORE, [], language)
    document = build(config, store, "2.0.0", now=live + 5)  # a report asked for at once: nothing recorded yet
    assert all(m["after"] is None for m in document["metrics"]) and document["windows"]["after"] is not None
    markdown = render(document).markdown
    assert not re.search(r"(?<![\d.])0 ?(ms|毫秒)", markdown)  # never "After (0 ms measured)"
    summary = markdown.split("\n## ")[1]  # the summary section, in either language
    if language == "en":
        assert "| Metric | Before (6 min 30 s measured) | After (nothing measured) | Change |" in markdown
        assert "**Too few measurements to judge yet: no incidents.**" in summary
        assert (
            "Nothing was measured after the rollout, so there is nothing to compare with the 6 min 30 s "
            "measured before it."
        ) in summary
        assert "keep releaser watch running" in summary  # what to do about it
        assert "no metrics were available" not in summary and "Healthy" not in summary
    else:
        assert "| 指标 | 发布前（实测6分钟30秒） | 发布后（无实测数据） | 变化 |" in markdown
        assert "发布后没有测到任何数据，因此无法与发布前实测的6分钟30秒对比。" in summary
        assert "**测量太少，尚无法判断：无故障。**" in summary and "没有可用的指标" not in summary


def test_one_look_after_the_rollout_compares_only_what_it_measured(tmp_path):
    config, store, live, _now = recorded(tmp_path, BEFORE, [])
    store.add_samples(samples(live + 1, LOOK, []))
    document = build(config, store, "2.0.0", now=live + 5)  # one look after it went live, the next not taken yet
    assert by_key(document)["availability"]["after"] == 1.0 and by_key(document)["requests"]["after"] is None
    markdown = render(document).markdown
    summary = summary_of(markdown)
    assert "| Metric | Before (6 min 30 s measured) | After | Change |" in markdown  # looked at, nothing counted
    assert "nothing measured in both windows (availability) changed beyond its usual noise" in summary
    assert (
        "Measured only before the rollout: request volume, error rate, median response time (p50), "
        "p95 response time, CPU use per host."
    ) in summary
    assert not re.search(r"(?<![\d.])0 ms", markdown) and "Healthy" not in summary


def test_no_window_after_a_release_that_is_not_live(tmp_path):
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "app.yaml").write_text("hooks: {}\n")
    (tmp_path / "environments.yaml").write_text(CONFIG.format(spans="", language="en", timezone=""))
    config = load_config(tmp_path / "environments.yaml")
    store = SqliteStore(config.state_path)
    store.add_release(Release("2.0.0", "/a.tgz", "ff", 1, created_by="ci"))
    store.start_stage_run("2.0.0", "full", "prod", "alice")  # still rolling out
    started = datetime.fromisoformat(store.stage_runs("2.0.0")[0].started_at).timestamp()
    store.add_samples(samples(started - len(BEFORE) * LOOK, LOOK, BEFORE))
    document = build(config, store, "2.0.0", now=started + 60)
    assert document["windows"]["after"] is None and document["rollout"]["live_at"] is None
    markdown = render(document).markdown
    assert "| Metric | Before (6 min 30 s measured) | After (no window: not live) | Change |" in markdown
    assert "so there is no window after it to compare" in summary_of(markdown)
    assert not re.search(r"(?<![\d.])0 ms", markdown) and "no metrics were available" not in markdown


def labels_cut(drawn) -> list[str]:
    """The texts of a chart that do not show whole: outside the picture, or (the rollout's label)
    outside the plot or over the legend."""
    drawn.canvas.draw()
    renderer = drawn.canvas.get_renderer()
    axes = drawn.axes[0]
    legend = axes.get_legend()
    (left, right), (bottom, top) = axes.get_xlim(), axes.get_ylim()
    ticks = [t for t in axes.get_xticklabels() if left <= t.get_position()[0] <= right]  # the ones drawn
    ticks += [t for t in axes.get_yticklabels() if bottom <= t.get_position()[1] <= top]
    texts = [t for t in [*ticks, *axes.texts, *legend.get_texts()] if t.get_visible() and t.get_text()]
    cut = []
    for text in texts:
        box, bounds = text.get_window_extent(renderer), drawn.bbox
        if "\u2192" in text.get_text():  # the rollout's label: inside the plot, clear of the legend
            bounds = axes.get_window_extent(renderer)
            if box.overlaps(legend.get_window_extent(renderer)):
                cut.append(f"{text.get_text()} (over the legend)")
        if box.x0 < bounds.x0 - 0.5 or box.x1 > bounds.x1 + 0.5 or box.y0 < bounds.y0 - 0.5 or box.y1 > bounds.y1 + 0.5:
            cut.append(text.get_text())
    return cut


@pytest.mark.parametrize(
    "before, after",
    [(BEFORE, AFTER), (BEFORE, []), ([], AFTER)],
    ids=["both windows", "nothing after", "nothing before"],
)
@pytest.mark.parametrize("language", ["en", "zh-CN"])
def test_charts_span_the_time_measured_and_keep_every_label_whole(tmp_path, before, after, language):
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    from releaser.report.charts import figure, time_span
    from releaser.report.compute import METRICS
    from releaser.report.render import words_for

    config, store, _live, now = recorded(tmp_path, before, after, language)
    document = build(config, store, "2.0.0", now=now)
    rollout = datetime.fromisoformat(document["rollout"]["started_at"]).replace(microsecond=0)
    start, end = time_span(document, ZoneInfo("UTC"))
    # the axis spans the minutes measured (and the rollout), not the 3-day windows configured
    assert start == (
        rollout - timedelta(seconds=1 + len(before) * LOOK)
        if before
        else datetime.fromisoformat(document["rollout"]["started_at"])
    )
    assert end == datetime.fromisoformat(
        document["windows"]["after"]["measured_to"] if after else document["rollout"]["live_at"]
    )
    assert (end - start).total_seconds() < 15 * 60
    words = words_for(document)
    for metric in METRICS:
        drawn = figure(document, metric.key, metric.unit, words)
        if drawn is None:
            continue
        try:
            assert drawn.axes[0].get_xlim() == pytest.approx((mdates.date2num(start), mdates.date2num(end)))
            assert labels_cut(drawn) == [], metric.key
            bottom, top = drawn.axes[0].get_ylim()
            if metric.key in ("error_rate", "availability"):  # shares of the requests: never past 100%
                assert top <= 100, (metric.key, top)
            if metric.key == "availability":  # near 100%: zoomed in, not a line along the top of 0-100
                assert 90 < bottom < 100 == top, bottom
            marker = [t for t in drawn.axes[0].texts if "\u2192" in t.get_text()]
            assert [t.get_text() for t in marker] == [f"{words('l.before')} \u2192 2.0.0"]  # whole, never "2."
            renderer, area = drawn.canvas.get_renderer(), drawn.axes[0].get_window_extent()
            box = marker[0].get_window_extent(renderer)
            middle = drawn.axes[0].transData.transform((mdates.date2num(rollout), 0))[0]
            assert box.x0 - 0.02 * area.width <= middle <= box.x1 + 0.02 * area.width  # over the rollout's band
            low, high = drawn.axes[0].get_xlim()
            assert (
                sum(
                    t.get_visible() and bool(t.get_text()) and low <= t.get_position()[0] <= high
                    for t in drawn.axes[0].get_xticklabels()
                )
                >= 2
            )  # the time axis still reads
        finally:
            plt.close(drawn)
    html = render(document).html
    note = {
        "en": "Each chart spans only the time measured (6 min 30 s before the release, 7 min after it)",
        "zh-CN": "每张图只涵盖实测的时间（发布前6分钟30秒，发布后7分钟）",
    }[language]
    if before and after:
        assert note in html


def test_the_json_has_the_span_measured_and_no_rate_a_day(tmp_path):
    from releaser.report.compute import per_day

    _document, rendered = short_report(tmp_path)
    as_json = json.loads(rendered.json)
    before = as_json["windows"]["before"]
    assert before["observed_seconds"] == pytest.approx(390)
    measured = datetime.fromisoformat(before["measured_to"]) - datetime.fromisoformat(before["measured_from"])
    assert measured.total_seconds() == pytest.approx(390, abs=1)
    requests = by_key(as_json)["requests"]
    # what the table says, 1,950 in 6 min 30 s: the count, the seconds, the mean rate a second; no day
    assert row(rendered.markdown, "Request volume") == (
        "| Request volume | 1,950 in 6 min 30 s | 2,100 in 7 min | unchanged |"
    )
    assert (requests["before_total"], requests["before_seconds"], requests["before_per_day"]) == (1950, 390, None)
    assert requests["before"] == pytest.approx(5) and requests["unit"] == "per_second"
    rates_a_day = [
        value
        for item in [*as_json["metrics"], *as_json["features"]]
        for key, value in item.items()
        if key.endswith("per_day")
    ]
    assert len(rates_a_day) == 4 and set(rates_a_day) == {None}  # requests and the feature, before and after
    assert per_day(2188, 219) is None and per_day(172_800, 2 * 86400) == 86400  # a day from a day or more only
    assert "a day" not in rendered.markdown.split("## Words used here")[0]


def test_value_labels_of_huge_and_tiny_rates_fit_and_stay_plain(tmp_path):
    import matplotlib.pyplot as plt

    from releaser.report.charts import figure
    from releaser.report.render import words_for

    heavy = [step(requests=9e9, fast=9e9, feature=0.001)] * 13  # 300 million requests a second, a rare feature
    config, store, _live, now = recorded(tmp_path, heavy, heavy)
    document = build(config, store, "2.0.0", now=now)
    words = words_for(document)
    for drawn in (
        figure(document, "requests", "per_second", words),
        figure(document, "batch-order", "per_second", words, feature=True),
    ):
        try:
            assert labels_cut(drawn) == []
            values = [t.get_text() for t in drawn.axes[0].get_yticklabels() if t.get_text()]
            assert values and not any("e" in v for v in values), values  # 0.00002, never 2e-05
        finally:
            plt.close(drawn)


def test_the_value_axis_of_a_share_ends_at_100_and_leaves_the_labels_room() -> None:
    from releaser.report.charts import _value_axis

    assert _value_axis([2.0, 4.0], share=False, scale=100.0) == (0.0, pytest.approx(5.4), "upper")
    assert _value_axis([], share=True, scale=100.0) == (0.0, 1.0, "upper")  # nothing measured
    assert _value_axis([0.5, 1.0], share=True, scale=100.0) == (0.0, pytest.approx(1.35), "upper")  # an error rate
    low, high, labels = _value_axis([99.8, 100.0, 99.9], share=True, scale=100.0)  # availability
    assert 99.4 < low < 99.8 and high == 100.0 and labels == "lower"
    assert _value_axis([40.0, 95.0, 99.0], share=True, scale=100.0) == (0.0, 100.0, "lower")  # a bad dip
    assert _value_axis([90.0, 5.0, 3.0], share=True, scale=100.0) == (0.0, 100.0, "upper")  # errors spiking
