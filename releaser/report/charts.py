"""One small PNG chart per metric: the window before (blue) and after (green) the release,
the rollout shaded between them. The images hold numbers and dates only; every word is in
the report's text, so a chart reads the same in any language and needs no extra fonts."""

from __future__ import annotations

import io
import math
from datetime import datetime, timezone

BEFORE, AFTER, ROLLOUT = "#3b6fb6", "#2e9e5b", "#d9d9d9"
SCALE = {"ratio": 100.0, "seconds": 1000.0}  # charts show percentages and milliseconds
NUMERIC_DATES = ["%Y", "%m-%d", "%m-%d", "%H:%M", "%H:%M", "%H:%M:%S"]  # no month names: no language
NUMERIC_OFFSETS = ["", "%Y", "%Y-%m", "%Y-%m-%d", "%Y-%m-%d", "%Y-%m-%d %H:%M"]


def _times(points: list[dict]) -> list[datetime]:
    return [datetime.fromtimestamp(p["t"], timezone.utc) for p in points]


def _values(points: list[dict], key: str, feature: bool, scale: float) -> list[float]:
    result = []
    for point in points:
        value = point["features"].get(key) if feature else point.get(key)
        result.append(math.nan if value is None else value * scale)
    return result


def chart(report: dict, key: str, unit: str, feature: bool = False) -> bytes | None:
    """A PNG of one metric over both windows, or None when neither window has a value."""
    series = report["series"]
    scale = SCALE.get(unit, 1.0)
    lines = {name: (_times(series[name]), _values(series[name], key, feature, scale)) for name in ("before", "after")}
    if all(all(math.isnan(v) for v in values) for _, values in lines.values()):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7.5, 2.2), dpi=96)
    try:
        for name, color in (("before", BEFORE), ("after", AFTER)):
            times, values = lines[name]
            if times:
                axes.plot(times, values, color=color, linewidth=1.6, marker="." if len(times) < 30 else None)
        rollout = report["rollout"]
        if rollout["started_at"] and rollout["live_at"]:
            axes.axvspan(datetime.fromisoformat(rollout["started_at"]), datetime.fromisoformat(rollout["live_at"]),
                         color=ROLLOUT, alpha=0.7, linewidth=0)
        locator = mdates.AutoDateLocator(minticks=3, maxticks=8)
        axes.xaxis.set_major_locator(locator)
        axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, formats=NUMERIC_DATES,
                                                                   offset_formats=NUMERIC_OFFSETS))
        axes.tick_params(labelsize=8)
        axes.grid(alpha=0.3)
        axes.set_ylim(bottom=0)
        for side in ("top", "right"):
            axes.spines[side].set_visible(False)
        figure.tight_layout()
        out = io.BytesIO()
        figure.savefig(out, format="png")
        return out.getvalue()
    finally:
        plt.close(figure)
