"""The documents behind `status` and `history`, and their human rendering.

A release's status as stored (registered, promoting, live, rolled_back, failed) is refined for
reading: a live release that no host of the last stage's environment runs any more is
`superseded`; one left part-way while a newer one went further, `abandoned`; one whose next
stage waits for a person, `awaiting_approval`. Times are ISO 8601 in the documents; people get
terminal.shown_time's one format."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

from .contracts import pending_contracts
from .dbschema import History
from .model import ApprovalState, Config, Event, Report, RunStatus, ServiceReport, parse_ts
from .names import STAGE_ORDER
from .processes import is_stale, owner_alive
from .store import Store
from .terminal import shown_time, span, summarised
from .windows import open_windows, watchers

CLOSED_RUN = (RunStatus.ROLLED_BACK, RunStatus.ROLLBACK_FAILED, RunStatus.HELD)


def status_document(config: Config, store: Store) -> dict:
    runs = store.stage_runs()
    environments = {}
    running_anywhere: dict[str, set[str]] = {}
    for name, env in config.environments.items():
        states = store.host_states(name)
        last = {dep.host: dep for dep in store.deployments(environment=name)}
        hosts = {
            host.name: {
                "version": states[host.name].version if host.name in states else None,
                "previous": states[host.name].previous if host.name in states else None,
                "doubt": states[host.name].doubt if host.name in states else "",
                "last": None
                if host.name not in last
                else {
                    "action": last[host.name].action,
                    "from": last[host.name].from_version,
                    "to": last[host.name].to_version,
                    "status": last[host.name].status,
                    "detail": last[host.name].detail,
                    "at": last[host.name].updated_at,
                },
            }
            for host in env.hosts
        }
        versions = Counter(h["version"] for h in hosts.values())
        for host_name, state in states.items():
            if state.version and host_name in hosts:
                running_anywhere.setdefault(state.version, set()).add(name)
        lock = store.get_lock(name)
        open_runs = [r for r in runs if r.environment == name and r.status.open]
        working = [r for r in open_runs if owner_alive(r.pid, r.hostname, r.lease_until)]
        open_rollbacks = [r for r in store.rollbacks(name) if r.status.open]
        in_doubt = {host: h["doubt"] for host, h in hosts.items() if h["doubt"]}
        current, count = versions.most_common(1)[0] if versions else (None, 0)
        environments[name] = {
            "current": current,  # what most of its hosts run
            "current_hosts": count,
            "hosts": hosts,
            "versions": {str(v): n for v, n in versions.items()},
            "consistent": len(versions) == 1 and not in_doubt and not open_rollbacks,
            "in_doubt": in_doubt,
            "heal": _heal(config, name, hosts, in_doubt),  # what puts them back
            "rollbacks": [
                {
                    "rollback": r.id,
                    "cause": str(r.cause),
                    "releases": r.releases,
                    "status": str(r.status),
                    "left": r.left,
                    "reason": r.reason,
                    "fix": "releaser resume",
                }
                for r in open_rollbacks
            ],
            "lock": None
            if lock is None
            else {
                "owner": lock.owner,
                "pid": lock.pid,
                "hostname": lock.hostname,
                "command": lock.command,
                "acquired_at": lock.acquired_at,
                "lease_until": lock.lease_until,
                "stale": is_stale(lock),
            },
            "running": [
                {
                    "run": r.id,
                    "release": r.release,
                    "stage": r.stage,
                    "status": str(r.status),
                    "pid": r.pid,
                    "hostname": r.hostname,
                }
                for r in working
            ],
            "interrupted": [
                {"run": r.id, "release": r.release, "stage": r.stage, "status": str(r.status)}
                for r in open_runs
                if r not in working
            ],  # their process is gone: `resume`
            "route": _route(env, store),
            "database": _database(config, env.name, store),
            "drills": _drills(env, store, config.report.rollback_sla),
        }
    last_env = config.pipeline[-1].environment if config.pipeline else None
    rollbacks = store.rollbacks()
    releases = []
    runs_by_release: dict[str, list] = {}
    for run in runs:
        runs_by_release.setdefault(run.release, []).append(run)
    all_releases = store.list_releases()
    history = History(all_releases)
    awaiting = store.approvals(state=ApprovalState.AWAITING)
    asked = {a.release: a for a in awaiting}
    for rel in all_releases:
        own = runs_by_release.get(rel.version, [])
        status = str(rel.status)
        busy = any(r.status.open for r in own)
        if status == "live" and last_env and last_env not in running_anywhere.get(rel.version, set()):
            status = "superseded"
        elif status == "promoting" and not busy and _overtaken(rel, own, runs):
            status = "abandoned"  # a newer release went further after it: it will not be promoted on
        elif status in ("registered", "promoting") and not busy and rel.version in asked:
            status = "awaiting_approval"  # its next stage waits for a person, not for releaser
        reason = _why(rel.version, status, own, rollbacks)
        if status == "awaiting_approval":
            request = asked[rel.version]
            reason = f"{request.stage} awaits approval, asked by {request.requested_by}"
        releases.append(
            {
                "version": rel.version,
                "status": status,
                "reason": reason,
                "runs_on": sorted(running_anywhere.get(rel.version, set())),
                "sha256": rel.sha256,
                "features": rel.features,
                "schema": {**rel.schema.to_dict(), "runs_on": list(history.runs_on(rel.version))} if history else None,
                "created_at": rel.created_at,
                "created_by": rel.created_by,
                "stages": [
                    {
                        "stage": r.stage,
                        "environment": r.environment,
                        "status": str(r.status),
                        "started_at": r.started_at,
                        "finished_at": r.finished_at,
                        "reason": r.reason,
                        "forced": r.forced,
                        "run": r.id,
                    }
                    for r in own
                ],
            }
        )
    windows = [w.to_dict() for w in open_windows(config, store, runs)]
    reports = [{"release": r.release, **_outbox_fields(r)} for r in store.reports()]
    service_reports = [
        {"environment": r.environment, "month": r.month, **_outbox_fields(r)} for r in store.service_reports()
    ]
    watching = watchers(store)
    approvals = [
        {
            "release": a.release,
            "stage": a.stage,
            "requested_by": a.requested_by,
            "requested_at": a.requested_at,
            "approvers": a.approvers,
            "not_by_promoter": a.not_by_promoter,
            "state": a.state,
        }
        for a in awaiting
    ]
    return {
        "environments": environments,
        "releases": releases,
        "windows": windows,
        "watch": {"running": any(w["alive"] for w in watching), "watchers": watching},
        "reports": reports,
        "service_reports": service_reports,
        "approvals": approvals,
        "freezes": _freezes(config),
    }


def _database(config: Config, environment: str, store: Store) -> dict | None:
    """Where the app's database stands as the last schema step said, and what waits (contract steps)."""
    if config.playbooks[config.environments[environment].playbook].migrate is None:
        return None
    migrations = store.migrations(environment)
    backups = store.backups(environment)
    last = migrations[-1] if migrations else None
    said = next((m for m in reversed(migrations) if m.to_version not in (None, "?")), None)
    return {
        "version": said.to_version if said else None,  # as the last step that said found it ("" empty)
        "as_of": (said.finished_at or said.started_at) if said else None,
        "last_step": None
        if last is None
        else {
            "release": last.release,
            "phase": last.phase,
            "status": str(last.status),
            "from": last.from_version,
            "to": last.to_version,
            "target": last.target,
            "detail": last.detail,
            "at": last.finished_at or last.started_at,
        },
        "pending": [p.describe() for p in pending_contracts(config, store, environment)],
        "backups": len(backups),
        "last_backup": None if not backups else {"name": backups[-1].name, "schema": backups[-1].schema_version},
    }


