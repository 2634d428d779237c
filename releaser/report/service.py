"""The numbers of a monthly service report of one environment: releases shipped and how often,
lead time for changes, change failure rate, time to restore, availability against its target,
incidents by tier, freezes and drills. Language-free, like report.compute: every figure is None
when there is nothing to measure it on, with a `why` that report.service_words turns into words.

Months are calendar months in the report's time zone. Releases, incidents and overrides come from
the journal; availability from the same metric source as the effect report (Prometheus, or the
samples releaser records), as 1 - errors / requests over the month.
"""

from __future__ import annotations

import re
import statistics
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ..errors import UsageError
from ..events import Event
from ..freezes import occurrences
from ..metrics import MetricsUnavailable
from ..model import Config, ServiceReportSpec, TierRule, parse_ts, was_asked
from ..store import Store
from .compute import local_zone
from .timeline import timeline

WEEK = 7 * 86400.0
MONTH_STEP = 3600.0  # a month read in hours: under the points a Prometheus query answers, fine enough for days
_MONTH = re.compile(r"(\d{4})-(\d{2})")


def parse_month(text: str) -> str:
    """`--month YYYY-MM`, checked; UsageError (exit 2) otherwise."""
    found = _MONTH.fullmatch(text.strip())
    if not found or not 1 <= int(found.group(2)) <= 12 or int(found.group(1)) < 2000:
        raise UsageError(f"--month {text!r}: expected a month as YYYY-MM, such as 2026-11")
    return found.group(0)


