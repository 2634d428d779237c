"""What each page shows, as plain data read from the state: the status document (`releaser
status`'s), a release with its stages, approvals and the live stage's evidence, an environment,
the journal filtered. No HTML here (templates/), no HTTP (app.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..journal import Journal
from ..model import Config
from ..status import status_document
from ..store import Store

CHECKS = ("checks.pass", "checks.fail", "checks.inconclusive")
RECENT = 15  # events on the overview
JOURNAL_PAGE = 200
RELEASES_PAGE = 100


class NotFound(Exception):
    """A page for something the state does not know."""


def overview(config: Config, store: Store) -> dict:
    document = status_document(config, store)
    return {**document, "recent": store.find_events(limit=RECENT), "releases": document["releases"][-20:][::-1]}


def releases(config: Config, store: Store, page: int = 1) -> dict:
    """The newest releases first, RELEASES_PAGE to a page."""
    newest = status_document(config, store)["releases"][::-1]
    shown = newest[(page - 1) * RELEASES_PAGE : page * RELEASES_PAGE]
    return {"releases": shown, "page": page, "more": len(newest) > page * RELEASES_PAGE}


def release(config: Config, store: Store, version: str) -> dict:
    document = status_document(config, store)
    found = next((r for r in document["releases"] if r["version"] == version), None)
    if found is None:
        raise NotFound(f"no release {version} is registered")
    stages = found["stages"]
    live = next((s for s in reversed(stages) if s["status"] in ("running", "rolling_back")), None)
    last = live or (stages[-1] if stages else None)
    return {
        "release": found,
        "approvals": store.approvals(version),
        "awaiting": [a for a in document["approvals"] if a["release"] == version],
        "running_stage": live,
        "evidence": evidence(store, version, last["stage"], last["run"]) if last else [],
        "events": store.find_events(release=version, limit=JOURNAL_PAGE),
        "report": next((r for r in document["reports"] if r["release"] == version), None),
        "report_written": _written(config.reports_dir / version / "report.html") is not None,
        "environments": {s["environment"] for s in stages},
    }


def approval_plan(config: Config, store: Store, version: str, stage: str) -> dict:
    """What an approver reads before deciding: who asked and when, how far the release has got,
    and each check's last verdict in its last stage run."""
    found = release(config, store, version)
    return {
        "request": next((a for a in found["awaiting"] if a["stage"] == stage), None),
        "stages": found["release"]["stages"],
        "checks": [{"check": c["check"], **c["last"]} for c in found["evidence"]],
    }


def environment(config: Config, store: Store, name: str) -> dict:
    if name not in config.environments:
        raise NotFound(f"no environment {name} is configured")
    document = status_document(config, store)
    return {
        "name": name,
        "env": document["environments"][name],
        "windows": [w for w in document["windows"] if w["environment"] == name],
        "freezes": [f for f in document["freezes"] if f["environment"] == name],
        "events": store.find_events(environment=name, limit=JOURNAL_PAGE),
        "drills": store.drills(name)[-10:][::-1],
    }


def rollback_plan(config: Config, store: Store, journal: Journal, environment: str) -> dict:
    """What a rollback of the environment would do, as `releaser rollback --dry-run` says it: the
    hosts asked, the one planner's answer (each host's release and where it goes), the database's
    step, the releases passed over; or why there is nothing to do."""
    from ..errors import ReleaserError
    from ..interrupts import Interrupts
    from ..rollback import Rollbacks

    try:
        hosts, schema, passed = Rollbacks(config, store, journal, interrupts=Interrupts()).dry_run(environment, None)
    except ReleaserError as exc:
        return {"hosts": [], "schema": None, "passed_over": [], "problem": str(exc)}
    rows = [{"host": name, "runs": h["runs"], "to": h["to"]} for name, h in sorted(hosts.items())]
    return {"hosts": rows, "schema": schema, "passed_over": passed, "problem": None}


def reports(config: Config, store: Store) -> dict:
    """Every effect report and monthly service report: those the outbox holds (due, sent, failed)
    and the copies written on this machine (`releaser report`, previews included), newest first."""
    base = config.reports_dir
    effect: dict[str, dict] = {
        r.release: {"release": r.release, "environment": r.environment, "record": r} for r in store.reports()
    }
    for path in base.glob("*/report.html"):
        effect.setdefault(path.parent.name, {"release": path.parent.name, "environment": "", "record": None})
    service: dict[tuple[str, str], dict] = {
        (r.environment, r.month): {"environment": r.environment, "month": r.month, "record": r}
        for r in store.service_reports()
    }
    for path in base.glob("service/*/*/report.html"):
        environment, month = path.parent.parent.name, path.parent.name
        service.setdefault((environment, month), {"environment": environment, "month": month, "record": None})
    for item in effect.values():
        item["written"] = _written(base / item["release"] / "report.html")
    for item in service.values():
        item["written"] = _written(base / "service" / item["environment"] / item["month"] / "report.html")
    order = {r.version: n for n, r in enumerate(store.list_releases())}  # registration order, as status's
    return {
        "effect": sorted(effect.values(), key=lambda i: order.get(i["release"], -1), reverse=True),
        "service": sorted(service.values(), key=lambda i: (i["month"], i["environment"]), reverse=True),
    }


def _written(path: Path) -> str | None:
    """When the copy on this machine was written (ISO, UTC), or None when there is none here."""
    from datetime import UTC, datetime

    try:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat()
    except OSError:
        return None


def journal(store: Store, filters: dict[str, Any]) -> dict:
    events = store.find_events(
        release=filters.get("release") or None,
        environment=filters.get("env") or None,
        kind=filters.get("kind") or None,
        text=filters.get("q") or None,
        before=filters.get("before"),
        limit=JOURNAL_PAGE,
    )
    return {"events": events, "older": events[-1].id if len(events) == JOURNAL_PAGE else None}


def evidence(store: Store, version: str, stage: str, run: int) -> list[dict]:
    """Each check's looks during a stage run, in order: its verdict and, for a comparing check
    (the canary), each metric's counts over time with the bound it must stay under."""
    started = store.get_stage_run(run)
    since = started.started_at if started else ""
    looks = [
        e
        for e in reversed(store.find_events(release=version, kind="checks", limit=2000))
        if e.stage == stage and e.kind in CHECKS and e.ts >= since
    ]
    checks: dict[str, dict] = {}
    for event in looks:
        for result in event.data.get("results", []):
            entry = checks.setdefault(result["check"], {"check": result["check"], "looks": [], "metrics": {}})
            entry["looks"].append({"at": event.ts, "verdict": result["verdict"], "summary": result["summary"]})
            entry["last"] = result
            for item in result.get("evidence", []):
                entry["metrics"].setdefault(item["metric"], []).append({"at": event.ts, **item})
    return list(checks.values())
