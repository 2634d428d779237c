"""One chart per metric: the window before the release (blue), the rollout (a shaded band
labelled with the versions) and the window after (green), each window as a whole (its value in
the table) as a dashed line. Every chart of a report shares one time axis, which spans what was
measured, shown in the report's time zone; values are plain numbers (no offsets, no scientific
notation); every label shows whole. PNGs at twice the displayed size, so they stay sharp on
high-density screens and when printed."""

from __future__ import annotations

import functools
import io
import math
from datetime import datetime

from .words import Words

BEFORE, AFTER, ROLLOUT, BOUND = "#3b6fb6", "#2e9e5b", "#d9d9d9", "#eeeeee"
SCALE = {"ratio": 100.0, "seconds": 1000.0}  # charts show percentages and milliseconds
SHARES = ("error_rate", "availability")  # shares of the requests: never past 100% (cpu, of one core, may be)
WIDTH_INCHES, HEIGHT_INCHES, DPI = 7.5, 2.5, 192  # 1440 x 480 pixels, shown at 720 x 240
DISPLAY_WIDTH = 720
DATE_FORMATS = ["%Y", "%Y-%m", "%m-%d", "%m-%d %H:%M", "%H:%M", "%H:%M:%S"]  # no month names: no language
CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "WenQuanYi Zen Hei", "Noto Sans CJK JP")


@functools.cache
def _cjk_font() -> str | None:
    """A font with Chinese glyphs that matplotlib can find, or None."""
    from matplotlib import font_manager

    for family in CJK_FONTS:
        try:
            font_manager.findfont(font_manager.FontProperties(family=family), fallback_to_default=False)
            return family
        except ValueError:
            continue
    return None


def _moment(iso: str | None, zone) -> datetime | None:
    return datetime.fromisoformat(iso).astimezone(zone) if iso else None


def measured_span(report: dict, side: str, zone) -> tuple[datetime, datetime] | None:
    """The first and the last moment a window was measured, or None."""
    window = report["windows"][side] or {}
    start, end = _moment(window.get("measured_from"), zone), _moment(window.get("measured_to"), zone)
    return (start, end) if start and end else None


def time_span(report: dict, zone) -> tuple[datetime, datetime] | None:
    """The one time axis of every chart: what was measured of the window before, the rollout,
    and what was measured of the window after (never the empty part of a window configured
    longer than its data)."""
    edges = [edge for side in ("before", "after") for edge in measured_span(report, side, zone) or ()]
    edges += [e for e in (_moment(report["rollout"][key], zone) for key in ("started_at", "live_at")) if e]
    return (min(edges), max(edges)) if len(edges) > 1 and min(edges) < max(edges) else None


def _series(report: dict, name: str, key: str, feature: bool, scale: float, zone) -> tuple[list, list[float]]:
    times, values = [], []
    for point in report["series"][name]:
        value = point["features"].get(key) if feature else point.get(key)
        times.append(datetime.fromtimestamp(point["t"], zone))
        values.append(math.nan if value is None else value * scale)
    return times, values


def _averages(report: dict, key: str, feature: bool, scale: float) -> dict[str, float | None]:
    """Each window's value as the table shows it, in the chart's unit (volumes per second)."""
    if feature:
        item = next(f for f in report["features"] if f["name"] == key)
        return {
            side: item[f"{side}_total"] / item[f"{side}_seconds"] if item[f"{side}_seconds"] else None
            for side in ("before", "after")
        }
    item = next(m for m in report["metrics"] if m["key"] == key)
    return {
        side: None if item[side] is None or item.get(f"{side}_bound") else item[side] * scale
        for side in ("before", "after")
    }


def _bounds(report: dict, key: str, scale: float) -> dict[str, float]:
    """Where a quantile's values are only bounds (compute.quantile), in the chart's unit: the
    highest bound some step or window is under, the lowest one some is over."""
    item: dict = next((m for m in report["metrics"] if m["key"] == key), {})
    found = [(item[f"{side}_bound"], item[side]) for side in ("before", "after") if item.get(f"{side}_bound")]
    found += [
        (kind, point[key])
        for name in ("before", "after")
        for point in report["series"][name]
        for kind in [point.get("bounds", {}).get(key)]
        if kind
    ]
    bounds: dict[str, float] = {}
    for kind, value in found:
        bounds[kind] = (max if kind == "under" else min)(bounds.get(kind, value), value)
    return {kind: value * scale for kind, value in bounds.items()}


