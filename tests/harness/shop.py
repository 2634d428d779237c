"""A shop of real demo app processes (local transport) with, or without, a real nginx in
front of prod: the harness of the gray-by-users tests and of bench/routing."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from releaser.config import load_config
from releaser.demo.nginx import SandboxNginx
from releaser.demo.ports import free_ports
from releaser.demo.sandbox import RELEASES, write_artifact
from releaser.health.base import Check, CheckResult, CheckTarget, Verdict
from releaser.journal import Journal
from releaser.pipeline import Pipeline
from releaser.releases import create_release
from releaser.router.nginx import NginxRouter, variable
from releaser.router.route import Route
from releaser.shipped import shipped_file
from releaser.store import SqliteStore
from tests.harness.nginx import nginx_in

HOSTS = 10

CONFIG = """\
project: shop
environments:
  prod:
    transport: local
    playbook: demo-app
    root: hosts/{{host}}
    vars: {{PYTHON: {python}}}
    hosts:
{hosts}
{router}
pipeline:
  - stage: gray
    environment: prod
    cohort: 10%
{users}    checks: [health]
    bake: {{min: 0s, max: 120s}}
    interval: 200ms
  - stage: full
    environment: prod
    waves: [50%, 100%]
    checks: [health]
    bake: {{min: 0s, max: 120s}}
    interval: 200ms
"""

CHECKS = """\
checks:
  - name: health
    type: http
    url: "http://127.0.0.1:{PORT}/health"
    expect_status: [200]
    timeout: 2s
"""


class Gate(Check):
    """Holds a bake (inconclusive) until the test opens it (the test measures meanwhile), or
    fails it when the test says so (a rollback decided at a known time)."""

    type = "gate"

    def __init__(self, store=None):
        super().__init__("gate")
        self.opened = threading.Event()
        self.failing = threading.Event()
        self.store = store
        self.open_shares: set[float] = set()  # gray steps (prod's route share) to pass at

    @classmethod
    def from_fields(cls, name, fields):  # pragma: no cover - never configured
        raise NotImplementedError

    def evaluate(self, target: CheckTarget, memory: dict) -> CheckResult:
        if self.failing.is_set():
            return CheckResult(self.name, Verdict.FAIL, "failed by the test")
        route = self.store.get_route("prod") if self.store is not None and self.open_shares else None
        if self.opened.is_set() or (route and route["route"]["share"] in self.open_shares):
            return CheckResult(self.name, Verdict.PASS, "opened")
        return CheckResult(self.name, Verdict.INCONCLUSIVE, "held by the test")


class Users:
    """Users with a cookie each, asking the site through nginx in a loop over keep-alive
    connections, as browsers do (a connection nginx closed while idle is reopened and the
    request sent again, once); every answer is kept as (user, version or None, error)."""

    def __init__(self, port: int, names: list[str], paths: tuple[str, ...] = ("/api/items",)):
        self.port, self.names, self.paths = port, names, paths
        self.answers: list[tuple[str, str | None, str]] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._loop, args=(names[i::2],), daemon=True) for i in range(2)]

    def ask(
        self, user: str | None, path: str = "/api/items", conn: http.client.HTTPConnection | None = None
    ) -> tuple[str | None, str]:
        """One request (on `conn` if given, else on a connection of its own)."""
        own = conn is None
        conn = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            for attempt in (1, 2):
                reused = conn.sock is not None
                try:
                    conn.request("GET", path, headers={"Cookie": f"uid={user}"} if user else {})
                    response = conn.getresponse()
                    body = response.read()
                    break
                except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                    conn.close()
                    if not reused or attempt == 2:
                        return None, repr(exc)
            if response.status != 200:
                return None, f"{response.status} {body[:80]!r}"
            return json.loads(body)["version"], ""
        except OSError as exc:
            conn.close()
            return None, repr(exc)
        finally:
            if own:
                conn.close()

    def _loop(self, names: list[str]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while not self.stop.is_set():
            for user in names:
                for path in self.paths:
                    version, error = self.ask(user, path, conn)
                    with self.lock:
                        self.answers.append((user, version, error))
        conn.close()

    def __enter__(self) -> Users:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()

    def mark(self) -> int:
        with self.lock:
            return len(self.answers)

    def since(self, mark: int) -> list[tuple[str, str | None, str]]:
        with self.lock:
            return list(self.answers[mark:])


@dataclass
class Shop:
    """prod's hosts, the pipeline driving them (with a Gate on gray), and nginx (or None)."""

    root: Path
    pipeline: Pipeline
    gate: Gate
    nginx: SandboxNginx | None
    ports: list[int]

    @classmethod
    def create(
        cls, base: Path, routed: bool = True, users: str = "{steps: [10%], allow: [qa-1]}", hosts: int = HOSTS
    ) -> Shop:
        root = base / "shop"
        (root / "playbooks").mkdir(parents=True)
        shutil.copyfile(shipped_file("playbooks", "demo-app.yaml"), root / "playbooks" / "demo-app.yaml")
        (root / "healthchecks").mkdir()
        (root / "healthchecks" / "health.yaml").write_text(CHECKS)
        ports = free_ports(hosts)
        nginx = nginx_in(base / "nginx", variable("prod")) if routed else None
        listed = "\n".join(f'      - {{name: web-{i}, vars: {{PORT: "{port}"}}}}' for i, port in enumerate(ports, 1))
        (root / "environments.yaml").write_text(
            CONFIG.format(
                python=json.dumps(sys.executable),
                hosts=listed,
                router=nginx.router_section() if nginx else "",
                users=f"    users: {users}\n" if routed else "",
            )
        )
        config = load_config(root / "environments.yaml")
        if nginx is not None:
            env = config.environments["prod"]
            nginx.start(NginxRouter(env.router, env).render(Route()))
        for version in ("1.0.0", "1.1.0", "1.2.0"):
            write_artifact(root / f"app-{version}.tar.gz", {**RELEASES[version]["app"], "version": version})
        store = SqliteStore(root / ".releaser" / "state.db")
        journal = Journal(store)
        for version in ("1.0.0", "1.1.0", "1.2.0"):
            create_release(store, journal, version, root / f"app-{version}.tar.gz")
        gate = Gate(store)
        gray = config.stage("gray")
        config = replace(config, pipeline=(replace(gray, checks=(*gray.checks, gate)), config.stage("full")))
        return cls(root, Pipeline(config, store, journal), gate, nginx, ports)

    @property
    def store(self) -> SqliteStore:
        return self.pipeline.store

    def close(self) -> None:
        if self.nginx is not None:
            self.nginx.stop()
        for pidfile in self.root.glob("hosts/*/shared/app.pid"):
            with contextlib.suppress(ValueError, OSError):
                os.kill(int(pidfile.read_text()), signal.SIGTERM)
        self.store.close()


def wait_for(store, kind: str, count: int = 1, timeout: float = 120) -> None:
    """Until `count` events of `kind` are journaled (polling the store: the pipeline runs in
    another thread of this process)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(1 for e in store.events() if e.kind == kind) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"no {count} {kind} event(s) within {timeout}s")


def run_in_thread(pipeline: Pipeline, version: str) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def work():
        try:
            outcome["runs"] = pipeline.run(version)
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=work)
    thread.start()
    return thread, outcome
