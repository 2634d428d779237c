"""The numbers of an effect report: the release, its stages, the same metrics over the window
before the rollout and the window after it, feature usage, incidents. Language-free: the
words come from report.words, the layout from report.render."""

from __future__ import annotations

import contextlib
import math
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from ..errors import UsageError
from ..metrics import MetricsUnavailable
from ..metrics.histogram import Histogram
from ..model import Config, Event, RunStatus, parse_ts, was_asked
from ..record import Record
from ..store import Store
from . import noise
from .timeline import Timeline, timeline

DAY = 86400.0


class Metric(Record, frozen=True):
    key: str
    unit: str  # per_second | ratio | seconds
    better: str | None  # lower | higher | None (neither: volume)


METRICS = (
    Metric("requests", "per_second", None),
    Metric("error_rate", "ratio", "lower"),
    Metric("availability", "ratio", "higher"),
    Metric("p50", "seconds", "lower"),
    Metric("p95", "seconds", "lower"),
    Metric("cpu", "ratio", "lower"),
)


QUANTILES = {"p50": 0.5, "p95": 0.95}


def quantile(latency: Histogram, q: float) -> tuple[float | None, str | None]:
    """The q-quantile of a latency histogram, and whether it is only a bound: "under" when it
    falls in the first bucket, where nothing tells how far below its bound it lies (no number is
    interpolated there), "over" when it lies beyond the last finite bound; the value is then that
    bound. (None, None) without observations."""
    value = latency.quantile(q)
    bounds = sorted(latency.buckets)
    finite = [b for b in bounds if not math.isinf(b)]
    if value is None or not finite:
        return value, None
    rank = q * latency.buckets[bounds[-1]]
    if latency.buckets[finite[0]] >= rank:
        return finite[0], "under"
    if latency.buckets[finite[-1]] < rank:
        return finite[-1], "over"
    return value, None


def window_values(line: Timeline) -> dict:
    """Every metric of METRICS over one window (None where it was not measured), and under
    "bounds" the quantiles that are only bounds (see quantile)."""
    values: dict = {m.key: None for m in METRICS}
    values["bounds"] = {}
    requests = line.total("requests")
    if requests and requests[1] > 0:
        values["requests"] = requests[0] / requests[1]
        errors = line.total("errors")
        if errors is not None and requests[0] > 0:
            values["error_rate"] = errors[0] / requests[0]
    values["availability"] = line.availability()
    latency = line.histogram()
    for key, q in QUANTILES.items():
        values[key], bound = quantile(latency, q)
        if bound:
            values["bounds"][key] = bound
    cpu = line.total("cpu")
    if cpu and cpu[1] > 0 and line.hosts:
        values["cpu"] = cpu[0] / cpu[1] / line.hosts
    return values


def per_day(total: float, seconds: float) -> float | None:
    """A count as a rate a day, only when what was measured covers a day: never a day made of
    seconds."""
    return total / seconds * DAY if seconds >= DAY else None


def volume(line: Timeline | None, key: str) -> dict[str, float | None]:
    """What a window counted of a counter: the total, over how many seconds, and a day's worth
    when those seconds cover a day (else None)."""
    counted = line.total(key) if line else None
    if counted is None or counted[1] <= 0:
        return {"total": None, "seconds": None, "per_day": None}
    return {"total": counted[0], "seconds": counted[1], "per_day": per_day(*counted)}


def step_values(line: Timeline) -> list[dict]:
    """The same metrics step by step, for the charts and the noise test (volumes and feature
    usage per second)."""
    points = []
    for step in line.steps:
        one = Timeline(step.end - line.step, step.end, line.step, [step], line.hosts)
        values = window_values(one)
        values["features"] = {
            key[8:]: step.counters[key] / step.seconds
            for key in step.counters
            if key.startswith("feature:") and step.seconds > 0
        }
        points.append({"t": step.end, **values})
    return points


def change(
    metric: Metric,
    before: float | None,
    after: float | None,
    before_steps: Sequence[float] = (),
    after_steps: Sequence[float] = (),
    bounds: tuple[str | None, str | None] = (None, None),
) -> dict:
    """Before, after, the difference, and whether it is a change at all (report.noise decides on
    the windows' per-step values): direction up, down or same; better, worse or neither. No
    direction when too few steps were measured to tell (`noise.why`: too_few_steps).

    A side that is only a bound (`bounds`: "under" or "over" its value, see quantile) has no
    difference to give; its bound stands in for it in the noise test, where only the order of
    the values counts. Two sides beyond the same edge of the buckets cannot be told apart: no
    direction, `noise.why` both_under or both_over."""
    result: dict[str, Any] = {
        "key": metric.key,
        "unit": metric.unit,
        "better_when": metric.better,
        "before": before,
        "after": after,
        "before_bound": bounds[0],
        "after_bound": bounds[1],
        "change": None,
        "change_percent": None,
        "direction": None,
        "assessment": None,
        "noise": None,
    }
    if before is None or after is None:
        return result
    steps = [len(before_steps), len(after_steps)]
    if bounds[0] and bounds[0] == bounds[1]:
        result["noise"] = {"p_value": None, "steps": steps, "why": f"both_{bounds[0]}"}
        return result
    if not any(bounds):
        result["change"] = after - before
        result["change_percent"] = (after - before) / abs(before) * 100 if before != 0 else None
    verdict = noise.judge(
        before,
        after,
        list(before_steps),
        list(after_steps),
        bad_side=metric.better == "higher" and metric.unit == "ratio",
    )
    result["noise"] = {"p_value": verdict.p_value, "steps": steps, "why": verdict.why}
    if verdict.why == "too_few_steps":  # large enough to matter, too few steps to tell from noise: no direction
        return result
    result["direction"] = "same" if not verdict.changed else ("up" if after > before else "down")
    if verdict.changed and metric.better:
        improved = (after < before) == (metric.better == "lower")
        result["assessment"] = "better" if improved else "worse"
    return result


