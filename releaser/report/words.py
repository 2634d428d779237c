"""The words of a report, in English or Simplified Chinese: labels, values with their units,
and the sentences that say what changed. One language per report, never mixed."""

from __future__ import annotations

from datetime import datetime

TEXT = {
    "en": {
        "title": "Release {version} of {project}: what changed",
        "subject": "[{project}] Release {version}: effect report",
        "preview": "Preview: this report is due on {due}; the window after the release is not complete yet.",
        "not_live": "Preview: {version} has not completed its rollout, so there is no window after it yet.",
        "summary": "Summary",
        "release": "The release",
        "version": "Version", "notes": "Notes", "features": "Features", "none": "none",
        "stages": "How it was rolled out",
        "stage": "Stage", "environment": "Environment", "status": "Result", "by": "Promoted by",
        "started": "Started", "finished": "Finished",
        "metrics": "Before and after",
        "metric": "Metric", "before": "Before", "after": "After", "change": "Change",
        "windows": "Before: {before}. After: {after}. The rollout itself ({rollout}) is left out.",
        "window_span": "{start} to {end} ({observed} measured)",
        "cut_short": "the window after ends early, when {next} started rolling out",
        "cut_by_rollback": "the window after ends early: the release was rolled back on {at}",
        "s.rolled_back": "The release was rolled back on {at}; the figures after it cover the time it ran.",
        "charts": "Over time",
        "chart_note": "Blue: before the release. Green: after. Grey band: the rollout.",
        "feature_usage": "Feature usage",
        "feature": "Feature", "uses_before": "Before (a day)", "uses_after": "After (a day)",
        "not_measured": "no usage query configured",
        "incidents": "Incidents",
        "no_incidents": "No incidents: nothing had to be rolled back.",
        "when": "When", "reason": "Why", "detect": "Time to detect", "rollback": "Time to roll back", "sla": "Within the {sla} SLA",
        "yes": "yes", "no": "no",
        "no_data": "no data",
        "problems": "Missing data",
        "generated": "Written by releaser on {at}.",
        "m.requests": "request volume", "m.error_rate": "error rate", "m.availability": "availability",
        "m.p50": "median response time (p50)", "m.p95": "p95 response time", "m.cpu": "CPU use per host",
        "s.live": "Release {version} of {project} has been live for all users of {environment} since {live}.",
        "s.compared": "Compared with the {window} before it:",
        "s.nothing_changed": "Compared with the {window} before it, nothing measured changed noticeably.",
        "s.no_metrics": "There are no measurements to compare: no metrics were available for these windows.",
        "s.not_live": "{version} did not reach all users (its last stage: {stage}, {status}), so there is no window after it to compare.",
        "s.feature_new": "The new feature {name} is used {count} times a day.",
        "s.feature": "The feature {name} is used {count} times a day ({before} before).",
        "s.incidents_ok": "There {were} {count} incident{s}; each was rolled back automatically within the {sla} SLA (the slowest took {slowest}).",
        "s.incidents_bad": "There {were} {count} incident{s}; {late} of them took longer than the {sla} SLA to roll back.",
        "s.missing": "No data for: {names}.",
        "d.down": "{name} fell from {before} to {after} ({percent})",
        "d.up": "{name} rose from {before} to {after} ({percent})",
        "d.same": "{name} stayed at {after}",
        "d.new": "{name}: no data before the release, {after} after",
        "d.gone": "{name}: {before} before the release, no data after",
        "d.none": "{name}: no data",
        "per_day": "{value} a day",
        "better": "better", "worse": "worse",
        "join": "; ", "end": ".",
        "day": "{n} day{s}", "hour": "{n} h", "minute": "{n} min", "second": "{n} s", "ms": "{n} ms",
        "list": ", ", "points": "{n} pp",
        "st.running": "running", "st.rolling_back": "rolling back", "st.passed": "passed",
        "st.rolled_back": "rolled back", "st.rollback_failed": "rollback failed", "st.skipped": "skipped (forced)",
        "st.held": "held",
        "u.requests": "requests per second", "u.ratio": "%", "u.seconds": "ms", "u.feature": "uses a day",
    },
    "zh-CN": {
        "title": "{project} 版本 {version}：发布效果",
        "subject": "[{project}] 版本 {version} 发布效果报告",
        "preview": "预览：本报告将于 {due} 正式发出；发布后的观察窗口尚未结束。",
        "not_live": "预览：{version} 尚未完成全量发布，因此还没有发布后的数据。",
        "summary": "摘要",
        "release": "本次发布",
        "version": "版本", "notes": "说明", "features": "新功能", "none": "无",
        "stages": "发布过程",
        "stage": "阶段", "environment": "环境", "status": "结果", "by": "执行人",
        "started": "开始", "finished": "结束",
        "metrics": "发布前后对比",
        "metric": "指标", "before": "发布前", "after": "发布后", "change": "变化",
        "windows": "发布前：{before}。发布后：{after}。发布过程本身（{rollout}）不计入。",
        "window_span": "{start} 至 {end}（有数据 {observed}）",
        "cut_short": "因 {next} 开始发布，发布后窗口提前结束",
        "cut_by_rollback": "该版本已于 {at} 回滚，发布后窗口提前结束",
        "s.rolled_back": "该版本已于 {at} 回滚；发布后的数据只涵盖其运行期间。",
        "charts": "随时间变化",
        "chart_note": "蓝色：发布前。绿色：发布后。灰色区域：发布过程。",
        "feature_usage": "功能使用情况",
        "feature": "功能", "uses_before": "发布前（每天）", "uses_after": "发布后（每天）",
        "not_measured": "未配置使用量查询",
        "incidents": "故障",
        "no_incidents": "没有故障：无需回滚。",
        "when": "时间", "reason": "原因", "detect": "发现用时", "rollback": "回滚用时", "sla": "是否在 {sla} SLA 内",
        "yes": "是", "no": "否",
        "no_data": "无数据",
        "problems": "缺失的数据",
        "generated": "由 releaser 于 {at} 生成。",
        "m.requests": "请求量", "m.error_rate": "错误率", "m.availability": "可用性",
        "m.p50": "响应时间中位数（p50）", "m.p95": "p95 响应时间", "m.cpu": "单台主机 CPU 使用率",
        "s.live": "{project} 版本 {version} 自 {live} 起已对 {environment} 的全部用户上线。",
        "s.compared": "与发布前 {window} 相比：",
        "s.nothing_changed": "与发布前 {window} 相比，各项指标没有明显变化。",
        "s.no_metrics": "没有可对比的数据：这两个时间窗口内没有可用的指标。",
        "s.not_live": "{version} 未完成全量发布（最后阶段：{stage}，{status}），因此没有发布后的数据可供对比。",
        "s.feature_new": "新功能 {name} 每天被使用 {count} 次。",
        "s.feature": "功能 {name} 每天被使用 {count} 次（发布前为 {before}）。",
        "s.incidents_ok": "共发生 {count} 次故障，均在 {sla} SLA 内自动回滚（最慢一次用时 {slowest}）。",
        "s.incidents_bad": "共发生 {count} 次故障，其中 {late} 次回滚超过了 {sla} SLA。",
        "s.missing": "以下指标无数据：{names}。",
        "d.down": "{name}从 {before} 降至 {after}（{percent}）",
        "d.up": "{name}从 {before} 升至 {after}（{percent}）",
        "d.same": "{name}保持在 {after}",
        "d.new": "{name}：发布前无数据，发布后为 {after}",
        "d.gone": "{name}：发布前为 {before}，发布后无数据",
        "d.none": "{name}：无数据",
        "per_day": "每天 {value}",
        "better": "改善", "worse": "变差",
        "join": "；", "end": "。",
        "day": "{n} 天", "hour": "{n} 小时", "minute": "{n} 分钟", "second": "{n} 秒", "ms": "{n} 毫秒",
        "list": "、", "points": "{n} 个百分点",
        "st.running": "进行中", "st.rolling_back": "回滚中", "st.passed": "通过",
        "st.rolled_back": "已回滚", "st.rollback_failed": "回滚失败", "st.skipped": "已跳过（强制）",
        "st.held": "暂停",
        "u.requests": "每秒请求数", "u.ratio": "%", "u.seconds": "毫秒", "u.feature": "每天使用次数",
    },
}


