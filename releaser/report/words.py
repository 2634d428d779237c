"""The words of a report, in English or Simplified Chinese: labels, values with their units,
and the sentences that say what changed. One language per report, never mixed; Chinese text
uses full-width punctuation and no spaces around Chinese characters. Times are shown in the
report's time zone."""

from __future__ import annotations

from datetime import datetime

from ..terminal import zone_label
from .compute import DAY
from .noise import MIN_CHANGE_PERCENT, MIN_STEPS, SIGNIFICANCE

TEXT = {
    "en": {
        "title": "Release {version} of {project}: what changed",
        "subject": "[{project}] Release {version}: effect report",
        "preview": "Preview: this report is due on {due}; the window after the release is not complete yet.",
        "not_live": "Preview: {version} has not completed its rollout, so there is no window after it yet.",
        "summary": "Summary",
        "release": "The release",
        "version": "Version",
        "notes": "Notes",
        "features": "Features",
        "none": "none",
        "stages": "How it was rolled out",
        "stage": "Stage",
        "environment": "Environment",
        "status": "Result",
        "by": "Promoted by",
        "started": "Started",
        "finished": "Finished",
        "metrics": "Before and after",
        "metric": "Metric",
        "change": "Change",
        "before_measured": "Before ({seconds} measured)",
        "after_measured": "After ({seconds} measured)",
        "before_unmeasured": "Before (nothing measured)",
        "after_unmeasured": "After (nothing measured)",
        "before_plain": "Before",
        "after_plain": "After",
        "after_no_window": "After (no window: not live)",
        "windows": "Before: {before}. After: {after}. The rollout itself ({rollout}) is left out.",
        "window_span": "{start} to {end}",
        "span": "{start} to {end}",
        "cut_short": "the window after ends early, when {next} started rolling out",
        "cut_by_rollback": "the window after ends early: the release was rolled back on {at}",
        "charts": "Over time",
        "chart_note": "Each chart spans only the time measured ({before} before the release, {after} after it), "
        "with the rollout shaded between; dashed lines show each window as a whole, as in the table. "
        "Times in {zone}.",
        "nothing": "nothing",
        "caption": "{name} ({unit})",
        "feature_usage": "Feature usage",
        "feature": "Feature",
        "not_measured": "no usage query configured",
        "incidents": "Incidents",
        "no_incidents": "No incidents: nothing had to be rolled back.",
        "when": "When",
        "reason": "Why",
        "detect": "Time to detect",
        "rollback": "Time to roll back",
        "sla": "Within the {sla} SLA",
        "yes": "yes",
        "no": "no",
        "no_data": "no data",
        "unchanged": "unchanged",
        "problems": "Missing data",
        "generated": "Written by releaser on {at}.",
        "glossary": "Words used here",
        "g.p50": "p50 (median) response time: half of the requests were answered faster than this.",
        "g.p95": "p95 response time: 95 of every 100 requests were answered faster than this; "
        "the slowest 5 took longer.",
        "g.pp": "pp (percentage points): the difference between two percentages; 1.00% to 1.50% is +0.50 pp.",
        "g.noise": "unchanged: a difference is called a change (better or worse) only when it is at least "
        "{percent}% and larger than the noise: a rank test (Mann-Whitney) of the values of the "
        "window's {step} steps before against those after must give p < {alpha}, with at least "
        "{steps} measured steps on each side.",
        "g.bound": "under, over (a response time): the latency histogram counts requests in buckets, so a "
        "response time in its first bucket is known only to be under that bucket's bound, and one "
        "beyond its last bucket only to be over it.",
        "m.requests": "request volume",
        "m.error_rate": "error rate",
        "m.availability": "availability",
        "m.p50": "median response time (p50)",
        "m.p95": "p95 response time",
        "m.cpu": "CPU use per host",
        # the verdict, first line of the summary
        "v.healthy": "Healthy: {parts}.",
        "v.too_few": "Too few measurements to judge yet: {parts}.",
        "v.attention": "Needs a look: {parts}.",
        "v.rolled_back": "Rolled back after {duration} live for all users{cause}.",
        "v.rolled_back_early": "Rolled back at {stage}{cause}: it never reached all users.",
        "v.not_live": "Not rolled out to all users: its last stage, {stage}, {status}.",
        "v.cause": ": {reason}",
        "p.faster": "faster",
        "p.slower": "slower",
        "p.as_fast": "as fast as before",
        "p.fewer_errors": "fewer errors",
        "p.more_errors": "more errors",
        "p.same_errors": "no more errors",
        "p.more_available": "more available",
        "p.less_available": "less available",
        "p.no_incidents": "no incidents",
        "p.incidents_ok": "{count} incident{s}, each rolled back within the SLA",
        "p.incidents_late": "{count} incident{s}, {late} rolled back later than the SLA",
        "p.join": ", ",
        # what happened to the release
        "s.live": "Release {version} of {project} has been live for all users of {environment} since {live}.",
        "s.superseded": "Release {version} of {project} was live for all users of {environment} from {live} "
        "until {until}, when {next} started rolling out.",
        "s.rolled_back": "Release {version} of {project} reached all users of {environment} on {live} and was "
        "rolled back on {at}; the figures after it cover the time it ran.",
        "s.rolled_back_later": "Release {version} of {project} reached all users of {environment} on {live}; "
        "it has since been rolled back.",
        "s.short": "These figures cover only {before} before and {after} after the rollout: too short for "
        "daily rates, so volumes are the counts measured.",
        "s.compared": "Compared with the {window} before it:",
        "s.nothing_changed": "Compared with the {window} before it, nothing measured changed beyond its usual noise.",
        "s.measured_span": "{span} measured",
        "s.nothing_changed_in": "Compared with the {window} before it, nothing measured in both windows ({names}) "
        "changed beyond its usual noise.",
        "s.no_metrics": "There are no measurements to compare: no metrics were available for these windows.",
        "s.nothing_after": "Nothing was measured after the rollout, so there is nothing to compare with the "
        "{before} measured before it.",
        "s.nothing_before": "Nothing was measured before the rollout, so there is nothing to compare the "
        "{after} measured after it with.",
        "s.nothing_in_common": "No metric was measured both before and after the rollout, so there is nothing "
        "to compare.",
        "s.scrape_hint": "With a scrape source, releaser records metrics only while a stage bakes and while "
        "releaser watch runs: keep releaser watch running to measure the windows.",
        "s.not_live": "{version} did not reach all users (its last stage: {stage}, {status}), so there is no "
        "window after it to compare.",
        "s.feature_new": "The new feature {name} is used {count}.",
        "s.feature": "The feature {name} is used {count} ({before} before).",
        "s.feature_new_short": "The new feature {name} was used {count}.",
        "s.feature_short": "The feature {name} was used {count} ({before} before).",
        "s.incidents_ok": "There {were} {count} incident{s}; each was rolled back automatically within the "
        "{sla} SLA (the slowest took {slowest}).",
        "s.incidents_bad": "There {were} {count} incident{s}; {late} of them took longer than the {sla} SLA "
        "to roll back.",
        "s.missing": "No data for: {names}.",
        "s.only_before": "Measured only before the rollout: {names}.",
        "s.only_after": "Measured only after the rollout: {names}.",
        "d.down": "{name} fell from {before} to {after} ({percent})",
        "d.up": "{name} rose from {before} to {after} ({percent})",
        "d.volume_down": "{name} fell by {percent} ({before} before, {after} after)",
        "d.volume_up": "{name} rose by {percent} ({before} before, {after} after)",
        "d.same": "{name} stayed at {after}",
        "d.new": "{name}: no data before the release, {after} after",
        "d.gone": "{name}: {before} before the release, no data after",
        "d.none": "{name}: no data",
        "d.up_bound": "{name} rose from {before} to {after}",
        "d.down_bound": "{name} fell from {before} to {after}",
        "s.both_under": "{names} stayed under {value}, before and after the release (the latency histogram "
        "tells no finer).",
        "s.both_over": "{names} stayed over {value}, before and after the release (the latency histogram "
        "tells no higher).",
        "under": "under {value}",
        "over": "over {value}",
        "c.both_under": "both under {value}",
        "c.both_over": "both over {value}",
        "c.up": "higher",
        "c.down": "lower",
        "and": " and ",
        "too_few": "too few measurements to tell",
        "s.too_few": "Too few measurements to tell whether these changed beyond their usual noise: {items}.",
        "s.too_few_item": "{name} ({before} before, {after} after)",
        "per_day": "{value} a day",
        "times_per_day": "{value} times a day",
        "counted": "{value} in {seconds}",
        "times_counted": "{value} times in {seconds}",
        "better": "better",
        "worse": "worse",
        "judged": "{change} ({judgement})",
        "label": "{name}: {value}",
        "join": "; ",
        "end": ".",
        "dash": " — ",
        "day": "{n} day{s}",
        "hour": "{n} h",
        "minute": "{n} min",
        "second": "{n} s",
        "ms": "{n} ms",
        "unit_join": " ",
        "list": ", ",
        "points": "{n} pp",
        "st.running": "running",
        "st.rolling_back": "rolling back",
        "st.passed": "passed",
        "st.rolled_back": "rolled back",
        "st.rollback_failed": "rollback failed",
        "st.skipped": "skipped (forced)",
        "st.held": "held",
        "st.registered": "not started",
        "u.requests": "requests per second",
        "u.ratio": "%",
        "u.seconds": "ms",
        "u.feature": "uses per second",
        "l.before": "before",
        "l.after": "after",
        "l.mean": "whole window",
    },
    "zh-CN": {
        "title": "{project}版本{version}：发布效果",
        "subject": "【{project}】版本{version}发布效果报告",
        "preview": "预览：本报告将于{due}正式发出；发布后的观察窗口尚未结束。",
        "not_live": "预览：{version}尚未完成全量发布，因此还没有发布后的数据。",
        "summary": "摘要",
        "release": "本次发布",
        "version": "版本",
        "notes": "说明",
        "features": "新功能",
        "none": "无",
        "stages": "发布过程",
        "stage": "阶段",
        "environment": "环境",
        "status": "结果",
        "by": "执行人",
        "started": "开始",
        "finished": "结束",
        "metrics": "发布前后对比",
        "metric": "指标",
        "change": "变化",
        "before_measured": "发布前（实测{seconds}）",
        "after_measured": "发布后（实测{seconds}）",
        "before_unmeasured": "发布前（无实测数据）",
        "after_unmeasured": "发布后（无实测数据）",
        "before_plain": "发布前",
        "after_plain": "发布后",
        "after_no_window": "发布后（无窗口：未全量上线）",
        "windows": "发布前：{before}。发布后：{after}。发布过程本身（{rollout}）不计入。",
        "window_span": "{start}至{end}",
        "span": "{start}至{end}",
        "cut_short": "因{next}开始发布，发布后窗口提前结束",
        "cut_by_rollback": "该版本已于{at}回滚，发布后窗口提前结束",
        "charts": "随时间变化",
        "chart_note": "每张图只涵盖实测的时间（发布前{before}，发布后{after}），中间阴影为发布过程；"
        "虚线为各窗口整体的值，与表格一致。时间为{zone}。",
        "nothing": "无实测数据",
        "caption": "{name}（{unit}）",
        "feature_usage": "功能使用情况",
        "feature": "功能",
        "not_measured": "未配置使用量查询",
        "incidents": "故障",
        "no_incidents": "没有故障：无需回滚。",
        "when": "时间",
        "reason": "原因",
        "detect": "发现用时",
        "rollback": "回滚用时",
        "sla": "是否在{sla}SLA内",
        "yes": "是",
        "no": "否",
        "no_data": "无数据",
        "unchanged": "无明显变化",
        "problems": "缺失的数据",
        "generated": "由releaser于{at}生成。",
        "glossary": "术语说明",
        "g.p50": "p50（中位数）响应时间：一半的请求比这更快得到响应。",
        "g.p95": "p95响应时间：每100个请求中有95个比这更快得到响应，最慢的5个更久。",
        "g.pp": "个百分点：两个百分比之差；从1.00%到1.50%即上升0.50个百分点。",
        "g.noise": "无明显变化：只有当差异至少为{percent}%且超出正常波动时才视为变化（改善或变差）："
        "对发布前后窗口中每{step}一个数据点做秩检验（Mann-Whitney），p值须小于{alpha}，"
        "且每侧至少有{steps}个数据点。",
        "g.bound": "低于、高于（响应时间）：延迟直方图按区间计数，落在第一个区间内的响应时间只能知道低于该区间的上限，"
        "超出最后一个区间的只能知道高于它。",
        "m.requests": "请求量",
        "m.error_rate": "错误率",
        "m.availability": "可用性",
        "m.p50": "响应时间中位数（p50）",
        "m.p95": "p95响应时间",
        "m.cpu": "单台主机CPU使用率",
        "v.healthy": "健康：{parts}。",
        "v.too_few": "测量太少，尚无法判断：{parts}。",
        "v.attention": "需要关注：{parts}。",
        "v.rolled_back": "全量上线{duration}后已回滚{cause}。",
        "v.rolled_back_early": "在{stage}阶段已回滚{cause}，未触达全部用户。",
        "v.not_live": "未全量发布：最后阶段{stage}{status}。",
        "v.cause": "，原因：{reason}",
        "p.faster": "响应更快",
        "p.slower": "响应变慢",
        "p.as_fast": "响应速度不变",
        "p.fewer_errors": "错误减少",
        "p.more_errors": "错误增多",
        "p.same_errors": "错误没有增加",
        "p.more_available": "可用性提高",
        "p.less_available": "可用性下降",
        "p.no_incidents": "无故障",
        "p.incidents_ok": "{count}次故障，均在SLA内回滚",
        "p.incidents_late": "{count}次故障，其中{late}次回滚超出SLA",
        "p.join": "，",
        "s.live": "{project}版本{version}自{live}起已对{environment}的全部用户上线。",
        "s.superseded": "{project}版本{version}自{live}起对{environment}的全部用户上线，直到{until}{next}开始发布。",
        "s.rolled_back": "{project}版本{version}于{live}对{environment}的全部用户上线，于{at}回滚；"
        "发布后的数据只涵盖其运行期间。",
        "s.rolled_back_later": "{project}版本{version}于{live}对{environment}的全部用户上线，之后已回滚。",
        "s.short": (
            "这些数据只涵盖发布前{before}和发布后{after}，时间太短，无法折算为每天的数量，因此给出的是实测总数。"
        ),
        "s.compared": "与发布前{window}相比：",
        "s.nothing_changed": "与发布前{window}相比，各项指标均未超出正常波动。",
        "s.measured_span": "实测的{span}",
        "s.nothing_changed_in": "与发布前{window}相比，两个窗口都有测量的指标（{names}）均未超出正常波动。",
        "s.no_metrics": "没有可对比的数据：这两个时间窗口内没有可用的指标。",
        "s.nothing_after": "发布后没有测到任何数据，因此无法与发布前实测的{before}对比。",
        "s.nothing_before": "发布前没有测到任何数据，因此无法与发布后实测的{after}对比。",
        "s.nothing_in_common": "没有任何指标在发布前后都有测量，因此无法对比。",
        "s.scrape_hint": "使用scrape数据源时，releaser只在阶段观察期间和releaser watch运行时记录指标："
        "请保持releaser watch运行，以测量这些窗口。",
        "s.not_live": "{version}未完成全量发布（最后阶段：{stage}，{status}），因此没有发布后的数据可供对比。",
        "s.feature_new": "新功能{name}{count}。",
        "s.feature": "功能{name}{count}（发布前{before}）。",
        "s.feature_new_short": "新功能{name}{count}。",
        "s.feature_short": "功能{name}{count}（发布前{before}）。",
        "s.incidents_ok": "共发生{count}次故障，均在{sla}SLA内自动回滚（最慢一次用时{slowest}）。",
        "s.incidents_bad": "共发生{count}次故障，其中{late}次回滚超过了{sla}SLA。",
        "s.missing": "以下指标无数据：{names}。",
        "s.only_before": "仅在发布前有测量：{names}。",
        "s.only_after": "仅在发布后有测量：{names}。",
        "d.down": "{name}从{before}降至{after}（{percent}）",
        "d.up": "{name}从{before}升至{after}（{percent}）",
        "d.volume_down": "{name}下降{percent}（发布前{before}，发布后{after}）",
        "d.volume_up": "{name}上升{percent}（发布前{before}，发布后{after}）",
        "d.same": "{name}保持在{after}",
        "d.new": "{name}：发布前无数据，发布后为{after}",
        "d.gone": "{name}：发布前为{before}，发布后无数据",
        "d.none": "{name}：无数据",
        "d.up_bound": "{name}从{before}升至{after}",
        "d.down_bound": "{name}从{before}降至{after}",
        "s.both_under": "{names}在发布前后均低于{value}（延迟直方图无法区分更细的差别）。",
        "s.both_over": "{names}在发布前后均高于{value}（延迟直方图无法区分更高的值）。",
        "under": "低于{value}",
        "over": "高于{value}",
        "c.both_under": "均低于{value}",
        "c.both_over": "均高于{value}",
        "c.up": "升高",
        "c.down": "降低",
        "and": "和",
        "too_few": "测量太少，无法判断",
        "s.too_few": "测量次数太少，无法判断以下指标的变化是否超出正常波动：{items}。",
        "s.too_few_item": "{name}（发布前{before}，发布后{after}）",
        "per_day": "每天{value}",
        "times_per_day": "每天被使用{value}次",
        "counted": "{seconds}内{value}",
        "times_counted": "在{seconds}内被使用{value}次",
        "better": "改善",
        "worse": "变差",
        "judged": "{change}（{judgement}）",
        "label": "{name}：{value}",
        "join": "；",
        "end": "。",
        "dash": "——",
        "day": "{n}天",
        "hour": "{n}小时",
        "minute": "{n}分钟",
        "second": "{n}秒",
        "ms": "{n}毫秒",
        "unit_join": "",
        "list": "、",
        "points": "{n}个百分点",
        "st.running": "进行中",
        "st.rolling_back": "回滚中",
        "st.passed": "通过",
        "st.rolled_back": "已回滚",
        "st.rollback_failed": "回滚失败",
        "st.skipped": "已跳过（强制）",
        "st.held": "暂停",
        "st.registered": "未开始",
        "u.requests": "每秒请求数",
        "u.ratio": "%",
        "u.seconds": "毫秒",
        "u.feature": "每秒使用次数",
        "l.before": "发布前",
        "l.after": "发布后",
        "l.mean": "窗口整体",
    },
}