def _steps_of(points: list[dict], key: str) -> list[float]:
    return [p[key] for p in points if p.get(key) is not None]


def _ts(value: float) -> str:
    return datetime.fromtimestamp(value, UTC).isoformat(timespec="seconds")


def build(config: Config, store: Store, version: str, now: float | None = None) -> dict:
    """The report document of `version`: every number, no words."""
    release = store.get_release(version)
    if release is None:
        raise UsageError(f"unknown release {version!r}")
    now = now if now is not None else datetime.now(UTC).timestamp()
    spec, env = config.report, config.report_environment
    if env is None:
        raise UsageError("the pipeline has no stages: there is no rollout to report on")
    runs = store.stage_runs(version)
    scheduled = store.get_report(version)
    on_env = [r for r in runs if r.environment == env.name and r.status is not RunStatus.SKIPPED]
    rollout_start = parse_ts(on_env[0].started_at).timestamp() if on_env else None
    live = [r for r in runs if r.stage == config.pipeline[-1].name and r.status is RunStatus.PASSED]
    live_iso = scheduled.live_at if scheduled else live[-1].finished_at if live else None
    live_at = parse_ts(live_iso).timestamp() if live_iso else None
    due_at = parse_ts(scheduled.due_at).timestamp() if scheduled else None

    windows = _windows(store, version, env.name, spec.window, rollout_start, live_at, now)
    problems: list[str] = []
    lines: dict[str, Timeline | None] = {}
    for name, window in windows.items():
        lines[name] = None
        if window is not None and window["end"] > window["start"]:
            try:
                lines[name] = timeline(store, env, spec, window["start"], window["end"])
            except MetricsUnavailable as exc:
                problems.append(f"{name}: {exc}")
        if window is not None:
            line = lines[name]
            window["observed_seconds"] = line.observed if line else 0.0
            span = line.measured if line else None
            window.update(
                {
                    "start": _ts(window["start"]),
                    "end": _ts(window["end"]),
                    "measured_from": _ts(span[0]) if span else None,
                    "measured_to": _ts(span[1]) if span else None,
                }
            )
    values = {
        name: window_values(line) if line else {m.key: None for m in METRICS} | {"bounds": {}}
        for name, line in lines.items()
    }

    features = []
    for name in dict.fromkeys([*release.features, *spec.features]):
        feature = {"name": name, "declared": name in release.features, "measured": name in spec.features}
        for window_name, line in lines.items():
            feature.update({f"{window_name}_{k}": v for k, v in volume(line, f"feature:{name}").items()})
        features.append(feature)
    series = {name: step_values(line) if line else [] for name, line in lines.items()}
    metrics = []
    for metric in METRICS:
        item = change(
            metric,
            values["before"][metric.key],
            values["after"][metric.key],
            _steps_of(series["before"], metric.key),
            _steps_of(series["after"], metric.key),
            (values["before"]["bounds"].get(metric.key), values["after"]["bounds"].get(metric.key)),
        )
        if metric.key == "requests":  # a volume is told as what was counted, over how long
            for window_name, line in lines.items():
                item.update({f"{window_name}_{k}": v for k, v in volume(line, "requests").items()})
        metrics.append(item)

    incidents = [
        _incident(event, spec.rollback_sla) for event in store.events(release=version) if event.kind == "incident"
    ]
    return {
        "format": 3,
        "project": config.project,
        "language": spec.language,
        "timezone": spec.timezone or local_zone(),
        "generated_at": _ts(now),
        "preview": due_at is None or now < due_at,
        "due_at": _ts(due_at) if due_at else None,
        "release": {
            "version": release.version,
            "previous": _previous(store, version, env.name),
            "notes": release.notes,
            "features": list(release.features),
            "status": str(release.status),
            "created_at": release.created_at,
            "created_by": release.created_by,
        },
        "environment": {
            "name": env.name,
            "hosts": len(env.hosts),
            "source": env.metrics.source if env.metrics else None,
        },
        "stages": [
            {
                "stage": r.stage,
                "environment": r.environment,
                "status": str(r.status),
                "by": r.owner,
                "started_at": r.started_at,
                "finished_at": r.finished_at,
                "forced": r.forced,
                "reason": r.reason,
            }
            for r in runs
        ],
        "rollout": {
            "started_at": _ts(rollout_start) if rollout_start else None,
            "live_at": _ts(live_at) if live_at else None,
        },
        "window_seconds": spec.window,
        "step_seconds": spec.resolution,
        "windows": windows,
        "metrics": metrics,
        "features": features,
        "incidents": incidents,
        "sla": {
            "rollback_seconds": spec.rollback_sla,
            "met": all(i["within_sla"] for i in incidents) if incidents else None,
        },
        "drill": _drill(store, env.name, spec.rollback_sla),
        "series": series,
        "problems": problems,
        "database": _database(store, version),
    }


