"""A month of history for the monthly service report: November 2026 on prod, in Asia/Shanghai
(UTC+8), built with the store's own methods: releases with and without commit times, incidents of
two tiers, a freeze overridden, a drill, and a day of request counts."""

from __future__ import annotations

from releaser.store import SqliteStore

SERVICE_CONFIG = """\
project: shop
environments:
  dev:
    transport: local
    playbook: app
    hosts: [dev-1]
  prod:
    transport: local
    playbook: app
    metrics: {{source: scrape, scrape_url: "http://127.0.0.1:9/metrics"}}
    hosts: [web-1]
pipeline:
  - {{stage: selftest, environment: dev}}
  - {{stage: gray, environment: prod}}
  - {{stage: full, environment: prod}}
freeze:
  - name: weekend
    weekly: {{from: "Sat 00:00", until: "Mon 00:00"}}
    timezone: Asia/Shanghai
    environments: [prod]
report:
  language: {language}
  timezone: Asia/Shanghai
  metrics:
    requests: http_requests_total
    errors: 'http_requests_total{{code=~"5.."}}'
  service:
{service}
"""
TIERS = """\
    availability_target: 99.9%
    tiers:
      P1: {causes: [alert, window], stages: [full]}
      P2: {environments: [prod], longer_than: 15m}
      P3: {}
"""


def configure(root, language: str = "en", service: str = TIERS):
    (root / "playbooks").mkdir(exist_ok=True)
    (root / "playbooks" / "app.yaml").write_text("hooks: {}\n")
    (root / "environments.yaml").write_text(SERVICE_CONFIG.format(language=language, service=service))
    from releaser.config import load_config

    return load_config(root / "environments.yaml")


def event(store, ts: str, kind: str, release=None, stage=None, environment="prod", **data):
    from releaser.model import Event

    store.append_event(Event(kind, "", environment, release, stage, data=data, ts=ts))


def november(root, language: str = "en"):
    """The month's history, built with the store's own methods (times in UTC)."""
    from releaser.model import Release, Sample

    config = configure(root, language)
    store = SqliteStore(config.state_path)
    event(store, "2026-10-20T00:00:00+00:00", "release.created", "1.9.0")
    for version, commit in (("2.0.0", "2026-11-02T00:00:00+00:00"), ("2.1.0", "2026-11-09T00:00:00+00:00")):
        store.add_release(Release(version, "/a.tgz", "ff", 1, commit_id="c" + version, committed_at=commit))
    for version in ("1.9.0", "2.2.0", "3.0.0", "3.1.0"):
        store.add_release(Release(version, "/a.tgz", "ff", 1))
    event(store, "2026-10-31T15:00:00+00:00", "stage.passed", "1.9.0", "full")  # Oct 31, 23:00 in Shanghai
    event(store, "2026-11-02T04:00:00+00:00", "stage.started", "2.0.0", "gray")
    event(store, "2026-11-02T06:00:00+00:00", "stage.passed", "2.0.0", "full")  # lead time 6 h
    event(store, "2026-11-09T10:00:00+00:00", "stage.started", "2.1.0", "gray")
    event(store, "2026-11-10T00:00:00+00:00", "stage.passed", "2.1.0", "full")  # lead time 24 h
    event(store, "2026-11-20T00:00:00+00:00", "stage.started", "2.2.0", "gray")
    incident = {"cause": "window", "reason": "error ratio 12%", "releases": ["2.2.0"], "time_to_detect": 300.0}
    event(
        store,
        "2026-11-20T00:30:00+00:00",
        "incident",
        "2.2.0",
        "gray",
        **incident,
        fault_at="2026-11-20T00:10:00+00:00",
        finished_at="2026-11-20T00:30:00+00:00",
        time_to_rollback=900.0,
    )  # 20 min from the fault to the end of the rollback: P2 (prod, longer than 15 min; gray is not P1's)
    event(
        store,
        "2026-11-21T02:00:00+00:00",
        "freeze.overridden",
        "3.0.0",
        "gray",
        freeze="weekend",
        by="alice",
        reason="hotfix INC-7",
    )
    event(store, "2026-11-21T02:00:00+00:00", "stage.started", "3.0.0", "gray")
    event(store, "2026-11-25T02:00:00+00:00", "stage.passed", "3.0.0", "full")  # no commit recorded
    event(
        store,
        "2026-11-26T00:00:00+00:00",
        "incident",
        "3.0.0",
        "full",
        cause="alert",
        reason="checkout alert",
        releases=["3.0.0"],
        time_to_detect=None,
        time_to_rollback=4000.0,
        finished_at="2026-11-26T00:00:00+00:00",
    )  # P1, rolled back later than the 1 h SLA
    event(store, "2026-11-30T17:00:00+00:00", "stage.passed", "3.1.0", "full")  # Dec 1, 01:00 in Shanghai
    drill = store.start_drill("prod")
    store.update_drill(drill.id, status="passed", rollback_seconds=42.0, restore_seconds=300.0, release="2.1.0")
    store._db.execute("UPDATE drills SET started_at = '2026-11-12T03:00:00+00:00' WHERE id = ?", (drill.id,))
    start = 1793836800.0  # 2026-11-05T00:00:00Z
    store.add_samples(
        [
            Sample("prod", "web-1", start, {"requests": 0.0, "errors": 0.0}),
            Sample("prod", "web-1", start + 3600, {"requests": 100000.0, "errors": 50.0}),
        ]
    )
    return config, store
