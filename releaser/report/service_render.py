"""A service report's document (report.service) in words, in its language, as HTML (with its
chart), Markdown and JSON, in the effect report's look. Every figure comes with how it was
measured; a figure without data says "no data" and why."""

from __future__ import annotations

import base64
import json

from .render import Rendered, _templates
from .words import Words


def service_words(report: dict) -> Words:
    return Words(report["language"], report.get("timezone") or "UTC")


def render_service(report: dict) -> Rendered:
    words = service_words(report)
    env = report["environment"]
    names = {"project": report["project"], "environment": env["name"], "month": report["month"]}
    report = {**report, "summary": summary(report, words), "figures": figures(report, words)}
    png = availability_chart(report, words)
    images = {"chart-availability": png} if png else {}
    context = {
        "r": report,
        "w": words,
        "title": words("sv.title", **names),
        "period": words(
            "sv.period",
            month=report["month"],
            start=words.when(report["start"]),
            end=words.when(report["end"]),
            zone=(report["timezone"] or "UTC").removeprefix("Etc/"),
        ),
        "releases": [_release_row(r, words) for r in report["shipped"]["releases"]],
        "incidents": [_incident_row(i, words) for i in report["incidents"]],
        "tiers": tier_line(report, words),
        "freezes": [_freeze_row(f, words) for f in report["freezes"]],
        "overrides": [
            words("sv.override", **{**o, "at": words.when(o["at"]), "reason": o["reason"] or "—"})
            for o in report["overrides"]
        ],
        "drills": [_drill_row(d, words) for d in report["drills"]],
        "chart": bool(png),
    }
    html = _templates().get_template("service.html.j2")
    data_uri = {cid: "data:image/png;base64," + base64.b64encode(p).decode() for cid, p in images.items()}
    return Rendered(
        subject=words("sv.subject", **names),
        html=html.render(**context, image=data_uri),
        mail_html=html.render(**context, image={cid: f"cid:{cid}" for cid in images}),
        markdown=_templates().get_template("service.md.j2").render(**context),
        json=json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n",
        charts=images,
    )


def _why(report: dict, figure: dict, words: Words) -> str:
    """Why a figure has no value, in words."""
    why = figure["why"]
    if why == "no_journal" and not report["journal_from"]:
        why = "empty_journal"
    env = report["environment"]
    return words(
        f"sv.why.{why}",
        journal_from=words.when(report["journal_from"]),
        stage=env["stage"],
        environment=env["name"],
        count=report["shipped"]["count"] or 0,
        days=words.number(report["shipped"]["days"]),
        problem=figure.get("problem") or "",
        missing=figure.get("missing") or "",
    )