def _windows(
    store: Store,
    version: str,
    environment: str,
    length: float,
    rollout_start: float | None,
    live_at: float | None,
    now: float,
) -> dict[str, dict | None]:
    """Before: `length` up to the rollout's start. After: `length` from the pass of the last
    stage, ended early by now (a preview), by a rollback there (the release stopped running),
    or by the next release's rollout there."""
    windows: dict[str, dict | None] = {"before": None, "after": None}
    if rollout_start is not None:
        windows["before"] = {"start": rollout_start - length, "end": rollout_start, "cut_short_by": None}
    if live_at is not None:
        end, cut = live_at + length, None
        for run in store.stage_runs():
            started = parse_ts(run.started_at).timestamp()
            if run.release != version and run.environment == environment and live_at < started < end:
                end, cut = started, {"by": "release", "release": run.release, "at": run.started_at}
                break
        for event in store.events(environment=environment):
            at = parse_ts(event.ts).timestamp()
            rolled_back = event.kind == "rollback.done" and event.data.get("cause") != "drill"  # a drill undoes itself
            if rolled_back and event.release in (version, None) and live_at < at < end:
                end, cut = at, {"by": "rollback", "at": event.ts}
                break
        if now < end:
            end, cut = now, None
        windows["after"] = {"start": live_at, "end": max(end, live_at), "cut_short_by": cut}
    return windows


def local_zone() -> str:
    """The machine's time zone as an IANA name (TZ, else /etc/localtime's target), else UTC."""
    import os
    from zoneinfo import ZoneInfo

    candidates = [os.environ.get("TZ", "").lstrip(":")]
    with contextlib.suppress(OSError):
        candidates.append(os.path.realpath("/etc/localtime").partition("/zoneinfo/")[2])
    for name in candidates:
        try:
            if name and ZoneInfo(name):
                return name
        except (KeyError, ValueError, OSError):  # ZoneInfoNotFoundError is a KeyError
            continue
    return "UTC"


def _previous(store: Store, version: str, environment: str) -> str | None:
    """The release most of the environment's hosts ran before `version` came."""
    before = Counter(
        d.from_version
        for d in store.deployments(environment=environment)
        if d.action == "deploy" and d.to_version == version and d.from_version not in (None, version)
    )
    return before.most_common(1)[0][0] if before else None


def _database(store: Store, version: str) -> dict | None:
    """The release's schema steps as they ran on each environment (None when it declares none)."""
    release = store.get_release(version)
    steps = store.migrations(release=version)
    if release is None or (not release.schema and not steps):
        return None
    return {
        "expand": release.schema.expand,
        "contract": release.schema.contract,
        "reversible": list(release.schema.reversible),
        "steps": [
            {
                "environment": m.environment,
                "phase": m.phase,
                "from": m.from_version,
                "to": m.to_version,
                "status": str(m.status),
                "at": m.started_at,
                "backup": f"B-{m.backup_id}" if m.backup_id else None,
                "detail": m.detail,
            }
            for m in steps
        ],
    }


def _drill(store: Store, environment: str, sla: float) -> dict | None:
    """The environment's last finished rollback drill (`releaser drill`), against the SLA."""
    done = [d for d in store.drills(environment) if d.status != "running"]
    if not done:
        return None
    drill = done[-1]
    return {
        "drill": drill.id,
        "environment": environment,
        "at": drill.finished_at,
        "status": drill.status,
        "release": drill.release,
        "previous": drill.previous,
        "rollback_seconds": drill.rollback_seconds,
        "forward_seconds": drill.forward_seconds,
        "restore_seconds": drill.restore_seconds,
        "backup": f"B-{drill.backup_id}" if drill.backup_id else None,
        "sla_seconds": sla,
        "within_sla": drill.within(sla),
        "detail": drill.detail,
    }


def _incident(event: Event, sla: float) -> dict:
    data = event.data
    seconds = float(data.get("time_to_rollback", 0.0))
    return {
        "at": event.ts,
        "stage": event.stage,
        "environment": event.environment,
        "in_window": data.get("cause") == "window" or "after_pass" in data,
        "reason": data.get("reason", ""),
        "asked": was_asked(data.get("cause")),
        "time_to_detect": None if was_asked(data.get("cause")) else data.get("time_to_detect"),
        "time_to_rollback": seconds,
        "within_sla": seconds <= sla and bool(data.get("within_window", True)),
    }