def _freezes(config: Config) -> list[dict]:
    """The freezes in force now, and on which environments."""
    if not config.freezes:
        return []
    from .freezes import frozen

    held = []
    for name in config.environments:
        now = frozen(config.freezes, name)
        if now is not None:
            held.append(
                {"environment": name, "freeze": now.freeze.name, "until": now.until.isoformat(), "text": now.describe()}
            )
    return held


def _overtaken(release, own: list, runs: list) -> bool:
    """Whether a newer release ran a stage at least as far along the pipeline, after this
    release's last stage: its promotion was left where it stood."""
    if not own:
        return False
    last = max(own, key=lambda r: r.started_at)
    reached = STAGE_ORDER.index(last.stage)
    return any(
        r.release != release.version and r.started_at > last.started_at and STAGE_ORDER.index(r.stage) >= reached
        for r in runs
    )


def _drills(env, store: Store, sla: float, now: datetime | None = None) -> dict | None:
    """The environment's last drill, and whether one is overdue: `drills.every` has passed since
    the last drill that passed, or none ever did. None where drills are neither set nor run."""
    drills = store.drills(env.name)
    if env.drills is None and not drills:
        return None
    passed = [d for d in drills if d.status == "passed"]
    last_passed = (passed[-1].finished_at or passed[-1].started_at) if passed else None
    due_at, warning = None, None
    if env.drills is not None:
        every = span(env.drills.every)
        if last_passed is None:
            warning = f"no drill has ever passed on {env.name} (`drills:` every {every}): `releaser drill {env.name}`"
        else:
            due = parse_ts(last_passed) + timedelta(seconds=env.drills.every)
            due_at = due.isoformat(timespec="seconds")
            if due <= (now or datetime.now(UTC)):
                warning = (
                    f"the last drill that passed on {env.name} finished {last_passed[:16].replace('T', ' ')} UTC, "
                    f"more than {every} ago (`drills:` every {every}): `releaser drill {env.name}`"
                )
    last = drills[-1] if drills else None
    return {
        "every_seconds": env.drills.every if env.drills else None,
        "hosts": list(env.drills.hosts) if env.drills and env.drills.hosts else None,
        "sla_seconds": sla,
        "last": {**asdict(last), "within_sla": last.within(sla)} if last else None,
        "last_passed_at": last_passed,
        "due_at": due_at,
        "overdue": warning is not None,
        "warning": warning,
    }