class Words:
    """Formats numbers and times and writes sentences in one language."""

    def __init__(self, language: str, timezone: str = "UTC", precise: bool = False):
        from zoneinfo import ZoneInfo

        self.language = language
        self.text = TEXT[language]
        self.zone = ZoneInfo(timezone)
        self.precise = precise  # seconds in times: for windows shorter than an hour

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
        """A response time or a duration: 850 ms, 1.2 s, 3 min 5 s, 1 h 10 min, 3 days."""
        if value < 1:
            return self("ms", n=f"{value * 1000:.3g}")
        if value < 60:
            return self("second", n=f"{value:.3g}")
        parts: list[str] = []
        rest = round(value)
        for key, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
            if rest >= size and len(parts) < 2:
                count, rest = divmod(rest, size)
                parts.append(self(key, n=count, s="" if count == 1 else "s"))
            elif parts:
                break
        return self("unit_join").join(parts)

    def value(self, unit: str, value: float | None) -> str:
        if value is None:
            return self("no_data")
        if unit == "seconds":
            return self.seconds(value)
        if unit == "ratio":
            return self.percent(value)
        return self.number(value)

    def volume(self, counted: dict, side: str, uses: bool = False) -> str:
        """What a window counted (a metric's or a feature's `{side}_total`, `_seconds`, `_per_day`):
        a rate a day when the window measured covers a day (compute.per_day), else the count
        itself and how long it was measured ("52 in 7 s")."""
        total, seconds, per_day = (counted[f"{side}_{k}"] for k in ("total", "seconds", "per_day"))
        if total is None or not seconds:
            return self("no_data")
        if per_day is not None:
            return self("times_per_day" if uses else "per_day", value=self.number(per_day))
        return self("times_counted" if uses else "counted", value=self.number(total), seconds=self.seconds(seconds))

    def metric_value(self, item: dict, side: str) -> str:
        if f"{side}_total" in item:
            return self.volume(item, side)
        if item.get(f"{side}_bound"):  # a quantile beyond the histogram's buckets: "under 100 ms"
            return self(item[f"{side}_bound"], value=self.value(item["unit"], item[side]))
        return self.value(item["unit"], item[side])

    def names(self, names: list[str]) -> str:
        """'a', 'a and b', 'a, b and c'."""
        return self("list").join(names[:-1]) + self("and") + names[-1] if len(names) > 1 else names[0]

    @staticmethod
    def why(item: dict) -> str | None:
        """Why the noise test said what it did (noise.Verdict.why; both_under, both_over), if it ran."""
        return (item.get("noise") or {}).get("why")

    def both_bound(self, item: dict) -> str:
        """The bound both sides of a metric lie beyond: the larger one they are both under, or the
        smaller one they are both over."""
        bound = (max if self.why(item) == "both_under" else min)(item["before"], item["after"])
        return self.value(item["unit"], bound)

    def change(self, item: dict) -> str:
        """A metric's change: 'unchanged' within the noise, else relative (-33%) or, for shares,
        percentage points (+0.25 pp); higher or lower when a side is only a bound, and what both
        sides are when the histogram cannot tell them apart ('both under 100 ms')."""
        if item["direction"] == "same":
            return self("unchanged")
        if self.why(item) == "too_few_steps":
            return self("too_few")
        if self.why(item) in ("both_under", "both_over"):
            return self(f"c.{self.why(item)}", value=self.both_bound(item))
        if item["change"] is None:
            return self(f"c.{item['direction']}") if item["direction"] in ("up", "down") else "—"
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
        moment = datetime.fromisoformat(iso).astimezone(self.zone)
        return moment.strftime("%Y-%m-%d %H:%M:%S" if self.precise else "%Y-%m-%d %H:%M") + " " + zone_label(moment)

    def metric_name(self, key: str, heading: bool = False) -> str:
        """In a sentence ('p95 response time fell'), or as a heading ('Error rate')."""
        name = self(f"m.{key}")
        return self.capital(name) if heading else name

    @staticmethod
    def capital(text: str) -> str:
        """A sentence's first letter in capitals, unless it starts a name such as p95."""
        return text[:1].upper() + text[1:] if text[1:2].islower() else text

    # -- sentences --

    def delta(self, item: dict) -> str:
        """What one metric did: 'p95 response time fell from 1.2 s to 800 ms (-33%)'."""
        name = self.metric_name(item["key"])
        before, after = self.metric_value(item, "before"), self.metric_value(item, "after")
        if item["before"] is None and item["after"] is None:
            return self("d.none", name=name)
        if item["before"] is None:
            return self("d.new", name=name, after=after)
        if item["after"] is None:
            return self("d.gone", name=name, before=before)
        if item["direction"] == "same":
            return self("d.same", name=name, after=after)
        if item["change"] is None:  # a side is only a bound: no difference to give
            return self(f"d.{item['direction']}_bound", name=name, before=before, after=after)
        counted = "after_total" in item and item["after_per_day"] is None
        key = f"d.volume_{item['direction']}" if counted else f"d.{item['direction']}"
        percent = self.change(item)
        if counted:
            percent = percent.lstrip("+-")
        return self(key, name=name, before=before, after=after, percent=percent)

    def verdict(self, report: dict) -> str:
        """The one line an account manager reads first."""
        incidents, stages = report["incidents"], report["stages"]
        cut = (report["windows"]["after"] or {}).get("cut_short_by") or {}
        cause = ""
        if incidents and incidents[-1]["reason"]:
            cause = self("v.cause", reason=incidents[-1]["reason"])
        if not report["rollout"]["live_at"]:
            last = stages[-1] if stages else {"stage": "—", "status": "registered"}
            if last["status"] == "rolled_back":
                return self("v.rolled_back_early", stage=last["stage"], cause=cause)
            return self("v.not_live", stage=last["stage"], status=self.text.get(f"st.{last['status']}", last["status"]))
        if cut.get("by") == "rollback":
            live = datetime.fromisoformat(report["rollout"]["live_at"])
            duration = max((datetime.fromisoformat(cut["at"]) - live).total_seconds(), 0.0)
            if duration >= 60:  # minutes are precise enough for how long it was live
                duration = round(duration / 60) * 60
            return self("v.rolled_back", duration=self.seconds(duration), cause=cause)
        metrics = {m["key"]: m for m in report["metrics"]}
        parts: list[str] = []
        worse = False
        speed = next((metrics[k] for k in ("p95", "p50") if metrics[k]["direction"] is not None), None)
        for item, words in (
            (speed, ("p.faster", "p.slower", "p.as_fast")),
            (metrics["error_rate"], ("p.fewer_errors", "p.more_errors", "p.same_errors")),
            (metrics["availability"], ("p.more_available", "p.less_available", None)),
        ):
            if item is None or item["direction"] is None:
                continue
            chosen = {"better": words[0], "worse": words[1]}.get(item["assessment"], words[2])
            worse = worse or item["assessment"] == "worse"
            if chosen:
                parts.append(self(chosen))
        late = [i for i in incidents if not i["within_sla"]]
        plural = {"count": len(incidents), "s": "" if len(incidents) == 1 else "s", "late": len(late)}
        parts.append(
            self("p.no_incidents")
            if not incidents
            else self("p.incidents_late" if late else "p.incidents_ok", **plural)
        )
        untold = any(self.why(metrics[k]) == "too_few_steps" for k in ("p95", "p50", "error_rate", "availability"))
        untold = untold or not all(self.observed(report, side) for side in ("before", "after"))
        key = "v.attention" if worse or late else "v.too_few" if untold else "v.healthy"
        return self(key, parts=self("p.join").join(parts))

    def story(self, report: dict) -> str | None:
        """What became of the release, in the tense that matches it."""
        release, rollout = report["release"], report["rollout"]
        if not rollout["live_at"]:
            return None
        names = {
            "version": release["version"],
            "project": report["project"],
            "environment": report["environment"]["name"],
            "live": self.when(rollout["live_at"]),
        }
        cut = (report["windows"]["after"] or {}).get("cut_short_by") or {}
        if cut.get("by") == "rollback":
            return self("s.rolled_back", at=self.when(cut["at"]), **names)
        if cut.get("by") == "release":
            return self("s.superseded", until=self.when(cut.get("at")), next=cut["release"], **names)
        if release["status"] in ("rolled_back", "failed"):
            return self("s.rolled_back_later", **names)
        return self("s.live", **names)

    def summary(self, report: dict) -> list[str]:
        """The plain-words paragraph at the top: the verdict, then one sentence per item."""
        lines = [self.verdict(report)]
        story = self.story(report)
        if story:
            lines.append(story)
        lines += self.comparison(report)
        for feature in report["features"]:
            if feature.get("after_total") is None:
                continue
            short = feature["after_per_day"] is None
            count = self.volume(feature, "after", uses=True)
            if feature.get("before_total") is None:
                lines.append(
                    self("s.feature_new_short" if short else "s.feature_new", name=feature["name"], count=count)
                )
            else:
                before = self.volume(feature, "before", uses=True)
                lines.append(
                    self("s.feature_short" if short else "s.feature", name=feature["name"], count=count, before=before)
                )
        incidents = report["incidents"]
        sla = self.seconds(report["sla"]["rollback_seconds"])
        if not incidents:
            lines.append(self("no_incidents"))
        else:
            late = [i for i in incidents if not i["within_sla"]]
            plural = {
                "count": len(incidents),
                "s": "" if len(incidents) == 1 else "s",
                "were": "was" if len(incidents) == 1 else "were",
                "sla": sla,
            }
            if late:
                lines.append(self("s.incidents_bad", late=len(late), **plural))
            else:
                slowest = max(i["time_to_rollback"] for i in incidents)
                lines.append(self("s.incidents_ok", slowest=self.seconds(slowest), **plural))
        compared = [m for m in report["metrics"] if m["before"] is not None and m["after"] is not None]
        missing = [self.metric_name(m["key"]) for m in report["metrics"] if m["before"] is None and m["after"] is None]
        if missing and compared:
            lines.append(self("s.missing", names=self("list").join(missing)))
        return lines

    def comparison(self, report: dict) -> list[str]:
        """What the metrics did, in as many sentences as it takes; every one of them agrees with the
        table: a window without data is said to be so, and the period compared with is the one
        measured when that is shorter than the configured window (by more than a step)."""
        release, metrics = report["release"], report["metrics"]
        if not report["rollout"]["live_at"]:
            last = report["stages"][-1] if report["stages"] else {"stage": "—", "status": "registered"}
            status = self.text.get(f"st.{last['status']}", last["status"])
            return [self("s.not_live", version=release["version"], stage=last["stage"], status=status)]
        observed = {name: self.seconds(self.observed(report, name)) for name in ("before", "after")}
        compared = [m for m in metrics if m["before"] is not None and m["after"] is not None]
        if not compared:
            measured = (self.measured(report, "before"), self.measured(report, "after"))
            key = {
                (False, False): "s.no_metrics",
                (True, False): "s.nothing_after",
                (False, True): "s.nothing_before",
                (True, True): "s.nothing_in_common",
            }[measured]
            lines = [self(key, **observed)]
            if report["environment"]["source"] == "scrape" and not all(measured):
                lines.append(self("s.scrape_hint"))
            return lines
        lines = []
        if 0 < min(self.observed(report, side) for side in ("before", "after")) < DAY:
            lines.append(self("s.short", **observed))
        window = self.seconds(report["window_seconds"])
        if self.observed(report, "before") < report["window_seconds"] - report["step_seconds"]:
            window = self("s.measured_span", span=observed["before"])
        first = ("error_rate", "availability")  # what users suffer leads whenever it moved
        moved = sorted(
            (m for m in compared if m["direction"] in ("up", "down")),
            key=lambda m: (
                m["key"] not in first,
                first.index(m["key"]) if m["key"] in first else 0,
                -abs(m["change_percent"]) if m["change_percent"] is not None else -1e9,
            ),
        )
        untold = [m for m in compared if self.why(m) == "too_few_steps"]
        one_sided = [m for m in metrics if (m["before"] is None) != (m["after"] is None)]
        if moved:
            lines.append(
                self("s.compared", window=window)
                + ("" if self.language == "zh-CN" else " ")
                + self("join").join(self.delta(m) for m in moved[:5])
                + self("end")
            )
        elif not untold and one_sided:
            lines.append(
                self(
                    "s.nothing_changed_in",
                    window=window,
                    names=self("list").join(self.metric_name(m["key"]) for m in compared),
                )
            )
        elif not untold:
            lines.append(self("s.nothing_changed", window=window))
        if untold:
            lines.append(
                self(
                    "s.too_few",
                    items=self("join").join(
                        self(
                            "s.too_few_item",
                            name=self.metric_name(m["key"]),
                            before=self.metric_value(m, "before"),
                            after=self.metric_value(m, "after"),
                        )
                        for m in untold
                    ),
                )
            )
        bounded: dict[tuple[str, str], list[str]] = {}  # quantiles the histogram cannot tell apart
        for item in compared:
            why = self.why(item)
            if why in ("both_under", "both_over"):
                bounded.setdefault((str(why), self.both_bound(item)), []).append(self.metric_name(item["key"]))
        for (why, bound), names in bounded.items():
            lines.append(self.capital(self(f"s.{why}", names=self.names(names), value=bound)))
        for side in ("before", "after"):
            alone = [self.metric_name(m["key"]) for m in one_sided if m[side] is not None]
            if alone:
                lines.append(self(f"s.only_{side}", names=self("list").join(alone)))
        return lines

    @staticmethod
    def observed(report: dict, side: str) -> float:
        """How long a window was measured (seconds; 0 without a window)."""
        return (report["windows"][side] or {}).get("observed_seconds") or 0.0

    @staticmethod
    def measured(report: dict, side: str) -> bool:
        """Whether anything at all was measured in a window: a metric or a feature's usage."""
        return any(m[side] is not None for m in report["metrics"]) or any(
            f.get(f"{side}_total") is not None for f in report["features"]
        )

    def chart_note(self, report: dict, zone: str) -> str:
        """What the charts span: the time measured of each window, as the table's headings say."""
        spans = {
            side: self.seconds(self.observed(report, side))
            if self.measured(report, side) and self.observed(report, side)
            else self("nothing")
            for side in ("before", "after")
        }
        return self("chart_note", zone=zone, **spans)

    def heading(self, report: dict, side: str) -> str:
        """A window's column heading: how long it was measured, that nothing was, or that there is
        no window after (the release is not live)."""
        if report["windows"][side] is None and side == "after":
            return self("after_no_window")
        if not self.measured(report, side):
            return self(f"{side}_unmeasured")
        seconds = self.observed(report, side)
        return self(f"{side}_measured", seconds=self.seconds(seconds)) if seconds else self(f"{side}_plain")

    def glossary(self, report: dict) -> list[str]:
        """The words the report uses that need explaining: "under" and "over" only where it uses them."""
        entries = [
            self("g.p50"),
            self("g.p95"),
            self("g.pp"),
            self(
                "g.noise",
                percent=f"{MIN_CHANGE_PERCENT:g}",
                step=self.seconds(report["step_seconds"]),
                alpha=f"{SIGNIFICANCE:g}",
                steps=MIN_STEPS,
            ),
        ]
        if any(m.get("before_bound") or m.get("after_bound") for m in report["metrics"]):
            entries.append(self("g.bound"))
        return entries