def figures(report: dict, words: Words) -> list[dict]:
    """Every figure of the month: its name, its value (or no data and why), how it was measured."""
    env, shipped, lead = report["environment"], report["shipped"], report["lead_time"]
    cfr, restore, avail = report["change_failure"], report["restore"], report["availability"]
    where = {"stage": env["stage"], "environment": env["name"]}
    count = shipped["count"] or 0

    def figure(key: str, item: dict, value: str | None, how: str) -> dict:
        return {
            "key": key,
            "name": words(f"sv.{key}"),
            "value": value if value is not None else _why(report, item, words),
            "how": how,
            "data": value is not None,
        }

    def duration(seconds: float | None) -> str | None:
        return None if seconds is None else words.seconds(seconds)

    measured = {"measured": lead["measured"], "count": count}
    rows = [
        figure("shipped", shipped, None if shipped["count"] is None else str(count), words("sv.how.shipped", **where)),
        figure(
            "per_week",
            {"why": shipped["per_week_why"]},
            None if shipped["per_week"] is None else words.number(shipped["per_week"]),
            words("sv.how.per_week", count=count, days=words.number(shipped["days"]))
            if shipped["per_week"] is not None
            else words("sv.how.per_week_none"),
        ),
        figure(
            "per_month",
            shipped,
            None if shipped["per_month"] is None else str(shipped["per_month"]),
            words("sv.how.per_month", start=words.when(report["start"]), until=words.when(report["until"]), **where),
        ),
        figure("lead_median", lead, duration(lead["median"]), words("sv.how.lead", **measured, **where)),
        figure("lead_p90", lead, duration(lead["p90"]), words("sv.how.lead_p90", **measured)),
        figure(
            "cfr",
            cfr,
            None
            if cfr["rate"] is None
            else words(
                "sv.value.rate",
                percent=words.percent(cfr["rate"]),
                failed=len(cfr["failed"]),
                reached=len(cfr["reached"]),
            ),
            words("sv.how.cfr", reached=_names(cfr["reached"], words), failed=_names(cfr["failed"], words), **where),
        ),
        figure("restore_median", restore, duration(restore["median"]), words("sv.how.restore", count=restore["count"])),
        figure("restore_max", restore, duration(restore["max"]), words("sv.how.restore", count=restore["count"])),
    ]
    target = words.percent(avail["target"])
    value = None
    if avail["value"] is not None:
        value = words(
            "sv.value.met" if avail["met"] else "sv.value.missed", value=words.percent(avail["value"]), target=target
        )
    rows.append(
        figure(
            "availability",
            avail,
            value,
            words("sv.how.availability_none")
            if value is None  # no counts to quote: never "0 failed of 0"
            else words(
                "sv.how.availability",
                source=avail["source"],
                errors=words.number(avail["errors"]),
                requests=words.number(avail["requests"]),
                measured=words.seconds(avail["measured_seconds"]),
                period=words.seconds(avail["period_seconds"]),
            ),
        )
    )
    period = words.seconds(avail["period_seconds"])
    rows.append(
        figure(
            "allowed",
            {"why": None},
            words.seconds(avail["allowed_downtime"]),
            words("sv.how.allowed", target=target, period=period),
        )
    )
    left = avail["budget_left"]
    budget = (
        None
        if left is None
        else words.percent(left)
        if left >= 0
        else words("sv.value.overspent", percent=words.percent(-left))
    )
    rows.append(
        figure(
            "budget",
            avail,
            budget,
            words("sv.how.budget_none", target=target)
            if budget is None  # no counts to quote
            else words(
                "sv.how.budget",
                target=target,
                requests=words.number(avail["requests"]),
                allowed=words.number(avail["budget_allowed"]),
                errors=words.number(avail["errors"]),
            ),
        )
    )
    return rows


def _names(items: list[str], words: Words) -> str:
    return words.names(items) if items else words("none")


def summary(report: dict, words: Words) -> list[str]:
    """The lines an account manager reads first: releases shipped, availability, incidents."""
    env, shipped, avail = report["environment"], report["shipped"], report["availability"]
    lines = []
    if shipped["count"] is None:
        lines.append(words("sv.s.no_shipped", why=_why(report, shipped, words)))
    elif shipped["per_week"] is None:  # the journal saw less than a week of the month: no rate
        lines.append(words("sv.s.shipped_count", count=shipped["count"], environment=env["name"]))
    else:
        lines.append(
            words(
                "sv.s.shipped",
                count=shipped["count"],
                environment=env["name"],
                per_week=words.number(shipped["per_week"]),
            )
        )
    if avail["value"] is None:
        lines.append(words("sv.s.no_availability", why=_why(report, avail, words)))
    else:
        lines.append(
            words(
                "sv.s.availability",
                value=words.percent(avail["value"]),
                target=words.percent(avail["target"]),
                verdict=words("sv.s.met" if avail["met"] else "sv.s.missed"),
            )
        )
    incidents = report["incidents"]
    if incidents:
        late = sum(not i["within_sla"] for i in incidents)
        lines.append(
            words(
                "sv.s.incidents", count=len(incidents), late=late, sla=words.seconds(report["sla"]["rollback_seconds"])
            )
        )
    elif report["covered"]:
        lines.append(words("sv.s.no_incident"))
    return lines


def tier_line(report: dict, words: Words) -> str:
    tiers = report["tiers"]
    if tiers["counts"] is None:
        return _why(report, tiers, words)
    if not tiers["configured"]:
        return words("sv.tiers_none")
    counts = [
        words("sv.tier_count", tier=words("sv.untiered") if name == "untiered" else name, count=count)
        for name, count in tiers["counts"].items()
    ]
    return words("sv.tier_counts", counts=words("list").join(counts))