def _route(env, store: Store) -> dict | None:
    """The route the environment's router holds (or was being given), in words too."""
    if env.router is None:
        return None
    from .router.route import Route

    stored = store.get_route(env.name)
    route = Route.from_dict(stored["route"]) if stored else Route()
    hosts = [h.name for h in env.hosts]
    return {
        **route.to_dict(),
        "users_on_new": route.effective_share(hosts),
        "text": route.describe(hosts),
        "applied": stored["applied"] if stored else None,
        "why": stored["why"] if stored else "",
        "updated_at": stored["updated_at"] if stored else None,
    }


def _why(version: str, status: str, runs: list, rollbacks: list) -> str:
    """Why a release failed, was rolled back or is held: the rollback's reason, else its stage's."""
    held = bool(runs) and runs[-1].status is RunStatus.HELD
    if status not in ("rolled_back", "failed") and not held:
        return ""
    for rollback in reversed(rollbacks):
        if version in rollback.releases and rollback.reason:
            return rollback.reason
    for run in reversed(runs):
        if run.status in CLOSED_RUN and run.reason:
            return run.reason
    return ""


# -- people --


def print_status(
    document: dict, say: Callable[..., None], relative: bool = False, told: Callable[[str], str] = summarised
) -> None:
    """`told` shows a verdict (summarised or whole, as the caller's terminal and options say)."""

    def when(iso: str | None) -> str:
        return shown_time(iso, relative)

    for name, env in document["environments"].items():
        total = len(env["hosts"])
        current = f"{env['current']} on {env['current_hosts']}/{total} hosts" if env["current"] else "nothing deployed"
        others = ", ".join(f"{v} x{n}" for v, n in env["versions"].items() if v != str(env["current"]))
        flag = "" if len(env["versions"]) == 1 else f"  MIXED VERSIONS (also {others})"
        flag += "" if not env["in_doubt"] else f"  {len(env['in_doubt'])} HOST(S) IN DOUBT"
        say(f"{name}: {current}{flag}", None if env["consistent"] else "yellow")
        for host, state in env["hosts"].items():
            line = f"  {host:<16} {state['version'] or '-':<14} (previous {state['previous'] or '-'})"
            last = state["last"]
            if last and last["status"] not in ("switched",):
                line += f"  last {last['action']} to {last['to']}: {last['status']} {told(last['detail'])}"
            if state["doubt"]:
                fix = (
                    f"`releaser redeploy {name} --host {host} --reason TEXT`"
                    if state["version"]
                    else "nothing is recorded there to redeploy: promote a release, which asks the host first"
                )
                line += f"  IN DOUBT: {state['doubt']} (fix: {fix})"
            say(line, None if not state["doubt"] and (not last or last["status"] == "switched") else "yellow")
        route = env.get("route")
        if route is not None:
            if route["applied"] is False:
                say(
                    f"  router: NOT CONFIRMED ({route['why']}): meant to send {route['text']}; `releaser resume` "
                    "puts it live",
                    "red",
                )
            else:
                say(f"  router: {route['text']}" + ("" if route["applied"] else " (releaser has not changed it yet)"))
        if env["lock"]:
            lock = env["lock"]
            say(
                f"  locked by {lock['owner']} pid {lock['pid']} on {lock['hostname']} "
                f"since {when(lock['acquired_at'])}: "
                f"{lock['command']}" + (" (stale)" if lock["stale"] else ""),
                "yellow",
            )
        for run in env["running"]:
            say(
                f"  in progress: {run['stage']} of {run['release']} ({run['status']}) by pid {run['pid']} on "
                f"{run['hostname']}"
            )
        for run in env["interrupted"]:
            say(f"  unfinished: {run['stage']} of {run['release']} ({run['status']}); run `releaser resume`", "red")
        database = env.get("database")
        if database is not None:
            _print_database(database, say, when)
        if env.get("drills"):
            _print_drills(env["drills"], say, when)
        for rollback in env["rollbacks"]:
            left = "; ".join(f"{h}: {why}" for h, why in sorted(rollback["left"].items())) or "interrupted"
            say(
                f"  unfinished rollback {rollback['rollback']} of {', '.join(rollback['releases'])} "
                f"({rollback['cause']}): "
                f"{left}; `releaser resume` finishes it",
                "red",
            )
    if document["releases"]:
        say("releases:")
    for rel in document["releases"]:
        stages = " -> ".join(f"{s['stage']}:{s['status']}" for s in rel["stages"]) or "no stage run yet"
        color = {"rolled_back": "yellow", "failed": "red", "live": "green", "awaiting_approval": "yellow"}
        say(f"  {rel['version']:<14} {rel['status']:<17} {stages}", color.get(rel["status"]))
        if rel["reason"] and rel["status"] != "awaiting_approval":  # the approvals below say who and how
            say(f"  {'':<14} why: {told(rel['reason'])}", color.get(rel["status"]))
    for item in document["approvals"]:
        from .decisions import who_may  # only when something awaits approval: status stays light

        who = who_may(item["approvers"], item["requested_by"], item["not_by_promoter"])
        say(
            f"awaiting approval: {item['stage']} of {item['release']}, asked by {item['requested_by']} "
            f"{when(item['requested_at'])}; approver: {who} (`releaser approve {item['release']} --reason TEXT`)",
            "yellow",
        )
    for item in document["freezes"]:
        say(
            f"frozen: {item['environment']}: {item['text']}; rollbacks go on, promotions need --force --reason",
            "yellow",
        )
    _print_watch(document, say, when)
    for item in document["reports"]:
        say(f"effect report of {item['release']}: " + _delivery(item, when), _delivery_colour(item))
    for item in document["service_reports"]:
        say(
            f"service report of {item['environment']} for {item['month']}: " + _delivery(item, when),
            _delivery_colour(item),
        )