class Words:
    """Formats numbers and writes sentences in one language."""

    def __init__(self, language: str):
        self.language = language
        self.text = TEXT[language]

    def __call__(self, key: str, **values) -> str:
        return self.text[key].format(**values)

    # -- values --

    def number(self, value: float) -> str:
        if value >= 100:
            return f"{value:,.0f}"
        return f"{value:,.1f}".removesuffix(".0") if value >= 10 else f"{value:.3g}"

    def percent(self, ratio: float) -> str:
        value = ratio * 100
        if value == 0 or value == 100:
            return f"{value:.0f}%"
        if value >= 99:  # availability: the nines matter
            return f"{value:.3f}".rstrip("0").rstrip(".") + "%"
        return f"{value:.2f}%" if value >= 0.01 else f"{value:.2g}%"

    def seconds(self, value: float) -> str:
        """A response time or a short duration: 850 ms, 1.2 s, 3 min 5 s, 1 h 10 min, 3 days."""
        if value < 1:
            return self("ms", n=f"{value * 1000:.3g}")
        if value < 60:
            return self("second", n=f"{value:.3g}")
        parts, rest = [], round(value)
        for key, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
            if rest >= size and len(parts) < 2:
                count, rest = divmod(rest, size)
                parts.append(self(key, n=count, s="" if count == 1 else "s"))
            elif parts:
                break
        return " ".join(parts)

    def value(self, unit: str, value: float | None) -> str:
        if value is None:
            return self("no_data")
        if unit == "seconds":
            return self.seconds(value)
        if unit == "ratio":
            return self.percent(value)
        return self("per_day", value=self.number(value))

    def change(self, item: dict) -> str:
        """A metric's change: relative (-33%), or in percentage points for shares (+0.25 pp)."""
        if item["change"] is None:
            return "—"
        if item["unit"] == "ratio":
            points = item["change"] * 100
            return self("points", n=f"{points:+.2f}" if abs(points) < 10 else f"{points:+.1f}")
        percent = item["change_percent"]
        if percent is None:
            return "—"
        return (f"{percent:+.0f}" if abs(percent) >= 10 else f"{percent:+.1f}") + "%"

    def when(self, iso: str | None) -> str:
        if not iso:
            return "—"
        return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S UTC")

    def metric_name(self, key: str, heading: bool = False) -> str:
        """In a sentence ('p95 response time fell'), or as a heading ('Error rate')."""
        name = self(f"m.{key}")
        return name[:1].upper() + name[1:] if heading and name[1:2].islower() else name

    # -- sentences --

    def delta(self, item: dict) -> str:
        """What one metric did: 'p95 response time fell from 1.2 s to 800 ms (-33%)'."""
        name = self.metric_name(item["key"])
        before, after = self.value(item["unit"], item["before"]), self.value(item["unit"], item["after"])
        if item["before"] is None and item["after"] is None:
            return self("d.none", name=name)
        if item["before"] is None:
            return self("d.new", name=name, after=after)
        if item["after"] is None:
            return self("d.gone", name=name, before=before)
        if item["direction"] == "same":
            return self("d.same", name=name, after=after)
        return self(f"d.{item['direction']}", name=name, before=before, after=after, percent=self.change(item))

    def summary(self, report: dict) -> list[str]:
        """The plain-words paragraph at the top, one sentence per item."""
        release, lines = report["release"], []
        window = self.seconds(report["window_seconds"])
        if report["rollout"]["live_at"]:
            lines.append(self("s.live", version=release["version"], project=report["project"],
                              environment=report["environment"]["name"], live=self.when(report["rollout"]["live_at"])))
        cut = (report["windows"]["after"] or {}).get("cut_short_by")
        if cut and cut["by"] == "rollback":
            lines.append(self("s.rolled_back", at=self.when(cut["at"])))
        compared = [m for m in report["metrics"] if m["before"] is not None and m["after"] is not None]
        moved = sorted((m for m in compared if m["direction"] != "same"),
                       key=lambda m: -abs(m["change_percent"] or 0))
        if not report["rollout"]["live_at"]:
            last = report["stages"][-1] if report["stages"] else {"stage": "—", "status": "registered"}
            status = self.text.get(f"st.{last['status']}", last["status"])
            lines.append(self("s.not_live", version=release["version"], stage=last["stage"], status=status))
        elif not compared:
            lines.append(self("s.no_metrics"))
        elif not moved:
            lines.append(self("s.nothing_changed", window=window))
        else:
            lines.append(self("s.compared", window=window) + " "
                         + self("join").join(self.delta(m) for m in moved[:4]) + self("end"))
        for feature in report["features"]:
            if feature["after_per_day"] is None:
                continue
            count = self.number(feature["after_per_day"])
            if feature["before_per_day"] is None:
                lines.append(self("s.feature_new", name=feature["name"], count=count))
            else:
                lines.append(self("s.feature", name=feature["name"], count=count,
                                  before=self.number(feature["before_per_day"])))
        incidents = report["incidents"]
        sla = self.seconds(report["sla"]["rollback_seconds"])
        if not incidents:
            lines.append(self("no_incidents"))
        else:
            late = [i for i in incidents if not i["within_sla"]]
            plural = {"count": len(incidents), "s": "" if len(incidents) == 1 else "s",
                      "were": "was" if len(incidents) == 1 else "were", "sla": sla}
            if late:
                lines.append(self("s.incidents_bad", late=len(late), **plural))
            else:
                slowest = max(i["time_to_rollback"] for i in incidents)
                lines.append(self("s.incidents_ok", slowest=self.seconds(slowest), **plural))
        missing = [self.metric_name(m["key"]) for m in report["metrics"] if m["before"] is None and m["after"] is None]
        if missing and compared:
            lines.append(self("s.missing", names=self("list").join(missing)))
        return lines
