"""The documents behind `status` and `history`, and their human rendering."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from typing import Callable

from .locks import is_stale
from .model import Config, Event
from .store import Store
from .watch import open_windows


def status_document(config: Config, store: Store) -> dict:
    runs = store.stage_runs()
    environments = {}
    for name, env in config.environments.items():
        states = store.host_states(name)
        last = {dep.host: dep for dep in store.deployments(environment=name)}
        hosts = {
            host.name: {
                "version": states[host.name].version if host.name in states else None,
                "previous": states[host.name].previous if host.name in states else None,
                "doubt": states[host.name].doubt if host.name in states else "",
                "last": None if host.name not in last else {
                    "action": last[host.name].action, "from": last[host.name].from_version,
                    "to": last[host.name].to_version, "status": last[host.name].status,
                    "detail": last[host.name].detail, "at": last[host.name].updated_at,
                },
            }
            for host in env.hosts
        }
        versions = Counter(h["version"] for h in hosts.values())
        lock = store.get_lock(name)
        open_runs = [r for r in runs if r.environment == name and r.status.open]
        open_rollbacks = [r for r in store.rollbacks(name) if r.status.open]
        in_doubt = {host: h["doubt"] for host, h in hosts.items() if h["doubt"]}
        environments[name] = {
            "hosts": hosts,
            "versions": {str(v): n for v, n in versions.items()},
            "consistent": len(versions) == 1 and not in_doubt and not open_rollbacks,
            "in_doubt": in_doubt,
            "rollbacks": [{"rollback": r.id, "cause": str(r.cause), "releases": r.releases, "status": str(r.status),
                           "left": r.left, "reason": r.reason, "fix": "releaser resume"} for r in open_rollbacks],
            "lock": None if lock is None else {
                "owner": lock.owner, "pid": lock.pid, "hostname": lock.hostname, "command": lock.command,
                "acquired_at": lock.acquired_at, "lease_until": lock.lease_until, "stale": is_stale(lock),
            },
            "interrupted": [{"run": r.id, "release": r.release, "stage": r.stage, "status": str(r.status)}
                            for r in open_runs],
        }
    releases = []
    runs_by_release: dict[str, list] = {}
    for run in runs:
        runs_by_release.setdefault(run.release, []).append(run)
    for rel in store.list_releases():
        releases.append({
            "version": rel.version,
            "status": str(rel.status),
            "sha256": rel.sha256,
            "features": rel.features,
            "created_at": rel.created_at,
            "created_by": rel.created_by,
            "stages": [
                {"stage": r.stage, "environment": r.environment, "status": str(r.status), "started_at": r.started_at,
                 "finished_at": r.finished_at, "reason": r.reason, "forced": r.forced, "run": r.id}
                for r in runs_by_release.get(rel.version, [])
            ],
        })
    windows = [w.to_dict() for w in open_windows(config, store)]
    reports = [{"release": r.release, "state": str(r.state), "due_at": r.due_at, "sent_at": r.sent_at,
                "attempts": r.attempts, "last_error": r.last_error, "path": r.path, "message_id": r.message_id}
               for r in store.reports()]
    return {"environments": environments, "releases": releases, "windows": windows, "reports": reports}


def print_status(document: dict, say: Callable[..., None]) -> None:
    for name, env in document["environments"].items():
        versions = ", ".join(f"{v} x{n}" for v, n in env["versions"].items())
        flag = "" if len(env["versions"]) == 1 else "  MIXED VERSIONS"
        flag += "" if not env["in_doubt"] else f"  {len(env['in_doubt'])} HOST(S) IN DOUBT"
        say(f"{name}: {versions}{flag}", None if env["consistent"] else "yellow")
        for host, state in env["hosts"].items():
            line = f"  {host:<16} {state['version'] or '-':<14} (previous {state['previous'] or '-'})"
            last = state["last"]
            if last and last["status"] not in ("switched",):
                line += f"  last {last['action']} to {last['to']}: {last['status']} {last['detail']}"
            if state["doubt"]:
                line += f"  IN DOUBT: {state['doubt']}"
            say(line, None if not state["doubt"] and (not last or last["status"] == "switched") else "yellow")
        if env["lock"]:
            lock = env["lock"]
            say(f"  locked by {lock['owner']} pid {lock['pid']} on {lock['hostname']}: {lock['command']}"
                + (" (stale)" if lock["stale"] else ""), "yellow")
        for run in env["interrupted"]:
            say(f"  unfinished: {run['stage']} of {run['release']} ({run['status']}); run `releaser resume`", "red")
        for rollback in env["rollbacks"]:
            left = "; ".join(f"{h}: {why}" for h, why in sorted(rollback["left"].items())) or "interrupted"
            say(f"  unfinished rollback {rollback['rollback']} of {', '.join(rollback['releases'])} ({rollback['cause']}): "
                f"{left}; `releaser resume` finishes it", "red")
    for window in document["windows"]:
        say(f"rollback window open: {window['release']} on {window['environment']} ({window['stage']}) until "
            f"{window['closes_at']}; `releaser watch` keeps it armed")
    for item in document["reports"]:
        if item["state"] == "sent":
            line, color = f"sent {item['sent_at']}" + (f" ({item['last_error']})" if item["last_error"] else ""), None
        elif item["state"] == "unconfirmed":
            line, color = f"UNCONFIRMED: {item['last_error']}", "red"
        else:
            line = f"due {item['due_at']}" + (f"; not sent yet: {item['last_error']}" if item["last_error"] else "")
            color = "yellow" if item["last_error"] else None
        say(f"effect report of {item['release']}: {line}", color)
    if document["releases"]:
        say("releases:")
    for rel in document["releases"]:
        stages = " -> ".join(f"{s['stage']}:{s['status']}" for s in rel["stages"]) or "no stage run yet"
        say(f"  {rel['version']:<14} {rel['status']:<12} {stages}")


def history_document(events: list[Event]) -> dict:
    return {"events": [asdict(e) for e in events]}