def _outbox_fields(report: Report | ServiceReport) -> dict:
    """Where a report's delivery stands, as `status --json` gives it (effect and service alike)."""
    return {
        "state": str(report.state),
        "due_at": report.due_at,
        "sent_at": report.sent_at,
        "attempts": report.attempts,
        "last_error": report.last_error,
        "path": report.path,
        "message_id": report.message_id,
        "delivered_to": report.delivered_to,
    }


def _heal(config: Config, environment: str, hosts: dict, in_doubt: dict) -> str | None:
    """The command that ends the doubt: a redeploy of what the hosts should run, or, where nothing
    was ever recorded (a first install that broke off), a promotion, which asks each host first."""
    if not in_doubt:
        return None
    if any(hosts[host]["version"] for host in in_doubt):
        return f"releaser redeploy {environment} --reason TEXT"
    stage = next((spec.name for spec in config.pipeline if spec.environment == environment), None)
    return f"releaser promote VERSION --to {stage}" if stage else f"releaser redeploy {environment} --reason TEXT"


def _delivery(item: dict, when: Callable[[str | None], str]) -> str:
    """Where a report's delivery stands, in one line."""
    if item["state"] == "sent":
        to = item["delivered_to"]
        delivery = "written only (no recipients)" if to == 0 else f"sent to {to} recipient(s)" if to else "sent"
        line = f"{delivery} {when(item['sent_at'])}" + (f" ({item['last_error']})" if item["last_error"] else "")
        return line + (f": {item['path']}" if item["path"] else "")
    if item["state"] == "unconfirmed":
        return f"UNCONFIRMED: {item['last_error']}"
    return f"due {when(item['due_at'])}" + (f"; not sent yet: {item['last_error']}" if item["last_error"] else "")


