"""The canary's evidence drawn as SVG on the server: a page reads without JavaScript, and a
chart is a few hundred bytes rather than a charting library. Only numbers and escaped words
reach the markup."""

from __future__ import annotations

from datetime import datetime
from html import escape

WIDTH, HEIGHT, PAD = 640, 200, 36


def evidence_chart(points: list[dict], label: str) -> str:
    """The cohort's event ratio against the baseline's and the bound (the most a pass allows),
    look by look. `points`: the canary's evidence entries for one metric, oldest first."""
    if not points:
        return ""
    times = [datetime.fromisoformat(p["at"]).timestamp() for p in points]
    series = {
        "cohort": [_ratio(p["cohort_events"], p["cohort_requests"]) for p in points],
        "baseline": [_ratio(p["baseline_events"], p["baseline_requests"]) for p in points],
        "bound": [_bound(p) for p in points],
    }
    drawn = [v for values in series.values() for v in values if v is not None]
    if not drawn:  # no request counted on either side yet: an empty chart would only show a made-up scale
        return ""
    top = max([*drawn, 0.001]) * 1.15
    start, span = times[0], max(times[-1] - times[0], 1.0)

    def x(t: float) -> float:
        return PAD + (t - start) / span * (WIDTH - 2 * PAD)

    def y(v: float) -> float:
        return HEIGHT - PAD - v / top * (HEIGHT - 2 * PAD)

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(label)}">',
        f'<line class="axis" x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}"/>',
        f'<text class="tick" x="4" y="{PAD}">{top:.2%}</text>',
        f'<text class="tick" x="4" y="{HEIGHT - PAD}">0</text>',
    ]
    for name, values in series.items():
        coordinates = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in zip(times, values, strict=True) if v is not None)
        if coordinates:
            parts.append(f'<polyline class="{name}" points="{coordinates}"/>')
    parts.append("</svg>")
    return "".join(parts)


def _ratio(events: float, requests: float) -> float | None:
    return events / requests if requests else None


def _bound(point: dict) -> float | None:
    baseline = _ratio(point["baseline_events"], point["baseline_requests"])
    if baseline is None:
        return None
    return max(baseline * point["ratio"], point.get("margin") or 0.0)