def _value_axis(seen: list[float], share: bool, scale: float) -> tuple[float, float, str]:
    """The value axis (bottom, top) and where the legend and the rollout's label go. From 0 with
    headroom above for the labels; a share (a percentage) never past 100%, and a share near all of
    it (availability) zoomed in under 100%, the labels below its line."""
    top = max([0.0, *seen])
    ceiling = top * 1.35 if top > 0 else 1.0
    if not share:
        return 0.0, ceiling, "upper"
    lowest = min(seen, default=0.0)
    if lowest <= scale / 2:  # no room above 100%: the labels go to the emptier half
        high = sum(value > scale / 2 for value in seen)
        return 0.0, min(ceiling, scale), "lower" if ceiling > scale and high > len(seen) - high else "upper"
    gap = max(scale - lowest, scale / 2000)  # at least 0.05%: a flat 100% is still drawn as a line
    return max(0.0, lowest - gap * 1.5), scale, "lower"


def _plain(value: float, _position=None) -> str:
    """1,250 not 1.25e3; 0.5 not 5e-1; 0.00002 not 2e-05."""
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    text = f"{value:.4g}"
    return f"{value:.12f}".rstrip("0").rstrip(".") if "e" in text else text


def chart(report: dict, key: str, unit: str, words: Words, feature: bool = False) -> bytes | None:
    """A PNG of one metric over both windows, or None when neither window has a value."""
    drawn = figure(report, key, unit, words, feature)
    if drawn is None:
        return None
    import matplotlib.pyplot as plt  # loaded, on the Agg backend, by figure()

    try:
        out = io.BytesIO()
        drawn.savefig(out, format="png")
        return out.getvalue()
    finally:
        plt.close(drawn)