def _delivery_colour(item: dict) -> str | None:
    if item["state"] == "unconfirmed":
        return "red"
    return "yellow" if item["state"] != "sent" and item["last_error"] else None


def _print_database(database: dict, say: Callable[..., None], when: Callable[[str | None], str]) -> None:
    version = database["version"]
    shown = "not migrated by releaser yet" if version is None else f"at {version or 'an empty schema'}"
    last = database["last_step"]
    line = f"  database: {shown}"
    if database["as_of"]:
        line += f" (as of {when(database['as_of'])})"
    if database["last_backup"]:
        line += f"; {database['backups']} backup(s), last {database['last_backup']['name']}"
    say(line)
    if last is not None and last["status"] != "done":
        words = (
            "cut short: `releaser resume` asks the database and finishes it"
            if last["status"] == "running"
            else (f"failed: {last['detail']}")
        )
        say(f"  last schema step: {last['release']}'s {last['phase']} to {last['target'] or 'empty'} {words}", "red")
    for pending in database["pending"]:
        say(f"  {pending}")


def _print_drills(drills: dict, say: Callable[..., None], when: Callable[[str | None], str]) -> None:
    """The last rehearsal of the environment's rollback, and a warning when one is overdue."""
    last = drills["last"]
    if last is not None:
        figures = []
        if last["rollback_seconds"] is not None:
            figures.append(f"rolled back {last['release']} -> {last['previous']} in {last['rollback_seconds']:.1f}s")
        if last["forward_seconds"] is not None:
            figures.append(f"forward in {last['forward_seconds']:.1f}s")
        if last["restore_seconds"] is not None:
            figures.append(f"restore of B-{last['backup_id']} in {last['restore_seconds']:.1f}s")
        sla = span(drills["sla_seconds"])
        verdict = (
            f" ({'within' if last['within_sla'] else 'NOT within'} the {sla} rollback SLA)"
            if figures and last["status"] == "passed"  # a failed drill proved no time
            else ""
        )
        why = f": {last['detail']}" if last["status"] == "failed" and last["detail"] else ""
        say(
            f"  last drill: {last['status']} {when(last['finished_at'] or last['started_at'])}"
            + (f": {', '.join(figures)}{verdict}" if figures else "")
            + why,
            None if last["status"] == "passed" and last["within_sla"] else "yellow",
        )
    if drills["warning"]:
        say(f"  DRILL OVERDUE: {drills['warning']}", "yellow")


def _print_watch(document: dict, say: Callable[..., None], when: Callable[[str | None], str]) -> None:
    """The rollback windows, and whether anything watches them."""
    windows, watch = document["windows"], document["watch"]
    for window in windows:
        say(
            f"rollback window open: {window['release']} on {window['environment']} ({window['stage']}) until "
            f"{when(window['closes_at'])}"
        )
    alive = [w for w in watch["watchers"] if w["alive"]]
    if alive:
        for w in alive:
            say(
                f"watch: running, pid {w['pid']} on {w['hostname']} (every {w['interval']:g}s), "
                f"last look {shown_time(w['at'], True)}"
            )
    elif windows:
        last = watch["watchers"][0] if watch["watchers"] else None
        seen = (
            f"; last look {shown_time(last['at'], True)} ({'--once' if last['mode'] == 'once' else 'a daemon'})"
            if last
            else "; no watch has ever run here"
        )
        say(
            f"watch: NOT running{seen}. Nothing rolls these windows back: start `releaser watch`, or run "
            "`releaser watch --once` every minute from cron",
            "yellow",
        )


def history_document(events: list[Event]) -> dict:
    return {"events": [asdict(e) for e in events]}
