"""A report document as HTML (with charts), Markdown and JSON, in the report's language.

HTML is autoescaped (release notes and feature names are user text); Markdown escapes the
characters that would turn user text into markup or links."""

from __future__ import annotations

import base64
import functools
import json
import re
from dataclasses import field
from pathlib import Path

from ..record import Record
from .charts import DISPLAY_WIDTH, chart
from .compute import METRICS
from .words import Words

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|~])")
_MARKDOWN_LINE_START = re.compile(r"^(\s*)(?:([#+>-])|(\d+)\.)(?=\s|$)")


def markdown_text(text: str) -> str:
    """User text safe inside Markdown, on one line: no emphasis, code, links, HTML,
    table breaks, headings or list items."""
    escaped = _MARKDOWN_SPECIAL.sub(r"\\\1", str(text)).replace("\r", " ").replace("\n", " ")
    return _MARKDOWN_LINE_START.sub(
        lambda m: m.group(1) + ("\\" + m.group(2) if m.group(2) else m.group(3) + "\\."), escaped
    )


@functools.cache
def _templates():
    """The report's templates (jinja2 loads only when a report is rendered)."""
    import jinja2

    templates = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default_for_string=False, default=False),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    templates.filters["md"] = markdown_text
    return templates


class Rendered(Record):
    subject: str
    html: str  # charts as data: URIs, a file that stands alone
    markdown: str
    json: str
    mail_html: str  # charts as cid: references, for a multipart/related mail
    charts: dict[str, bytes] = field(default_factory=dict)  # content id -> PNG


def render(report: dict) -> Rendered:
    words = words_for(report)
    report = {**report, "summary": words.summary(report)}
    charts = _charts(report, words)
    context = {
        "r": report,
        "w": words,
        "rows": _metric_rows(report, words),
        "features": _feature_rows(report, words),
        "windows": _windows(report, words),
        "charts": charts,
        "glossary": words.glossary(report),
        "zone": (report.get("timezone") or "UTC").removeprefix("Etc/"),
        "chart_width": DISPLAY_WIDTH,
        "before": words.heading(report, "before"),
        "after": words.heading(report, "after"),
    }
    images = {cid: png for cid, _caption, png in charts}
    data_uri = {cid: "data:image/png;base64," + base64.b64encode(png).decode() for cid, png in images.items()}
    html = _templates().get_template("report.html.j2")
    return Rendered(
        subject=words("subject", project=report["project"], version=report["release"]["version"]),
        html=html.render(**context, image=data_uri),
        mail_html=html.render(**context, image={cid: f"cid:{cid}" for cid in images}),
        markdown=_templates().get_template("report.md.j2").render(**context),
        json=json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n",
        charts=images,
    )


def words_for(report: dict) -> Words:
    """The report's language and time zone; times to the second when its windows are short."""
    return Words(report["language"], report.get("timezone") or "UTC", precise=report["window_seconds"] < 3600)


def _metric_rows(report: dict, words: Words) -> list[dict]:
    return [
        {
            "name": words.metric_name(m["key"], heading=True),
            "before": words.metric_value(m, "before"),
            "after": words.metric_value(m, "after"),
            "change": words("judged", change=words.change(m), judgement=words(m["assessment"]))
            if m["assessment"]
            else words.change(m),
            "assessment": m["assessment"],
        }
        for m in report["metrics"]
    ]


def _feature_rows(report: dict, words: Words) -> list[dict]:
    def used(feature: dict, side: str) -> str:
        if not feature["measured"]:
            return words("not_measured")
        return words.volume(feature, side, uses=True)

    return [{"name": f["name"], "before": used(f, "before"), "after": used(f, "after")} for f in report["features"]]


def _windows(report: dict, words: Words) -> str:
    spans = {}
    for name in ("before", "after"):
        window = report["windows"][name]
        if window is None:
            spans[name] = words("no_data")
            continue
        spans[name] = words("window_span", start=words.when(window["start"]), end=words.when(window["end"]))
        cut = window["cut_short_by"]
        if cut:
            spans[name] += words("dash") + (
                words("cut_short", next=cut["release"])
                if cut["by"] == "release"
                else words("cut_by_rollback", at=words.when(cut["at"]))
            )
    rollout = report["rollout"]
    between = words("span", start=words.when(rollout["started_at"]), end=words.when(rollout["live_at"]))
    return words("windows", before=spans["before"], after=spans["after"], rollout=between)


def _charts(report: dict, words: Words) -> list[tuple[str, str, bytes]]:
    """(content id, caption, PNG) for every metric and feature with data in either window."""
    result = []
    for metric in METRICS:
        unit = "requests" if metric.key == "requests" else metric.unit
        png = chart(report, metric.key, metric.unit, words)
        if png:
            caption = words("caption", name=words.metric_name(metric.key, heading=True), unit=words(f"u.{unit}"))
            result.append((f"chart-{metric.key}", caption, png))
    for index, feature in enumerate(report["features"]):
        png = chart(report, feature["name"], "per_second", words, feature=True) if feature["measured"] else None
        if png:
            result.append(
                (f"chart-feature-{index}", words("caption", name=feature["name"], unit=words("u.feature")), png)
            )
    return result