def figure(report: dict, key: str, unit: str, words: Words, feature: bool = False):
    """The matplotlib Figure of one metric (the caller closes it), or None when neither window
    has a value."""
    zone = words.zone
    scale = SCALE.get(unit, 1.0)
    lines = {name: _series(report, name, key, feature, scale, zone) for name in ("before", "after")}
    if all(all(math.isnan(v) for v in values) for _, values in lines.values()):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    fonts = ["DejaVu Sans"] + ([_cjk_font()] if words.language == "zh-CN" and _cjk_font() else [])
    drawable = words.language != "zh-CN" or len(fonts) > 1  # else signs that need no Chinese glyphs

    def label(key: str, sign: str) -> str:
        return words(key) if drawable else sign

    versions = {
        "before": report["release"].get("previous") or label("l.before", "-"),
        "after": report["release"]["version"],
    }
    with matplotlib.rc_context({"font.family": fonts, "axes.unicode_minus": False}):
        drawn, axes = plt.subplots(figsize=(WIDTH_INCHES, HEIGHT_INCHES), dpi=DPI)
        try:
            averages = _averages(report, key, feature, scale)
            seen = [
                *(v for _, values in lines.values() for v in values if not math.isnan(v)),
                *(v for v in averages.values() if v is not None),
            ]
            floor, ceiling, labels_at = _value_axis(seen, key in SHARES and not feature, scale)
            for name, color in (("before", BEFORE), ("after", AFTER)):
                times, values = lines[name]
                measured = sum(not math.isnan(v) for v in values)
                if not measured:
                    continue
                axes.plot(
                    times,
                    values,
                    color=color,
                    linewidth=1.4,
                    label=versions[name],
                    marker="." if measured < 60 else None,
                    markersize=4,
                    clip_on=False,
                )
                first, last = measured_span(report, name, zone) or (times[0], times[-1])
                average = averages[name]
                if average is not None:
                    axes.hlines(
                        average,
                        mdates.date2num(first),
                        mdates.date2num(last),
                        colors=color,
                        linestyles="dashed",
                        linewidth=1.0,
                    )
            if any(v is not None for v in averages.values()):
                axes.plot([], [], color="#777777", linestyle="dashed", linewidth=1.0, label=label("l.mean", "x\u0304"))
            for kind, bound in ({} if feature else _bounds(report, key, scale)).items():
                # values there are only bounds: the band says what they mean
                axes.axhspan(
                    0 if kind == "under" else bound,
                    bound if kind == "under" else max(ceiling, bound),
                    color=BOUND,
                    linewidth=0,
                    zorder=0,
                )
                text = (
                    words(kind, value=words.seconds(bound / scale))
                    if drawable
                    else (("< " if kind == "under" else "> ") + _plain(bound))
                )
                axes.text(
                    0.99,
                    bound / 2 if kind == "under" else bound,
                    text,
                    transform=axes.get_yaxis_transform(),
                    ha="right",
                    va="center" if kind == "under" else "bottom",
                    fontsize=7,
                    color="#555555",
                )
            rollout, marker = report["rollout"], None
            start, end = _moment(rollout["started_at"], zone), _moment(rollout["live_at"], zone)
            if start and end:
                axes.axvspan(mdates.date2num(start), mdates.date2num(end), color=ROLLOUT, alpha=0.7, linewidth=0)
                marker = axes.text(
                    0.5,
                    0.98 if labels_at == "upper" else 0.02,
                    f"{versions['before']} \u2192 {versions['after']}",
                    transform=axes.transAxes,
                    ha="center",
                    va="top" if labels_at == "upper" else "bottom",
                    fontsize=7,
                    color="#555555",
                )
            span = time_span(report, zone)
            if span:
                axes.set_xlim(mdates.date2num(span[0]), mdates.date2num(span[1]))
            locator = mdates.AutoDateLocator(minticks=3, maxticks=8, tz=zone)
            axes.xaxis.set_major_locator(locator)
            axes.xaxis.set_major_formatter(
                mdates.ConciseDateFormatter(
                    locator, tz=zone, formats=DATE_FORMATS, zero_formats=DATE_FORMATS, show_offset=False
                )
            )
            axes.yaxis.set_major_formatter(FuncFormatter(_plain))
            axes.set_ylim(floor, ceiling)
            axes.tick_params(labelsize=8)
            axes.grid(alpha=0.3)
            legend = axes.legend(
                loc="upper left" if labels_at == "upper" else "lower left", ncol=3, fontsize=7, frameon=False
            )
            for side in ("top", "right"):
                axes.spines[side].set_visible(False)
            drawn.subplots_adjust(left=0.1, right=0.98, top=0.96, bottom=0.13)  # the same plot area in
            # every chart, so that their time axes line up one under the other
            _fit(drawn, axes, legend, marker, None if start is None or end is None else start + (end - start) / 2)
            return drawn
        except BaseException:
            plt.close(drawn)
            raise


def _fit(drawn, axes, legend, marker, middle: datetime | None) -> None:
    """Keep every label whole: the rollout's label over the middle of its band but inside the
    axes, and below the legend where the two would overlap; a time label that would stick out of
    the picture is left out; value labels shrink until they fit."""
    import matplotlib.dates as mdates

    drawn.canvas.draw()
    renderer = drawn.canvas.get_renderer()
    to_axes = axes.transAxes.inverted()
    if marker is not None and middle is not None:
        low, high = axes.get_xlim()
        width = marker.get_window_extent(renderer).width / axes.get_window_extent(renderer).width
        x = (mdates.date2num(middle) - low) / (high - low)
        marker.set_x(min(max(x, width / 2 + 0.01), 1 - width / 2 - 0.01))
        if marker.get_window_extent(renderer).overlaps(legend.get_window_extent(renderer)):
            (_, legend_bottom), (_, legend_top) = to_axes.transform(legend.get_window_extent(renderer))
            marker.set_y(legend_bottom - 0.02 if marker.get_va() == "top" else legend_top + 0.02)
    picture, (left, right), (bottom, top) = drawn.bbox, axes.get_xlim(), axes.get_ylim()
    for tick in axes.get_xticklabels():
        extent = tick.get_window_extent(renderer)
        if left <= tick.get_position()[0] <= right and (extent.x0 < picture.x0 or extent.x1 > picture.x1):
            tick.set_visible(False)
    labels = [t for t in axes.get_yticklabels() if bottom <= t.get_position()[1] <= top and t.get_text()]
    while (
        labels and min(t.get_window_extent(renderer).x0 for t in labels) < picture.x0 and labels[0].get_fontsize() > 5
    ):
        for tick in labels:
            tick.set_fontsize(tick.get_fontsize() - 0.5)
