"""Gray by users through a real nginx in front of real demo app processes (local transport):
the share of users, stickiness, the allow list, a full rollout under load without a failed
request, and a bad release caught at gray and routed back before its hosts are switched."""

from __future__ import annotations

import http.client
import json
import shutil
import sys
import threading
from collections import defaultdict
from dataclasses import replace

import pytest

from releaser.config import load_config
from releaser.demo.sandbox import RELEASES, free_ports, write_artifact
from releaser.errors import StageFailed
from releaser.health.base import Check, CheckResult, CheckTarget, Verdict
from releaser.journal import Journal
from releaser.pipeline import Pipeline
from releaser.releases import create_release
from releaser.router.nginx import NginxRouter, variable
from releaser.router.route import Route
from releaser.shipped import shipped_file
from releaser.store import SqliteStore
from tests.nginx import nginx_in

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
    users: {{steps: [10%], allow: [qa-1]}}
    checks: [health]
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
    """Holds a bake (inconclusive) until the test opens it: the test measures meanwhile."""

    type = "gate"

    def __init__(self):
        super().__init__("gate")
        self.opened = threading.Event()

    @classmethod
    def from_fields(cls, name, fields):  # pragma: no cover - never configured
        raise NotImplementedError

    def evaluate(self, target: CheckTarget, memory: dict) -> CheckResult:
        if self.opened.is_set():
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
        self.threads = [threading.Thread(target=self._loop, args=(names[i::4],), daemon=True) for i in range(4)]

    def ask(self, user: str | None, path: str = "/api/items",
            conn: http.client.HTTPConnection | None = None) -> tuple[str | None, str]:
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


@pytest.fixture
def shop(tmp_path):
    root = tmp_path / "shop"
    for kind, name in (("playbooks", "demo-app.yaml"),):
        (root / kind).mkdir(parents=True)
        shutil.copyfile(shipped_file(kind, name), root / kind / name)
    (root / "healthchecks").mkdir()
    (root / "healthchecks" / "health.yaml").write_text(CHECKS)
    ports = free_ports(HOSTS)
    nginx = nginx_in(tmp_path / "nginx", variable("prod"))
    hosts = "\n".join(f'      - {{name: web-{i}, vars: {{PORT: "{port}"}}}}' for i, port in enumerate(ports, 1))
    (root / "environments.yaml").write_text(CONFIG.format(python=json.dumps(sys.executable), hosts=hosts,
                                                          router=nginx.router_section()))
    config = load_config(root / "environments.yaml")
    env = config.environments["prod"]
    nginx.start(NginxRouter(env.router, env).render(Route()))
    for version in ("1.0.0", "1.1.0", "1.2.0"):
        write_artifact(root / f"app-{version}.tar.gz", {**RELEASES[version]["app"], "version": version})
    store = SqliteStore(root / ".releaser" / "state.db")
    journal = Journal(store)
    for version in ("1.0.0", "1.1.0", "1.2.0"):
        create_release(store, journal, version, root / f"app-{version}.tar.gz")
    gate = Gate()
    gray = config.stage("gray")
    config = replace(config, pipeline=(replace(gray, checks=gray.checks + (gate,)), config.stage("full")))
    pipeline = Pipeline(config, store, journal)
    yield pipeline, nginx, gate
    nginx.stop()
    for pidfile in root.glob("hosts/*/shared/app.pid"):
        try:
            import os
            import signal

            os.kill(int(pidfile.read_text()), signal.SIGTERM)
        except (ValueError, ProcessLookupError):
            pass
    store.close()


def wait_for(store, kind: str, count: int = 1, timeout: float = 120) -> None:
    """Until `count` events of `kind` are journaled (polling the store: the pipeline runs in
    another thread of this process)."""
    import time

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
        except Exception as exc:  # noqa: BLE001 - the test reads it
            outcome["error"] = exc

    thread = threading.Thread(target=work)
    thread.start()
    return thread, outcome


def test_gray_by_users_is_sticky_and_the_full_rollout_drops_no_request(shop):
    pipeline, nginx, gate = shop
    store = pipeline.store
    gate.opened.set()
    pipeline.run("1.0.0")  # a first install, through the router too
    gate.opened.clear()
    users = Users(nginx.port, [f"user-{i}" for i in range(40)])
    with users:
        thread, outcome = run_in_thread(pipeline, "1.1.0")
        wait_for(store, "bake.started", 3)  # 1.0.0's gray and full, then 1.1.0's gray step
        during_gray = users.mark()
        split = {f"shopper-{i}": users.ask(f"shopper-{i}")[0] for i in range(1500)}
        assert users.ask("qa-1")[0] == "1.1.0"  # the allow list
        assert {users.ask(None)[0] for _ in range(30)} == {"1.0.0"}  # no key: the stable side
        share = 100 * sum(1 for v in split.values() if v == "1.1.0") / len(split)
        assert 8.5 <= share <= 11.5, share
        gray_answers = users.since(during_gray)
        gate.opened.set()
        thread.join(timeout=300)
    assert "error" not in outcome, outcome
    seen: dict[str, list[str]] = defaultdict(list)
    for user, version, error in users.answers:
        assert version is not None, f"{user}: a failed request: {error}"
        seen[user].append(version)
    sides = defaultdict(set)
    for user, version, _ in gray_answers:
        sides[user].add(version)
    assert all(len(versions) == 1 for versions in sides.values()), sides  # no user on both sides in gray
    for user, versions in seen.items():  # once on the new release, never back
        first_new = versions.index("1.1.0") if "1.1.0" in versions else len(versions)
        assert set(versions[first_new:]) <= {"1.1.0"}, user
    assert users.ask("anyone")[0] == "1.1.0" and users.ask(None)[0] == "1.1.0"
    kinds = [e.kind for e in store.events()]
    assert "route.failed" not in kinds and kinds.count("route.changing") == kinds.count("route.changed")


