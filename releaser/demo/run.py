"""The demo tour: three releases through the sandbox, narrated."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from ..config import load_config
from ..errors import StageFailed
from ..fleet import TickFn
from ..journal import Sink
from ..notify import open_journal
from ..pipeline import Pipeline
from ..releases import create_release
from ..report.outbox import Outbox
from ..router.nginx import NginxRouter, variable
from ..router.route import Route
from ..store import open_store
from ..windows import close_window, open_windows
from . import sandbox
from .nginx import SandboxNginx, nginx_binary
from .traffic import USERS, Traffic

Say = Callable[..., None]


def run_demo(directory: Path | None, say: Say, sink: Sink, tick: TickFn | None = None) -> dict:
    started = time.monotonic()
    directory = sandbox.prepare_directory(directory or Path(tempfile.mkdtemp(prefix="releaser-demo-")))
    binary = nginx_binary()
    router = SandboxNginx(directory / "nginx", variable("prod"), binary) if binary else None
    layout = sandbox.build(directory, sys.executable, router)
    counts = ", ".join(f"{len(ports)} {env}" for env, ports in layout.items())
    say(f"releaser demo: a sandbox fleet of {sum(map(len, layout.values()))} hosts ({counts}) in {directory}")
    say("  each host is a directory with its own demo app process on 127.0.0.1; synthetic users send traffic")
    say("  bake times are SECONDS in this sandbox (production bakes for minutes)")
    config = load_config(directory / "environments.yaml")
    prod = config.environments["prod"]
    if router is not None and prod.router is not None:
        router.start(NginxRouter(prod.router, prod).render(Route()))
        say(
            f"  prod is behind nginx on 127.0.0.1:{router.port}: its gray goes to 10% of its {USERS} users (by a "
            "cookie), every host is drained before its switch, a rollback routes users back first"
        )
    else:
        say(
            "  nginx is not installed: prod's gray goes to 10% of its hosts, not of its users "
            "(apt-get install nginx for gray by users)",
            "yellow",
        )
    store = open_store(config)
    journal, notifier = open_journal(store, sink, config)
    pipeline = Pipeline(config, store, journal, tick=tick)
    timings: dict[str, float] = {}
    try:
        for version, spec in sandbox.RELEASES.items():
            create_release(
                store,
                journal,
                version,
                directory / "artifacts" / f"demo-app-{version}.tar.gz",
                spec["notes"],
                tuple(spec["features"]),
            )
        with Traffic(layout, routed={"prod": router.port} if router else None):
            chapters = (
                ("1.0.0", "the first install: no host runs an earlier release, so gray has no baseline to compare"),
                ("1.1.0", "a good release: selftest -> test -> gray (10% of prod) -> full, in waves"),
                ("1.2.0", "a bad release: it breaks batch orders, which only production traffic places"),
            )
            for version, story in chapters:
                say(f"\n== {version}: {story}", "cyan")
                chapter_started = time.monotonic()
                try:
                    pipeline.run(version)
                except StageFailed as exc:
                    say(f"   caught: {exc}", "yellow")
                if version == "1.1.0":
                    _serve_a_while(config, store, say)
                timings[version] = round(time.monotonic() - chapter_started, 1)
                say(f"   {version} took {timings[version]:.1f}s", "cyan")
            report = _effect_report(config, store, journal, say)
    finally:
        for window in open_windows(config, store):
            close_window(store, journal, window.run, "the demo stopped its sandbox's apps")
        sandbox.stop_apps(directory)
        if notifier:
            notifier.close()
        store.close()
    from ..status import status_document  # the statuses `releaser status` shows (1.0.0: superseded)

    final = open_store(config)
    try:
        statuses = {rel["version"]: rel["status"] for rel in status_document(config, final)["releases"]}
    finally:
        final.close()
    seconds = round(time.monotonic() - started, 1)
    say(f"\ndone in {seconds:.1f}s: " + ", ".join(f"{v} {s}" for v, s in statuses.items()), "green")
    say("where to look next:")
    say(f"  releaser -C {directory} status            what every host runs, every release's stages")
    say(f"  releaser -C {directory} history           the journal of everything that happened")
    say(f"  releaser -C {directory} history --json    the same, for machines")
    say(f"  {report}   1.1.0's effect report (report.md and report.json beside it)")
    say(f"  releaser -C {directory} report 1.2.0      a report of any release, at any time")
    say(f"  {directory}/environments.yaml, playbooks/, healthchecks/   the configuration used")
    return {"dir": str(directory), "seconds": seconds, "releases": statuses, "chapters": timings, "report": report}


AFTER_SECONDS = 5.0  # how long 1.1.0 serves everyone before 1.2.0 comes: its report's window after


def _serve_a_while(config, store, say: Say) -> None:
    """Let the good release serve all of prod for a few seconds, recording its metrics as
    `releaser watch` does between releases: the effect report compares enough of them to tell
    a change from noise."""
    from ..report.timeline import record_if_due

    say(f"   1.1.0 serves all of prod; releaser records its metrics for {AFTER_SECONDS:g}s (the report's window after)")
    until = time.monotonic() + AFTER_SECONDS
    while time.monotonic() < until:
        record_if_due(config, store)
        time.sleep(0.5)


def _effect_report(config, store, journal, say: Say) -> str:
    """Wait until 1.1.0's report is due (seconds here, days in production) and deliver the due
    reports, as `releaser report due --send` does: with no mail configured, the copies under
    .releaser/reports/."""
    outbox = Outbox(config, store, journal)
    scheduled = store.get_report("1.1.0")
    say("\n== 1.1.0's effect report: the window before its rollout against the window after", "cyan")
    time.sleep(max(0.0, (datetime.fromisoformat(scheduled.due_at) - datetime.now(UTC)).total_seconds()))
    outcome = next(o for o in outbox.send_due() if o.release == "1.1.0")
    document = json.loads(Path(outcome.path).with_name("report.json").read_text())
    for line in document["summary"]:
        say(f"   {line}")
    return outcome.path
