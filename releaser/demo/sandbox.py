"""Build the sandbox directory: configuration, shipped playbook and checks, three artifacts."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import signal
import tarfile
import time
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..processes import pid_alive
from ..shipped import shipped_file
from .nginx import SandboxNginx
from .ports import free_ports

MARKER = ".releaser-demo"
LAYOUT = {"dev": 1, "test": 2, "prod": 10}

# What each release's app does (read by releaser.demo.app from app.json).
RELEASES: dict[str, dict[str, Any]] = {
    "1.0.0": {
        "notes": "First install of the demo shop.",
        "features": [],
        "app": {"latency_ms": 8, "failures": {}, "features": {}},
    },
    "1.1.0": {
        "notes": "Adds batch orders; faster item listing.",
        "features": ["batch-order"],
        "app": {"latency_ms": 5, "failures": {}, "features": {"/api/orders/batch": "batch-order"}},
    },
    "1.2.0": {
        "notes": "Refactors the order service (with a bug that only production's batch orders hit).",
        "features": ["batch-order"],
        "app": {
            "latency_ms": 5,
            "failures": {"/api/orders/batch": 0.5},
            "features": {"/api/orders/batch": "batch-order"},
        },
    },
}

CONFIG = """\
# The releaser demo sandbox: {hosts} hosts on this machine (local transport), each one a
# directory under hosts/ with its own demo app process on 127.0.0.1.
# Bake times are SECONDS here so that the tour is quick; in production they are minutes.
project: demo-shop
defaults:
  command_timeout: 60s
  rollback_window: 1h
environments:
{environments}
pipeline:
  - stage: selftest
    environment: dev
    checks: [demo]
    bake: 2s
    interval: 1s
  - stage: test
    environment: test
    checks: [demo]
    bake: 2s
    interval: 1s
  - stage: gray
    environment: prod
    cohort: 10%
{users}    checks: [demo-canary]    # the sequential judge: cohort vs the same-time baseline
    bake: {{min: 3s, max: 90s}}  # passes once the judge has shown the cohort no worse, fails once it is worse
    interval: 1s
  - stage: full
    environment: prod
    waves: [50%, 100%]
    checks: [demo]
    bake: 2s
    interval: 1s
# The effect report, written after the last stage passes. Production waits 3 days and
# compares 3 days before with 3 days after; this sandbox uses seconds.
report:
  delay: 5s
  window: 20s
  step: 1s
  language: en               # or zh-CN
  metrics:                   # read from each host's /metrics and recorded by releaser (scrape source)
    requests: 'demo_http_requests_total{{path=~"/api/.*"}}'
    errors: 'demo_http_requests_total{{path=~"/api/.*", code=~"5.."}}'
    latency: demo_http_request_duration_seconds
    cpu: process_cpu_seconds_total
  features:                  # usage of each feature a release declares
    batch-order: 'demo_feature_used_total{{feature="batch-order"}}'
"""

# The sandbox's canary keeps the shipped bounds: what a newcomer's service gets.
CANARY = """\
# The canary judge for the demo app: the gray cohort against the rest of prod, at the same time.
description: Error ratio and latency of the cohort compared with the baseline, judged sequentially.
checks:
  - name: canary
    type: canary
    requests: 'demo_http_requests_total{path=~"/api/.*"}'
    errors: 'demo_http_requests_total{path=~"/api/.*", code=~"5.."}'
    latency: demo_http_request_duration_seconds
    alpha: 0.01
    tolerance: 1.2
    min_requests: 20
"""

ENVIRONMENT = """\
  {name}:
    transport: local
    playbook: demo-app
    root: hosts/{{host}}
{metrics}    vars:
      PYTHON: {python}
    hosts:
{hosts}"""


METRICS = """\
    metrics:
      source: scrape             # read each host's /metrics directly (no Prometheus needed)
      scrape_url: "http://{address}:{PORT}/metrics"
"""


def prepare_directory(directory: Path) -> Path:
    """An empty directory for the sandbox; a previous sandbox there is stopped and replaced."""
    directory = directory.resolve()
    if directory.exists() and any(directory.iterdir()):
        if not (directory / MARKER).exists():
            raise UsageError(f"{directory} is not empty and holds no earlier demo; choose another --dir")
        stop_apps(directory)
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MARKER).write_text("built by `releaser demo`; `releaser demo --dir` may replace it\n")
    return directory


USERS = "    users: 10%               # behind nginx: 10% of prod's users (by a cookie); in steps: [1%, 10%]\n"


def build(directory: Path, python: str, router: SandboxNginx | None = None) -> dict[str, list[int]]:
    """Write the sandbox; returns the app ports of each environment. With `router`, prod is
    behind that nginx and its gray goes to a share of users."""
    ports = iter(free_ports(sum(LAYOUT.values())))
    layout = {env: [next(ports) for _ in range(count)] for env, count in LAYOUT.items()}
    environments = []
    for env, env_ports in layout.items():
        hosts = "\n".join(
            f'      - {{name: {env}-{i}, vars: {{PORT: "{port}"}}}}' for i, port in enumerate(env_ports, 1)
        )
        metrics = METRICS if env == "prod" else ""
        section = ENVIRONMENT.format(name=env, python=json.dumps(python), hosts=hosts, metrics=metrics)
        if env == "prod" and router is not None:
            section += "\n" + router.router_section().rstrip("\n")
        environments.append(section)
    (directory / "environments.yaml").write_text(
        CONFIG.format(
            hosts=sum(LAYOUT.values()), environments="\n".join(environments), users=USERS if router is not None else ""
        )
    )
    for kind, name in (("playbooks", "demo-app.yaml"), ("healthchecks", "demo.yaml")):
        (directory / kind).mkdir(exist_ok=True)
        shutil.copyfile(shipped_file(kind, name), directory / kind / name)
    (directory / "healthchecks" / "demo-canary.yaml").write_text(CANARY)
    (directory / "artifacts").mkdir(exist_ok=True)
    for version, spec in RELEASES.items():
        write_artifact(directory / "artifacts" / f"demo-app-{version}.tar.gz", {**spec["app"], "version": version})
        (directory / "artifacts" / f"notes-{version}.md").write_text(spec["notes"] + "\n")
    return layout


def write_artifact(path: Path, behaviour: dict) -> None:
    """A release tarball holding app.json, with fixed metadata so the same input gives the same bytes."""
    data = json.dumps(behaviour, indent=2, sort_keys=True).encode()
    info = tarfile.TarInfo("app.json")
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        tar.addfile(info, io.BytesIO(data))
    path.write_bytes(gzip.compress(raw.getvalue(), mtime=0))


def stop_apps(directory: Path) -> int:
    """Stop every demo app process of the sandbox, and its nginx; returns how many were running."""
    stopped = []
    for pidfile in [*(directory / "hosts").glob("*/shared/app.pid"), directory / "nginx" / "nginx.pid"]:
        try:
            pid = int(pidfile.read_text().strip())
            os.kill(pid, signal.SIGTERM)
            stopped.append(pid)
        except (ValueError, OSError):  # gone already, or never started
            pass
    deadline = time.monotonic() + 5
    for pid in stopped:
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.05)
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
    return len(stopped)