def test_a_bad_release_is_routed_back_before_its_hosts_are_switched(shop):
    pipeline, nginx, gate = shop
    store = pipeline.store
    gate.opened.set()
    pipeline.run("1.1.0")
    users = Users(nginx.port, [f"user-{i}" for i in range(200)], paths=("/api/orders/batch",))
    with users:
        with pytest.raises(StageFailed):
            pipeline.run("1.2.0")  # its batch orders fail: the health check of its cohort fails
    events = store.events()
    kinds = [e.kind for e in events]
    failed = kinds.index("stage.failed", kinds.index("switch.finished"))
    back = next(i for i in range(failed, len(events)) if events[i].kind == "route.changed")
    switched_back = next(i for i in range(failed, len(events)) if events[i].kind == "switch.started")
    assert back < switched_back  # every user on the stable side first, then the hosts
    assert events[back].data["route"]["share"] == 0.0
    assert {users.ask(f"user-{i}", "/api/items")[0] for i in range(200)} == {"1.1.0"}
    from releaser.status import status_document

    route = status_document(pipeline.config, store)["environments"]["prod"]["route"]
    assert route["applied"] and route["users_on_new"] == 0 and route["text"].startswith("every user to the stable side")


def route_in_file(nginx) -> dict:
    """The route the file on the router holds (its RELEASER_ROUTE header line)."""
    line = next(line for line in nginx.route.read_text().splitlines() if "RELEASER_ROUTE " in line)
    return json.loads(line.split("RELEASER_ROUTE ", 1)[1])


def test_a_route_nginx_refuses_mid_stage_fails_it_and_rolls_back(shop):
    pipeline, nginx, gate = shop
    store = pipeline.store
    gate.opened.set()
    pipeline.run("1.0.0")
    gate.opened.clear()
    thread, outcome = run_in_thread(pipeline, "1.1.0")
    wait_for(store, "switch.started", 3)  # 1.0.0: gray and full's two waves; then 1.1.0's cohort
    held = nginx.route.read_text()
    nginx.conf.write_text(nginx.conf.read_text().replace("worker_processes 1;", "worker_processes 1;\nbroken;"))
    thread.join(timeout=300)
    assert isinstance(outcome.get("error"), StageFailed), outcome
    assert nginx.route.read_text() == held  # every later route was refused: the file is as it was, nothing reloaded
    refused = [e for e in store.events() if e.kind == "route.failed"]
    assert refused and all("broken" in e.message for e in refused)
    assert {v.version for v in store.host_states("prod").values()} == {"1.0.0"}  # the cohort is back
    assert {Users(nginx.port, []).ask(f"u{i}")[0] for i in range(100)} == {"1.0.0"}
    from releaser.status import status_document

    route = status_document(pipeline.config, store)["environments"]["prod"]["route"]
    assert route["applied"] is False  # status says the router did not take what releaser meant


def test_kill_during_a_route_change_then_resume_restores_a_consistent_route(shop):
    import os
    import subprocess

    pipeline, nginx, gate = shop
    store = pipeline.store
    gate.opened.set()
    pipeline.run("1.0.0")
    root = pipeline.config.base_dir
    # killed right after its second route change (the drain of the gray cohort) is stored and journaled
    killed = subprocess.run([sys.executable, "-m", "releaser.cli", "-C", str(root), "-q", "promote", "1.1.0"],
                            env={**os.environ, "RELEASER_FAILPOINT": "route.changing#2:KILL"},
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr
    assert store.get_route("prod")["applied"] is False  # journaled and stored, never confirmed
    resumed = subprocess.run([sys.executable, "-m", "releaser.cli", "-C", str(root), "-q", "resume"],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    stored = store.get_route("prod")
    assert stored["applied"] and route_in_file(nginx) == stored["route"]
    assert stored["route"]["drained"] == [] and stored["route"]["share"] == 10.0
    reapplied = [e for e in store.events() if e.kind == "route.changing" and "not confirmed" in e.message]
    assert len(reapplied) == 1
    versions = {Users(nginx.port, []).ask(f"user-{i}")[0] for i in range(300)}
    assert versions == {"1.0.0", "1.1.0"}  # gray by users again, on a router that matches the store
