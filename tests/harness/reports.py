"""Fixed datasets for the effect report, built step by step: a release 2.0.0 that passed its one
stage, with samples recorded either side of its rollout."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from releaser.config import load_config
from releaser.journal import Journal
from releaser.model import Release, RunStatus, Sample
from releaser.report.outbox import schedule
from releaser.store import SqliteStore

CONFIG = """\
project: shop
environments:
  prod:
    transport: local
    playbook: app
    metrics: {{source: scrape, scrape_url: "http://127.0.0.1:9/metrics"}}
    hosts: [a]
pipeline:
  - {{stage: full, environment: prod}}
report:
{spans}  language: {language}
{timezone}  metrics:
    requests: http_requests_total
    errors: 'http_requests_total{{code=~"5.."}}'
    latency: http_request_duration_seconds
    cpu: process_cpu_seconds_total
  features:
    batch-order: 'feature_used_total{{feature="batch-order"}}'
"""


def step(requests: float = 100, errors: float = 0, fast: float = 90, cpu: float = 0.5, feature: float = 3) -> dict:
    """One step's increments on the one host: requests, errors, requests under 100 ms, CPU seconds, uses."""
    return {"requests": requests, "errors": errors, "fast": fast, "cpu": cpu, "feature": feature}


def samples(start: float, seconds: float, steps: list[dict]) -> list[Sample]:
    """Cumulative counters sampled once a step: the first sample at `start`, the counters grow
    by each step's increments."""
    totals = {"requests": 0.0, "errors": 0.0, "fast": 0.0, "cpu": 0.0, "feature": 0.0}
    result = []
    for index in range(len(steps) + 1):
        if index:
            for key in totals:
                totals[key] += steps[index - 1][key]
        values = {
            "requests": totals["requests"],
            "errors": totals["errors"],
            "cpu": totals["cpu"],
            "le:0.1": totals["fast"],
            "le:1.0": totals["requests"],
            "le:inf": totals["requests"],
            "feature:batch-order": totals["feature"],
        }
        result.append(Sample("prod", "a", start + index * seconds, values))
    return result


def dataset(
    tmp_path: Path,
    before: list[dict],
    after: list[dict],
    step_seconds: float,
    language: str = "en",
    timezone: str | None = None,
    configured: bool = False,
):
    """A release 2.0.0 that passed its one stage, with `before` and `after` recorded a step
    apart on either side of its rollout. The report's window and step are as long as the data
    (or, `configured`, left to the defaults: 3 days, an hour). Returns (config, store, live_at, now)."""
    window = step_seconds * max(len(before), len(after))
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "app.yaml").write_text("hooks: {}\n")
    (tmp_path / "environments.yaml").write_text(
        CONFIG.format(
            spans="" if configured else f"  window: {window:g}s\n  step: {step_seconds:g}s\n",
            language=language,
            timezone=f"  timezone: {timezone}\n" if timezone else "",
        )
    )
    config = load_config(tmp_path / "environments.yaml")
    store = SqliteStore(config.state_path)
    store.add_release(Release("2.0.0", "/a.tgz", "ff", 1, features=["batch-order"], created_by="ci"))
    run = store.start_stage_run("2.0.0", "full", "prod", "alice")
    store.set_stage_run_status(run.id, RunStatus.PASSED)
    report = schedule(config, store, Journal(store), "2.0.0", "prod")
    rollout_start = datetime.fromisoformat(store.stage_runs("2.0.0")[0].started_at).timestamp()
    live_at = datetime.fromisoformat(report.live_at).timestamp()
    store.add_samples(
        (samples(rollout_start - len(before) * step_seconds, step_seconds, before) if before else [])
        + (samples(live_at, step_seconds, after) if after else [])
    )  # none: nothing measured there
    return config, store, live_at, live_at + window + 1


def by_key(document: dict) -> dict:
    return {m["key"]: m for m in document["metrics"]}


def summary_of(markdown: str) -> str:
    return markdown.split("## Summary")[1].split("## ")[0]
