"""An effect report on a few minutes of data, as a new user first sees one: the default 3-day
window and hour-long steps around a rollout measured for minutes, a service answering in a few
milliseconds (every request in the latency histogram's first bucket), CPU doubled. The report
must not contradict itself: its summary, tables, charts and JSON tell the same story, and none
of them says more than the data does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from releaser.report.compute import build
from releaser.report.render import render
from tests.test_report_words import by_key, dataset, step, summary_of

LOOK = 30.0  # seconds between two recorded samples
BEFORE = [step(requests=150, fast=150, cpu=0.3, feature=0)] * 13  # 6 min 30 s
AFTER = [step(requests=150, fast=150, cpu=0.6, feature=2)] * 14  # 7 min


def short_report(tmp_path: Path, language: str = "en", before: list[dict] = BEFORE, after: list[dict] = AFTER):
    """(document, rendered) of a release measured for minutes under the default 3-day window."""
    config, store, _live, now = dataset(tmp_path, before, after, LOOK, language=language, configured=True)
    assert config.report.window == 3 * 86400 and config.report.resolution == 3600  # what a new user runs
    document = build(config, store, "2.0.0", now=now)
    return document, render(document)


def row(markdown: str, name: str) -> str:
    """The line of the before-and-after table that names `name`."""
    return next(line for line in markdown.splitlines() if line.startswith("| ") and name in line)


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
        assert ("Too few measurements to tell whether these changed beyond their usual noise: "
                "CPU use per host (1.00% before, 2.00% after).") in summary_of(rendered.markdown)
        assert "unchanged" not in cpu_row and "nothing measured changed" not in rendered.markdown
    else:
        assert "测量次数太少，无法判断以下指标的变化是否超出正常波动：单台主机CPU使用率（发布前1.00%，发布后2.00%）。" in rendered.markdown
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