def month_bounds(month: str, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The month's first moment and the next month's, in `zone`."""
    year, number = (int(part) for part in month.split("-"))
    start = datetime(year, number, 1, tzinfo=zone)
    return start, datetime(year + number // 12, number % 12 + 1, 1, tzinfo=zone)


def last_month(now: datetime, zone: ZoneInfo) -> str:
    """The last month that has ended at `now`, in `zone`."""
    first = now.astimezone(zone).replace(day=1) - timedelta(days=1)
    return f"{first.year:04d}-{first.month:02d}"


def due_at(month: str, day: int, zone: ZoneInfo) -> datetime:
    """The report of `month` is due on `day` of the next month, at midnight in `zone`."""
    return month_bounds(month, zone)[1].replace(day=day)


def zone_of(config: Config) -> ZoneInfo:
    return ZoneInfo(config.report.timezone or local_zone())


def service_spec(config: Config) -> ServiceReportSpec:
    return config.report.service or ServiceReportSpec()


def last_stage_on(config: Config, environment: str) -> str | None:
    """The last stage of the pipeline on `environment`: passing it ships a release there."""
    stages = [s.name for s in config.pipeline if s.environment == environment]
    return stages[-1] if stages else None


def _iso(moment: datetime | float) -> str:
    if isinstance(moment, float):
        moment = datetime.fromtimestamp(moment, UTC)
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def _quantile(values: list[float], q: float) -> float:
    """Linear interpolation between the ranked values (numpy's default); one value is itself."""
    ranked = sorted(values)
    if len(ranked) == 1:
        return ranked[0]
    return statistics.quantiles(ranked, n=100, method="inclusive")[round(q * 100) - 1]


def build_service(
    config: Config, store: Store, month: str, environment: str | None = None, now: datetime | None = None
) -> dict:
    """The service report's document for `month` on `environment` (default: the last stage's)."""
    zone = zone_of(config)
    now = now or datetime.now(UTC)
    env_name = environment or (config.pipeline[-1].environment if config.pipeline else None)
    env = config.environments.get(env_name or "")
    if env is None:
        raise UsageError(f"--env {env_name}: unknown environment (known: {', '.join(config.environments)})")
    stage = last_stage_on(config, env.name)
    if stage is None:
        raise UsageError(f"--env {env.name}: no stage of the pipeline runs there, so nothing is shipped to it")
    start, end = month_bounds(month, zone)
    until = min(end, now)
    if until <= start:
        raise UsageError(f"--month {month}: that month has not begun")
    spec, service = config.report, service_spec(config)
    events = store.events(environment=env.name)
    journal_from = store.journal_begins()
    covered = journal_from is not None and parse_ts(journal_from) < until
    in_month = [e for e in events if start <= parse_ts(e.ts) < until]

    shipped = _shipped(store, in_month, stage)
    incidents = [_incident(e, service.tiers, spec.rollback_sla) for e in in_month if e.kind == Event.INCIDENT]
    reached = list(dict.fromkeys(e.release for e in in_month if e.kind == Event.STAGE_STARTED and e.release))
    failed = [r for r in reached if any(r in i["releases"] for i in incidents)]
    impacts = [i["impact"] for i in incidents]
    leads = [r["lead_time"] for r in shipped if r["lead_time"] is not None]
    # the frequency counts the days the journal saw: a journal begun mid-month saw fewer
    observed = max(start, parse_ts(journal_from)) if covered and journal_from else start
    days = (until - observed).total_seconds()
    no_journal = None if covered else "no_journal"
    document: dict[str, Any] = {
        "format": 1,
        "kind": "service",
        "project": config.project,
        "language": spec.language,
        "timezone": spec.timezone or local_zone(),
        "generated_at": _iso(now),
        "month": month,
        "start": _iso(start),
        "end": _iso(end),
        "until": _iso(until),
        "preview": now < end,
        "due_at": _iso(due_at(month, service.day, zone)),
        "journal_from": journal_from,
        "environment": {
            "name": env.name,
            "stage": stage,
            "hosts": len(env.hosts),
            "source": env.metrics.source if env.metrics else None,
        },
        "shipped": {
            "releases": shipped if covered else [],
            "count": len(shipped) if covered else None,
            "per_week": len(shipped) / (days / WEEK) if covered and days >= WEEK else None,
            "per_week_why": no_journal or (None if days >= WEEK else "short_journal"),  # a rate needs a week seen
            "per_month": len(shipped) if covered else None,
            "days": days / 86400,
            "why": no_journal,
        },
        "lead_time": {
            "median": statistics.median(leads) if leads else None,
            "p90": _quantile(leads, 0.9) if leads else None,
            "measured": len(leads),
            "without_commit": [r["version"] for r in shipped if r["lead_time"] is None],
            "why": no_journal or (None if leads else "no_commit_times" if shipped else "no_releases"),
        },
        "change_failure": {
            "reached": reached,
            "failed": failed,
            "rate": len(failed) / len(reached) if reached and covered else None,
            "why": no_journal or (None if reached else "no_releases_reached"),
        },
        "restore": {
            "median": statistics.median(impacts) if impacts else None,
            "max": max(impacts) if impacts else None,
            "count": len(impacts),
            "why": no_journal or (None if impacts else "no_incidents"),
        },
        "availability": _availability(config, store, env.name, start, until, end, service.availability_target),
        "incidents": incidents,
        "tiers": {
            "configured": bool(service.tiers),
            "counts": _tier_counts(incidents, service.tiers) if covered else None,
            "why": no_journal,
        },
        "freezes": _freezes(config, env.name, start, end),
        "overrides": [
            {
                "at": e.ts,
                "release": e.release,
                "stage": e.stage,
                "freeze": e.data.get("freeze"),
                "by": e.data.get("by"),
                "reason": e.data.get("reason", ""),
            }
            for e in in_month
            if e.kind == Event.FREEZE_OVERRIDDEN
        ],
        "drills": _drills(store, env.name, start, until, spec.rollback_sla),
        "covered": covered,
        "sla": {"rollback_seconds": spec.rollback_sla},
    }
    return document


def _shipped(store: Store, in_month: list, stage: str) -> list[dict]:
    """Each release that passed `stage` in the month (its first pass there), with its lead time."""
    result: dict[str, dict] = {}
    for event in in_month:
        if event.kind != Event.STAGE_PASSED or event.stage != stage or not event.release or event.release in result:
            continue
        release = store.get_release(event.release)
        committed = release.committed_at if release else None
        lead = (parse_ts(event.ts) - parse_ts(committed)).total_seconds() if committed else None
        result[event.release] = {
            "version": event.release,
            "live_at": event.ts,
            "commit": release.commit_id if release else None,
            "committed_at": committed,
            "lead_time": lead,
        }
    return list(result.values())


def _incident(event, tiers: tuple[TierRule, ...], sla: float) -> dict:
    data = event.data
    rollback = float(data.get("time_to_rollback") or 0.0)
    fault, finished = data.get("fault_at"), data.get("finished_at")
    asked = was_asked(data.get("cause"))  # nothing detected it: restored from when it was asked
    impact = (parse_ts(finished) - parse_ts(fault)).total_seconds() if fault and finished and not asked else rollback
    incident = {
        "at": event.ts,
        "environment": event.environment,
        "stage": event.stage,
        "releases": list(data.get("releases") or ([event.release] if event.release else [])),
        "cause": data.get("cause"),
        "reason": data.get("reason", ""),
        "time_to_detect": None if asked else data.get("time_to_detect"),
        "time_to_rollback": rollback,
        "impact": impact,
        "within_sla": rollback <= sla,
    }
    incident["tier"] = next((t.tier for t in tiers if _matches(t, incident)), None)
    return incident


def _matches(rule: TierRule, incident: dict) -> bool:
    return (
        (not rule.causes or incident["cause"] in rule.causes)
        and (not rule.environments or incident["environment"] in rule.environments)
        and (not rule.stages or incident["stage"] in rule.stages)
        and (rule.longer_than is None or incident["impact"] > rule.longer_than)
    )


def _tier_counts(incidents: list[dict], tiers: tuple[TierRule, ...]) -> dict[str, int]:
    counts = {t.tier: 0 for t in tiers}
    counts["untiered"] = 0
    for incident in incidents:
        counts[incident["tier"] or "untiered"] += 1
    return counts


def _availability(
    config: Config, store: Store, environment: str, start: datetime, until: datetime, end: datetime, target: float
) -> dict:
    """1 - errors / requests over the month, from the effect report's metric source."""
    spec, env = config.report, config.environments[environment]
    result: dict[str, Any] = {
        "value": None,
        "target": target,
        "met": None,
        "requests": None,
        "errors": None,
        "measured_seconds": 0.0,
        "period_seconds": (end - start).total_seconds(),
        "allowed_downtime": (1 - target) * (end - start).total_seconds(),
        "budget_allowed": None,
        "budget_left": None,
        "source": env.metrics.source if env.metrics else None,
        "why": None,
        "problem": None,
        "daily": [],
    }
    if env.metrics is None or spec.requests is None or spec.errors is None:
        result["why"] = "no_source" if env.metrics is None else "no_counters"
        result["missing"] = " and ".join(
            k for k, v in (("requests", spec.requests), ("errors", spec.errors)) if v is None
        )
        return result
    try:
        line = timeline(store, env, spec, start.timestamp(), until.timestamp(), max(spec.resolution, MONTH_STEP))
    except MetricsUnavailable as exc:
        result.update(why="unavailable", problem=str(exc))
        return result
    requests, errors = line.total("requests"), line.total("errors")
    if not requests or requests[0] <= 0 or errors is None:
        result["why"] = "no_requests"
        return result
    ratio = errors[0] / requests[0]
    result["daily"] = _daily(line, start.tzinfo)
    allowed = (1 - target) * requests[0]
    result.update(
        value=1 - ratio,
        met=1 - ratio >= target,
        requests=requests[0],
        errors=errors[0],
        measured_seconds=requests[1],
        budget_allowed=allowed,
        budget_left=1 - errors[0] / allowed,
    )
    return result


def _daily(line, zone) -> list[dict]:
    """1 - errors / requests of each day in the month (local days), None for a day without requests."""
    days: dict[str, list[float]] = {}
    for step in line.steps:
        day = datetime.fromtimestamp(step.end - line.step / 2, UTC).astimezone(zone).date().isoformat()
        counted = days.setdefault(day, [0.0, 0.0])
        counted[0] += step.counters.get("requests", 0.0)
        counted[1] += step.counters.get("errors", 0.0)
    return [{"day": day, "value": 1 - e / r if r > 0 else None} for day, (r, e) in days.items()]


def _freezes(config: Config, environment: str, start: datetime, end: datetime) -> list[dict]:
    """The configuration's freezes on the environment that held in the month, each time cut to it."""
    result = []
    for freeze in config.freezes:
        if freeze.environments and environment not in freeze.environments:
            continue
        spans = occurrences(freeze, start, end)
        if spans:
            result.append(
                {
                    "name": freeze.name,
                    "weekly": freeze.weekly,
                    "from": freeze.start,
                    "until": freeze.end,
                    "timezone": freeze.timezone,
                    "times": len(spans),
                    "hours": sum((b - a).total_seconds() for a, b in spans) / 3600,
                    "spans": [[_iso(a), _iso(b)] for a, b in spans],
                }
            )
    return result


def _drills(store: Store, environment: str, start: datetime, until: datetime, sla: float) -> list[dict]:
    return [
        {
            "at": d.started_at,
            "status": d.status,
            "release": d.release,
            "previous": d.previous,
            "rollback_seconds": d.rollback_seconds,
            "restore_seconds": d.restore_seconds,
            "within_sla": d.within(sla),
            "detail": d.detail,
        }
        for d in store.drills(environment)
        if d.status != "running" and start <= parse_ts(d.started_at) < until
    ]