def _release_row(release: dict, words: Words) -> dict:
    return {
        "version": release["version"],
        "commit": (release["commit"] or "")[:12] or words("sv.no_commit"),
        "committed": words.when(release["committed_at"]) if release["committed_at"] else words("sv.no_commit"),
        "live": words.when(release["live_at"]),
        "lead": words.seconds(release["lead_time"]) if release["lead_time"] is not None else words("no_data"),
    }


def _incident_row(incident: dict, words: Words) -> dict:
    detect = incident["time_to_detect"]
    return {
        "at": words.when(incident["at"]),
        "tier": incident["tier"] or words("sv.untiered"),
        "releases": words("list").join(incident["releases"]) or "—",
        "cause": f"{incident['cause']} ({incident['stage'] or '—'})",
        "reason": incident["reason"] or "—",
        "detect": "—" if detect is None else words.seconds(detect),
        "rollback": words.seconds(incident["time_to_rollback"]),
        "within": words("yes" if incident["within_sla"] else "no"),
    }


def _freeze_row(freeze: dict, words: Words) -> dict:
    key = "sv.freeze_weekly" if freeze["weekly"] else "sv.freeze_once"
    return {
        "name": freeze["name"],
        "when": words(key, start=freeze["from"], end=freeze["until"], zone=freeze["timezone"]),
        "held": words("sv.freeze_held", times=freeze["times"], hours=words.seconds(freeze["hours"] * 3600)),
    }


def _drill_row(drill: dict, words: Words) -> dict:
    def timed(seconds: float | None) -> str:
        return "—" if seconds is None else words.seconds(seconds)

    return {
        "at": words.when(drill["at"]),
        "status": drill["status"] + (f": {drill['detail']}" if drill["detail"] and drill["status"] != "passed" else ""),
        "rollback": timed(drill["rollback_seconds"]),
        "restore": timed(drill["restore_seconds"]),
        "within": words("yes" if drill["within_sla"] else "no"),
    }


MISSED = "#cf222e"  # a day below the availability target, and the target's line


def availability_chart(report: dict, words: Words) -> bytes | None:
    """Availability day by day against the target (every day of the month on the axis, a bar for
    each measured one, red below the target), or None without a measured day."""
    days = report["availability"].get("daily", [])
    if not any(d["value"] is not None for d in days):
        return None
    import io
    import math

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .charts import AFTER, DPI, HEIGHT_INCHES, WIDTH_INCHES, _cjk_font

    fonts = ["DejaVu Sans"] + ([_cjk_font()] if words.language == "zh-CN" and _cjk_font() else [])
    with matplotlib.rc_context({"font.family": fonts, "axes.unicode_minus": False}):
        drawn, axes = plt.subplots(figsize=(WIDTH_INCHES, HEIGHT_INCHES), dpi=DPI)
        try:
            labels = [d["day"][8:] for d in days]
            values = [math.nan if d["value"] is None else d["value"] * 100 for d in days]  # nan: no bar
            target = report["availability"]["target"] * 100
            places = range(len(days))
            axes.bar(places, values, color=[AFTER if v >= target else MISSED for v in values])
            axes.set_xticks(places, labels)
            axes.set_xlim(-0.5, len(days) - 0.5)
            axes.axhline(target, color=MISSED, linestyle="dashed", linewidth=1.0)
            low = min([*(v for v in values if not math.isnan(v)), target])
            axes.set_ylim(max(0.0, low - (100 - low) * 0.5 - 0.01), 100)
            axes.tick_params(labelsize=8)
            axes.grid(alpha=0.3, axis="y")
            for side in ("top", "right"):
                axes.spines[side].set_visible(False)
            drawn.subplots_adjust(left=0.1, right=0.98, top=0.96, bottom=0.13)
            out = io.BytesIO()
            drawn.savefig(out, format="png")
            return out.getvalue()
        finally:
            plt.close(drawn)
